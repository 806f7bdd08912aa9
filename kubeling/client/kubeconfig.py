"""Reading and writing kubeconfig files, the one way every component finds the apiserver.

A kubeconfig (clusters, users, contexts, current-context) is what kubectl
and client-go read; kubeling's scheduler, controller-manager, kubelet,
kube-proxy and CLI read the same file, so TLS and credentials can be
switched on in one place without touching the components.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import pathlib
import tempfile

import yaml


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable, or names a context/cluster/user it lacks."""


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """What a client needs to reach one apiserver as one identity.

    ``server`` is a URL (``https://127.0.0.1:6443``); the TLS fields are file
    paths (data fields of the kubeconfig are written to private temp files).
    """

    server: str
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False

    def httpx_kwargs(self) -> dict:
        """Keyword arguments for ``httpx.AsyncClient``: base_url, verify, cert, headers."""
        kwargs: dict = {"base_url": self.server}
        if self.server.startswith("https"):
            if self.insecure_skip_tls_verify:
                kwargs["verify"] = False
            elif self.ca_file:
                import ssl

                kwargs["verify"] = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert_file and self.client_key_file:
                ctx = kwargs.get("verify")
                if not hasattr(ctx, "load_cert_chain"):
                    import ssl

                    ctx = ssl.create_default_context()
                    if self.insecure_skip_tls_verify:
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
                kwargs["verify"] = ctx
        if self.token:
            kwargs["headers"] = {"Authorization": f"Bearer {self.token}"}
        return kwargs


def _named(items: list | None, name: str, what: str) -> dict:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise KubeconfigError(f'{what} "{name}" not found in kubeconfig')


def _data_file(data_b64: str) -> str:
    fd, path = tempfile.mkstemp(prefix="kubeling-kc-")
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return path


def load(path: str | os.PathLike, *, context: str | None = None) -> ClusterConfig:
    """Read a kubeconfig file and resolve ``context`` (default: current-context).

    Relative certificate paths are resolved against the kubeconfig's
    directory, as kubectl does. Raises KubeconfigError on any problem.
    """
    p = pathlib.Path(path)
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise KubeconfigError(f"kubeconfig {p} not found (is the cluster up? try `make up`)") from None
    except (OSError, yaml.YAMLError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {p}: {e}") from None
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"kubeconfig {p} has no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx.get("user", ""), "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeconfigError(f"cluster of context {ctx_name!r} in {p} has no server")

    def file_of(section: dict, key: str) -> str | None:
        if section.get(f"{key}-data"):
            return _data_file(section[f"{key}-data"])
        if section.get(key):
            return str((p.parent / section[key]).resolve())
        return None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (p.parent / user["tokenFile"]).read_text().strip()
    return ClusterConfig(
        server=cluster["server"].rstrip("/"),
        ca_file=file_of(cluster, "certificate-authority"),
        client_cert_file=file_of(user, "client-certificate"),
        client_key_file=file_of(user, "client-key"),
        token=token,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
    )


def write(path: str | os.PathLike, *, server: str, user: str, cluster: str = "kubeling",
          ca_file: str | None = None, client_cert_file: str | None = None,
          client_key_file: str | None = None, token: str | None = None) -> None:
    """Write a single-context kubeconfig (context ``<user>@<cluster>``), mode 0600."""
    cluster_entry: dict = {"server": server}
    if ca_file:
        cluster_entry["certificate-authority"] = ca_file
    user_entry: dict = {}
    if client_cert_file:
        user_entry["client-certificate"] = client_cert_file
    if client_key_file:
        user_entry["client-key"] = client_key_file
    if token:
        user_entry["token"] = token
    ctx = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": user}}],
        "current-context": ctx,
        "preferences": {},
    }
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
