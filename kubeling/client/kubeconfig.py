"""Reading and writing kubeconfig files, the one way every component finds the apiserver.

A kubeconfig (clusters, users, contexts, current-context) is what kubectl
and client-go read; kubeling's scheduler, controller-manager, kubelet,
kube-proxy and CLI read the same file, so TLS and credentials can be
switched on in one place without touching the components.
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import os
import pathlib
import ssl
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

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for an ``https://`` server (None for ``http://``): trusts
        ``ca_file`` (else the system CAs), presents the client certificate if one is set,
        and verifies nothing when ``insecure_skip_tls_verify``. Raises ssl.SSLError / OSError
        on an unreadable or mismatched certificate or key."""
        if not self.server.startswith("https"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file if not self.insecure_skip_tls_verify else None)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert_file and self.client_key_file:
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        return ctx

    def httpx_kwargs(self) -> dict:
        """Keyword arguments for ``httpx.AsyncClient``: base_url, verify (an SSLContext for
        https), headers (the bearer token)."""
        kwargs: dict = {"base_url": self.server}
        ctx = self.ssl_context()
        if ctx is not None:
            kwargs["verify"] = ctx
        if self.token:
            kwargs["headers"] = {"Authorization": f"Bearer {self.token}"}
        return kwargs


def _named(items: list | None, name: str, what: str) -> dict:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise KubeconfigError(f'{what} "{name}" not found in kubeconfig')


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# Embedded (*-data) certificates and keys go to private temp files because
# ssl.SSLContext.load_cert_chain reads only files; they are removed at exit.
_TEMP_FILES: list[str] = []


def _remove_temp_files() -> None:
    for path in _TEMP_FILES:
        with contextlib.suppress(OSError):
            os.unlink(path)


atexit.register(_remove_temp_files)


def _data_file(data_b64: str) -> str:
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (ValueError, TypeError) as e:
        raise KubeconfigError(f"kubeconfig: a *-data field is not valid base64: {e}") from None
    fd, path = tempfile.mkstemp(prefix="kubeling-kc-")
    _TEMP_FILES.append(path)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
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
        try:
            token = (p.parent / user["tokenFile"]).read_text().strip()
        except OSError as e:
            raise KubeconfigError(f"kubeconfig {p}: cannot read tokenFile: {e}") from None
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
          client_key_file: str | None = None, token: str | None = None,
          ca_data: bytes | str | None = None, client_cert_data: bytes | str | None = None,
          client_key_data: bytes | str | None = None, insecure_skip_tls_verify: bool = False) -> None:
    """Write a single-context kubeconfig (context ``<user>@<cluster>``), mode 0600.

    ``*_file`` arguments are written as paths (``certificate-authority``,
    ``client-certificate``, ``client-key``); ``*_data`` arguments (PEM bytes or
    text) are embedded base64-encoded as ``*-data``, as kubeadm writes admin.conf.
    """
    cluster_entry: dict = {"server": server}
    if ca_data:
        cluster_entry["certificate-authority-data"] = _b64(ca_data)
    elif ca_file:
        cluster_entry["certificate-authority"] = ca_file
    if insecure_skip_tls_verify:
        cluster_entry["insecure-skip-tls-verify"] = True
    user_entry: dict = {}
    if client_cert_data:
        user_entry["client-certificate-data"] = _b64(client_cert_data)
    elif client_cert_file:
        user_entry["client-certificate"] = client_cert_file
    if client_key_data:
        user_entry["client-key-data"] = _b64(client_key_data)
    elif client_key_file:
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
