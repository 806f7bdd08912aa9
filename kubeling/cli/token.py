"""``kubeling token create|list|delete``: bootstrap tokens, as ``kubeadm token``.

Mirrors cmd/kubeadm/app/cmd/token.go and k8s.io/cluster-bootstrap: a token
``<id>.<secret>`` (6 + 16 characters of ``[a-z0-9]``) lives in the Secret
``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token``
(``token-id``, ``token-secret``, ``expiration``, ``usage-bootstrap-*``,
``auth-extra-groups``), which the apiserver's bootstrap-token
authenticator reads (``--enable-bootstrap-token-auth``).

``create`` also makes sure of what ``kubeadm init`` sets up once for
joining nodes (its ``bootstrap-token`` phase), idempotently:

- ClusterRoleBindings ``kubeadm:kubelet-bootstrap`` (the default token
  group -> ``system:node-bootstrapper``: create/get/list/watch CSRs),
  ``kubeadm:node-autoapprove-bootstrap`` (-> ``...:nodeclient``: the
  approver accepts its kubelet client CSRs) and
  ``kubeadm:node-autoapprove-certificate-rotation`` (``system:nodes`` ->
  ``...:selfnodeclient``: renewals);
- the ConfigMap ``kube-public/cluster-info`` (a kubeconfig with the server
  and the cluster CA) and a Role/RoleBinding that let bootstrap tokens get
  that one ConfigMap. kubeadm grants it to ``system:anonymous``; kubeling's
  apiserver answers anonymous requests only on health paths, so the grant
  goes to the group ``system:bootstrappers`` and the joining node reads it
  with its token; it trusts the CA only if its SubjectPublicKeyInfo hash
  matches ``--discovery-token-ca-cert-hash``.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import pathlib
import re
import secrets
import urllib.parse

from cryptography import x509

from kubeling.cli.errors import CLIError
from kubeling.client import ApiError, Client
from kubeling.duration import flag_duration
from kubeling.pki import pubkeypin

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
ID_RE = re.compile(r"^[a-z0-9]{6}$")
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
DEFAULT_TTL = 24 * 3600.0
CLUSTER_INFO = "cluster-info"
PUBLIC_NAMESPACE = "kube-public"
RBAC = "rbac.authorization.k8s.io"
NODECLIENT = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
SELFNODECLIENT = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"


def generate_token() -> str:
    """A new random ``<id>.<secret>`` (bootstraputil.GenerateBootstrapToken)."""
    def part(n: int) -> str:
        return "".join(secrets.choice(ALPHABET) for _ in range(n))
    return f"{part(6)}.{part(16)}"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(secret: dict, key: str) -> str:
    try:
        return base64.b64decode((secret.get("data") or {}).get(key) or "").decode()
    except ValueError:
        return ""


def token_secret(token: str, *, ttl: float, usages: list[str], groups: list[str], description: str = "",
                 now: datetime.datetime | None = None) -> dict:
    """The Secret of ``token`` (bootstraptoken.BootstrapToken.ToSecret); ``ttl`` seconds, 0 = never expires.
    Raises CLIError on a malformed token, usage or group."""
    m = TOKEN_RE.match(token)
    if not m:
        raise CLIError(f'the bootstrap token "{token}" was not of the form "[a-z0-9]{{6}}.[a-z0-9]{{16}}"')
    for u in usages:
        if u not in ("signing", "authentication"):
            raise CLIError(f'invalid bootstrap token usage "{u}" (valid: signing, authentication)')
    for g in groups:
        if not re.match(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$", g):
            raise CLIError(f'--groups: "{g}" must start with "system:bootstrappers:"')
    data = {"token-id": m.group(1), "token-secret": m.group(2)}
    if ttl > 0:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        data["expiration"] = (now + datetime.timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for u in usages:
        data[f"usage-bootstrap-{u}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    if description:
        data["description"] = description
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": f"bootstrap-token-{m.group(1)}", "namespace": NAMESPACE},
            "data": {k: _b64(v) for k, v in data.items()}}


def _binding(name: str, role: str, group: str) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}]}


def cluster_info(server: str, ca_pem: bytes) -> dict:
    """The ``kube-public/cluster-info`` ConfigMap: a kubeconfig with only the cluster (server, CA)."""
    import yaml
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "", "cluster": {"server": server,
                                                 "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "contexts": [], "users": [], "current-context": ""}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CLUSTER_INFO, "namespace": PUBLIC_NAMESPACE},
            "data": {"kubeconfig": yaml.safe_dump(doc, sort_keys=False)}}


def bootstrap_objects(server: str, ca_pem: bytes) -> list[tuple[str, dict]]:
    """(plural, object) of what kubeadm init's bootstrap-token phase creates for joining nodes."""
    role = {"apiVersion": f"{RBAC}/v1", "kind": "Role",
            "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": PUBLIC_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                       "resourceNames": [CLUSTER_INFO]}]}
    role_binding = {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
                    "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": PUBLIC_NAMESPACE},
                    "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
                    "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "system:bootstrappers"}]}
    return [("clusterrolebindings", _binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", DEFAULT_GROUP)),
            ("clusterrolebindings", _binding("kubeadm:node-autoapprove-bootstrap", NODECLIENT, DEFAULT_GROUP)),
            ("clusterrolebindings", _binding("kubeadm:node-autoapprove-certificate-rotation", SELFNODECLIENT,
                                             "system:nodes")),
            ("configmaps", cluster_info(server, ca_pem)), ("roles", role), ("rolebindings", role_binding)]


async def ensure_bootstrap_objects(client: Client, server: str, ca_pem: bytes) -> None:
    """Create the bootstrap RBAC and cluster-info when missing; cluster-info is updated when its CA or
    server changed. Raises ApiError."""
    for plural, obj in bootstrap_objects(server, ca_pem):
        try:
            await client.create(plural, obj)
        except ApiError as e:
            if e.code != 409:
                raise
            if plural == "configmaps":
                await client.patch("configmaps", CLUSTER_INFO, {"data": obj["data"]}, namespace=PUBLIC_NAMESPACE)


def _ca_pem(client: Client) -> bytes:
    if not client.config.ca_file:
        raise CLIError("the kubeconfig names no cluster CA (certificate-authority); joining nodes need one")
    return pathlib.Path(client.config.ca_file).read_bytes()


def ca_cert_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the first CA certificate in ``ca_pem`` (the --discovery-token-ca-cert-hash)."""
    return pubkeypin.hash_cert(x509.load_pem_x509_certificates(ca_pem)[0])


def _endpoint(server: str, override: str) -> str:
    if override:
        return override if "://" in override else f"https://{override}"
    return server


async def create(args: argparse.Namespace, factory) -> int:
    """``token create [TOKEN]``: write the token's Secret (and the bootstrap objects); print the token,
    or the whole join command with ``--print-join-command``."""
    token = args.args[0] if args.args else generate_token()
    if len(args.args) > 1:
        raise CLIError("usage: kubeling token create [TOKEN] [--ttl DURATION] [--print-join-command]")
    usages = [u.strip() for u in args.usages.split(",") if u.strip()]
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    secret = token_secret(token, ttl=args.ttl, usages=usages, groups=groups, description=args.description)
    async with factory.client() as c:
        ca = _ca_pem(c)
        server = _endpoint(c.config.server, args.control_plane_endpoint)
        await ensure_bootstrap_objects(c, server, ca)
        try:
            await c.create("secrets", secret, namespace=NAMESPACE)
        except ApiError as e:
            if e.code == 409:
                raise CLIError(f'a token with id "{token.split(".")[0]}" already exists') from None
            raise
    if args.print_join_command:
        host = urllib.parse.urlsplit(server).netloc
        factory.print(f"kubeling join {host} --token {token} --discovery-token-ca-cert-hash {ca_cert_hash(ca)}")
    else:
        factory.print(token)
    return 0


def _ttl_left(expiration: str, now: datetime.datetime) -> str:
    if not expiration:
        return "<forever>"
    try:
        t = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    from kubeling.cli.printers import human_duration
    return human_duration((t - now).total_seconds()) if t > now else "<invalid>"


async def list_tokens(args: argparse.Namespace, factory) -> int:
    """``token list``: TOKEN TTL EXPIRES USAGES DESCRIPTION EXTRA GROUPS, as kubeadm prints them."""
    from kubeling.cli.tabwriter import render_table
    async with factory.client() as c:
        secrets_ = (await c.list("secrets", namespace=NAMESPACE,
                                 field_selector=f"type={SECRET_TYPE}"))["items"]
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for s in sorted(secrets_, key=lambda s: s["metadata"]["name"]):
        tid, tsecret = _unb64(s, "token-id"), _unb64(s, "token-secret")
        if not ID_RE.match(tid):
            continue
        exp = _unb64(s, "expiration")
        usages = sorted(k[len("usage-bootstrap-"):] for k in (s.get("data") or {})
                        if k.startswith("usage-bootstrap-") and _unb64(s, k) == "true")
        rows.append([f"{tid}.{tsecret}", _ttl_left(exp, now), exp or "<never>", ",".join(usages) or "<none>",
                     _unb64(s, "description") or "<none>", _unb64(s, "auth-extra-groups") or "<none>"])
    if rows:
        factory.out.write(render_table(["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"], rows))
        factory.out.flush()
    return 0


async def delete(args: argparse.Namespace, factory) -> int:
    """``token delete ID|TOKEN ...``: delete each token's Secret (404 -> error)."""
    if not args.args:
        raise CLIError("missing subcommand; 'token delete' is missing token of form [\"^([a-z0-9]{6})$\"]")
    async with factory.client() as c:
        for value in args.args:
            tid = value.split(".", 1)[0]
            if not ID_RE.match(tid):
                raise CLIError(f'given token "{value}" didn\'t match pattern "^([a-z0-9]{{6}})$" or '
                               f'"^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$"')
            try:
                await c.delete("secrets", f"bootstrap-token-{tid}", namespace=NAMESPACE)
            except ApiError as e:
                if e.code == 404:
                    raise CLIError(f'bootstrap token "{tid}" not found') from None
                raise
            factory.print(f'bootstrap token "{tid}" deleted')
    return 0


async def run(args: argparse.Namespace, factory) -> int:
    """Dispatch ``kubeling token ACTION``."""
    return await {"create": create, "list": list_tokens, "delete": delete}[args.action](args, factory)


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register ``token`` on the CLI's subparsers."""
    p = sub.add_parser("token", parents=[common], help="bootstrap tokens for joining nodes: create, list, delete")
    p.add_argument("action", choices=["create", "list", "delete"])
    p.add_argument("--ttl", type=flag_duration, default=DEFAULT_TTL,
                   help="create: lifetime of the token, e.g. 2h (0: never expires; default 24h)")
    p.add_argument("--usages", default="signing,authentication", help="create: what the token may be used for")
    p.add_argument("--groups", default=DEFAULT_GROUP, help="create: extra groups the token authenticates as")
    p.add_argument("--description", default="", help="create: a human-readable description")
    p.add_argument("--print-join-command", action="store_true",
                   help="create: print the whole `kubeling join` line instead of the token")
    p.add_argument("--control-plane-endpoint", default="",
                   help="create: the address workers reach the apiserver at (default: the kubeconfig's server)")
    p.set_defaults(func=run, args=[])
