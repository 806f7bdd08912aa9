"""``kubeling join API_SERVER --token T --discovery-token-ca-cert-hash sha256:H``: make this machine a worker.

Mirrors ``kubeadm join``'s discovery and kubelet-start phases
(cmd/kubeadm/app/discovery/token): fetch ``kube-public/cluster-info``
with the bootstrap token over TLS that is not yet verified, check the
detached JWS the controller-manager's bootstrapsigner put there for this
token (the server knows the token's secret), trust the CA in it only if
the SHA-256 of its SubjectPublicKeyInfo is one of the given pins, fetch it
again over TLS verified against that CA; then write what
the node needs under ``--home`` (``pki/ca.crt``, the kubelet's bootstrap
kubeconfig ``nodes/<node>/bootstrap-kubelet.kubeconfig``) and the
systemd units of a worker (deploy.units: CRI shim, kubelet with
``--bootstrap-kubeconfig``, kube-proxy, host-gw). The kubelet obtains its
own client certificate when it starts (TLS bootstrap, auto-approved).

Two more identities are asked for here, as CSRs an administrator approves
(``kubectl certificate approve``; the bootstrap token cannot approve
anything): the kubelet's serving certificate (signer
``kubernetes.io/kubelet-serving``, CN ``system:node:<node>``, the node IP
as SAN, what upstream's ``serverTLSBootstrap`` requests), which the
apiserver verifies when it reaches the kubelet for logs and exec; and
kube-proxy's client certificate (signer
``kubernetes.io/kube-apiserver-client``, CN ``system:kube-proxy``, the
user the default RBAC policy binds to ``system:node-proxier``). kubeadm
runs kube-proxy as a DaemonSet pod with a ServiceAccount token; kubeling
runs it as a systemd unit outside any pod, so it needs a credential of
its own, and a certificate a human approved is the one it can obtain
without giving the bootstrap token more power. join waits (bounded by
``--certificate-timeout``) for both. ``--dry-run`` checks discovery and
writes the files and units but asks for no certificate.

join never runs systemctl: it prints the command that starts the units.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import os
import pathlib
import socket
import ssl
import sys
import time
import urllib.parse

import httpx
import yaml
from cryptography import x509

from kubeling.api import certificates as certs
from kubeling.cli.errors import CLIError
from kubeling.cli.token import CLUSTER_INFO, PUBLIC_NAMESPACE, TOKEN_RE
from kubeling.client import ApiError, Client, kubeconfig
from kubeling.client.csr import CSRError, make_csr, request_certificate, wait_for_certificate
from kubeling.duration import flag_duration
from kubeling.pki import jws, pubkeypin
from kubeling.pki.certs import key_pem, new_private_key, write_file

CLUSTER_INFO_PATH = f"/api/v1/namespaces/{PUBLIC_NAMESPACE}/configmaps/{CLUSTER_INFO}"


def server_url(value: str) -> str:
    """``https://host:port`` of an API_SERVER argument (``host:port``, or a URL). Raises CLIError."""
    url = value if "://" in value else f"https://{value}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise CLIError(f'API_SERVER "{value}" must be HOST:PORT or https://HOST:PORT')
    return f"https://{parts.netloc}"


async def _fetch_cluster_info(server: str, token: str, *, verify) -> dict:
    try:
        async with httpx.AsyncClient(base_url=server, verify=verify, timeout=10, trust_env=False,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            resp = await http.get(CLUSTER_INFO_PATH)
    except httpx.HTTPError as e:
        raise CLIError(f"cannot reach the apiserver at {server}: {e}") from None
    if resp.status_code == 401:
        raise CLIError(f"the apiserver at {server} refused the bootstrap token (401 Unauthorized): it is unknown, "
                       f"expired or deleted; create one with `kubeling token create` on the control plane")
    if resp.status_code == 403:
        raise CLIError(f"the bootstrap token may not read {PUBLIC_NAMESPACE}/{CLUSTER_INFO} (403 Forbidden); "
                       f"`kubeling token create` grants it")
    if resp.status_code == 404:
        raise CLIError(f"the cluster has no {PUBLIC_NAMESPACE}/{CLUSTER_INFO} ConfigMap; "
                       f"`kubeling token create` on the control plane writes it")
    if resp.status_code != 200:
        raise CLIError(f"reading {CLUSTER_INFO}: {resp.status_code} {resp.text[:200]}")
    return resp.json()


def _ca_of(cm: dict) -> bytes:
    try:
        doc = yaml.safe_load((cm.get("data") or {}).get("kubeconfig") or "")
        cluster = doc["clusters"][0]["cluster"]
        return base64.b64decode(cluster["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        raise CLIError(f"the {CLUSTER_INFO} ConfigMap holds no kubeconfig with a certificate-authority-data") from None


async def discover(server: str, token: str, pins: list[str], *, timeout: float = 300.0) -> bytes:
    """The cluster CA (PEM) of the apiserver at ``server``, verified as kubeadm's token discovery does:
    cluster-info must carry the detached JWS of its kubeconfig under this token (waits up to ``timeout``
    seconds for the bootstrapsigner to write it), and its CA must match one of ``pins`` (``sha256:<hex>``).

    Raises CLIError with one readable line: unreachable server, refused token,
    no cluster-info, no or a wrong signature, or a CA that matches none of the pins."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    token_id, token_secret = token.split(".", 1)
    deadline = time.monotonic() + timeout
    while True:
        cm = await _fetch_cluster_info(server, token, verify=insecure)
        signature = (cm.get("data") or {}).get(f"jws-kubeconfig-{token_id}")
        if signature or time.monotonic() >= deadline:
            break
        await asyncio.sleep(1.0)
    if not signature:
        raise CLIError(f'token id "{token_id}" is invalid for this cluster or it has expired: cluster-info has no '
                       f'signature for it (is the controller-manager\'s bootstrapsigner running?)')
    content = (cm.get("data") or {}).get("kubeconfig") or ""
    if not jws.detached_token_is_valid(signature, content, token_id, token_secret):
        raise CLIError("failed to verify JWS signature of received cluster info object, can't trust this API Server")
    ca = _ca_of(cm)
    try:
        cas = x509.load_pem_x509_certificates(ca)
    except ValueError:
        raise CLIError(f"the CA in {CLUSTER_INFO} is not a PEM certificate") from None
    if not pubkeypin.matches(pins, cas):
        found = ", ".join(f'"{pubkeypin.hash_cert(c)}"' for c in cas)
        raise CLIError(f"cluster CA found in cluster-info ConfigMap is invalid: none of the public keys {found} "
                       f"are pinned by --discovery-token-ca-cert-hash")
    # Once more over TLS verified against the pinned CA: the server must hold that CA's certificate.
    verified = ssl.create_default_context(cadata=ca.decode())
    try:
        again = _ca_of(await _fetch_cluster_info(server, token, verify=verified))
    except CLIError as e:
        raise CLIError(f"the apiserver does not present a certificate of the pinned CA: {e}") from None
    if again != ca:
        raise CLIError(f"{CLUSTER_INFO} changed between the unverified and the verified read")
    return ca


def default_node_ip(server: str) -> str:
    """The local address this machine uses to reach ``server`` (no packet is sent)."""
    host = urllib.parse.urlsplit(server).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


async def request_node_certificates(client: Client, *, node: str, node_ip: str, pki: pathlib.Path,
                                    node_dir: pathlib.Path, server: str, ca_file: pathlib.Path, timeout: float,
                                    say) -> None:
    """CSRs for the kubelet's serving certificate and kube-proxy's client certificate; once an
    administrator approved them and the signer issued them, write ``pki/nodes/<node>/kubelet.{crt,key}``
    and ``nodes/<node>/kube-proxy.kubeconfig``. Raises CSRError / ApiError."""
    serving_key, proxy_key = new_private_key(), new_private_key()
    serving = await request_certificate(
        client, make_csr(serving_key, common_name=f"{certs.NODE_USER_PREFIX}{node}", organizations=(certs.NODES_GROUP,),
                         dns_names=(node,), ips=(node_ip,)),
        signer_name=certs.KUBELET_SERVING, usages=["digital signature", "server auth"])
    proxy = await request_certificate(
        client, make_csr(proxy_key, common_name="system:kube-proxy"), signer_name=certs.KUBE_APISERVER_CLIENT,
        usages=["digital signature", "client auth"])
    names = [serving["metadata"]["name"], proxy["metadata"]["name"]]
    say(f"waiting up to {timeout:g}s for an administrator to approve the kubelet serving and kube-proxy "
        f"certificates: kubectl certificate approve {' '.join(names)}")
    deadline = time.monotonic() + timeout  # one wait for both: an administrator approves them together
    serving_pem = await wait_for_certificate(client, names[0], serving["metadata"].get("uid", ""), timeout=timeout)
    proxy_pem = await wait_for_certificate(client, names[1], proxy["metadata"].get("uid", ""),
                                           timeout=max(deadline - time.monotonic(), 0))
    write_file(pki / "nodes" / node / "kubelet.crt", serving_pem, private=False)
    write_file(pki / "nodes" / node / "kubelet.key", key_pem(serving_key), private=True)
    kubeconfig.write(node_dir / "kube-proxy.kubeconfig", server=server, user="system:kube-proxy",
                     ca_file=str(ca_file), client_cert_data=proxy_pem, client_key_data=key_pem(proxy_key))


async def run(args: argparse.Namespace, factory) -> int:
    """Discover and verify the cluster, write this worker's files and units; returns 0. Raises CLIError."""
    from deploy import units

    if len(args.args) != 1:
        raise CLIError("usage: kubeling join API_SERVER --token TOKEN --discovery-token-ca-cert-hash sha256:HEX "
                       "[--node-name NAME] [--node-ip IP] [--home DIR]")
    server = server_url(args.args[0])
    if not TOKEN_RE.match(args.token or ""):
        raise CLIError('--token must be of the form "[a-z0-9]{6}.[a-z0-9]{16}" (from `kubeling token create`)')
    if not args.discovery_token_ca_cert_hash:
        raise CLIError("--discovery-token-ca-cert-hash is required (`kubeling token create --print-join-command` "
                       "prints it)")
    try:
        pins = [pubkeypin.check_format(p) for p in args.discovery_token_ca_cert_hash]
    except ValueError as e:
        raise CLIError(str(e)) from None
    node = (args.node_name or socket.gethostname()).lower()
    node_ip = args.node_ip or default_node_ip(server)
    host = urllib.parse.urlsplit(server).hostname or ""
    try:
        ipaddress.ip_address(node_ip)
        ipaddress.ip_address(host)
    except ValueError:
        raise CLIError(f"API_SERVER and --node-ip must be IP addresses (got {host!r}, {node_ip!r})") from None
    node_cidr = args.node_cidr or str(ipaddress.ip_network(f"{node_ip}/24", strict=False))

    ca = await discover(server, args.token, pins, timeout=args.discovery_timeout)
    home = pathlib.Path(args.home).absolute()
    cluster = units.vm_cluster("worker", home=home, address=node_ip, control_plane=host, node_cidr=node_cidr,
                               name=node)
    pki, node_dir = home / "pki", cluster.nodes[0].dir
    for d in (node_dir / "cni" / "bin", node_dir / "cni" / "net.d", node_dir / "shim", node_dir / "pods",
              home / "logs", pki / "nodes" / node):
        d.mkdir(parents=True, exist_ok=True)
    ca_file = pki / "ca.crt"
    if ca_file.exists() and ca_file.read_bytes() != ca:
        raise CLIError(f"{ca_file} holds another cluster's CA; use another --home or remove it")
    write_file(ca_file, ca, private=False)
    bootstrap_kc = node_dir / "bootstrap-kubelet.kubeconfig"
    kubeconfig.write(bootstrap_kc, server=server, user="kubelet-bootstrap", ca_file=str(ca_file), token=args.token)
    say = factory.warn
    say(f"[discovery] cluster CA {pins[0]} verified; the apiserver at {server} presents a certificate it signed")
    say(f"[kubelet-start] wrote {ca_file} and {bootstrap_kc}")
    from cni.install import install
    install(str(node_dir / "cni" / "bin"), python=sys.executable)
    if args.dry_run:
        say("[dry-run] no certificate requested: the kubelet serving certificate and kube-proxy's kubeconfig "
            "are missing until `kubeling join` runs without --dry-run")
    else:
        try:
            async with Client(kubeconfig.load(bootstrap_kc), user_agent="kubeling-join") as c:
                await request_node_certificates(c, node=node, node_ip=node_ip, pki=pki, node_dir=node_dir,
                                                server=server, ca_file=ca_file, timeout=args.certificate_timeout,
                                                say=say)
        except CSRError as e:
            raise CLIError(str(e)) from None
        except ApiError as e:
            raise CLIError(f"certificate request refused: {e.message}") from None
        say(f"[certificates] wrote {pki / 'nodes' / node / 'kubelet.crt'} and {node_dir / 'kube-proxy.kubeconfig'}")
    units_dir = pathlib.Path(args.units_dir) if args.units_dir else (
        pathlib.Path("/etc/systemd/system") if pathlib.Path("/run/systemd/system").is_dir() and not args.dry_run
        else home / "units")
    written = units.write_units(cluster, units_dir, comps=units.join_components(cluster))
    for path in written:
        factory.print(str(path))
    names = " ".join(p.stem for p in written)
    factory.print(f"This node ({node}, {node_ip}) is ready to join {server}. Start it with:")
    if units_dir != pathlib.Path("/etc/systemd/system"):
        factory.print(f"  cp {units_dir}/*.service /etc/systemd/system/")
    factory.print(f"  systemctl daemon-reload && systemctl enable --now {names}")
    factory.print("The kubelet requests its client certificate when it starts; `kubectl get nodes` on the control "
                  "plane then shows the node.")
    return 0


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register ``join`` on the CLI's subparsers."""
    p = sub.add_parser("join", parents=[common], help="make this machine a worker of a cluster (kubeadm join)")
    p.add_argument("--token", default="", help="bootstrap token <id>.<secret> (kubeling token create)")
    p.add_argument("--discovery-token-ca-cert-hash", action="append", default=[], metavar="sha256:HEX",
                   help="pin of the cluster CA's public key (repeatable)")
    p.add_argument("--node-name", default="", help="this node's name (default: the host name)")
    p.add_argument("--node-ip", default="", help="this node's address (default: the one that reaches the apiserver)")
    p.add_argument("--node-cidr", default="", help="the nodes' subnet (default: the node IP's /24)")
    p.add_argument("--home", default=os.environ.get("KUBELING_HOME", "/var/lib/kubeling"),
                   help="state directory of this node (KUBELING_HOME)")
    p.add_argument("--units-dir", default="", help="where to write the .service files "
                   "(default /etc/systemd/system on a systemd machine, else <home>/units)")
    p.add_argument("--discovery-timeout", type=flag_duration, default=300.0,
                   help="how long to wait for cluster-info to be signed with the token (5m)")
    p.add_argument("--certificate-timeout", type=flag_duration, default=300.0,
                   help="how long to wait for the serving and kube-proxy certificates to be approved (5m)")
    p.add_argument("--dry-run", action="store_true", help="verify and write the files, request no certificate")
    p.set_defaults(func=run, args=[])
