"""Where a pod's container runs: the kubelet address the apiserver proxies to.

pods/log, pods/exec and metrics.k8s.io all reach a node's kubelet at its
InternalIP (else its first address) and ``status.daemonEndpoints.kubeletEndpoint.Port``.
Mirrors pkg/registry/core/pod/strategy.go (LogLocation, ExecLocation:
container defaulting and checks) and pkg/kubelet/client (GetConnectionInfo,
KubeletClientConfig: with --kubelet-client-certificate/--kubelet-client-key the
apiserver presents that certificate to the kubelet over HTTPS and, with
--kubelet-certificate-authority, verifies the kubelet's serving certificate).
"""
from __future__ import annotations

import dataclasses
import ssl

import httpx

from apiserver import errors

DEFAULT_KUBELET_PORT = 10250


@dataclasses.dataclass(frozen=True)
class KubeletClientConfig:
    """How the apiserver reaches kubelets (kube-apiserver's --kubelet-* flags; file paths).

    Without any of them the kubelets are spoken to over plain HTTP (kubeling's
    default until the cluster runs with TLS); with any of them over HTTPS.
    """

    client_certificate: str | None = None
    client_key: str | None = None
    certificate_authority: str | None = None

    @property
    def scheme(self) -> str:
        """``https`` when a kubelet TLS flag is set, else ``http``."""
        return "https" if (self.client_certificate or self.certificate_authority) else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client TLS context: our client cert, the kubelet CA (unverified without one, as upstream
        without --kubelet-certificate-authority); None for plain HTTP. Raises ssl.SSLError/OSError."""
        if self.scheme != "https":
            return None
        ctx = ssl.create_default_context(cafile=self.certificate_authority)
        if not self.certificate_authority:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_certificate and self.client_key:
            ctx.load_cert_chain(self.client_certificate, self.client_key)
        return ctx

    def http_client(self) -> "KubeletClient":
        """The shared httpx client for pods/log, stats and metrics (no read timeout: logs follow)."""
        ctx = self.ssl_context()
        return KubeletClient(timeout=httpx.Timeout(10.0, read=None), scheme=self.scheme, ssl_context=ctx,
                             **({"verify": ctx} if ctx is not None else {}))


class KubeletClient(httpx.AsyncClient):
    """httpx client that knows the scheme kubelets are served on and its TLS context (for websockets)."""

    def __init__(self, *, scheme: str = "http", ssl_context: ssl.SSLContext | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scheme = scheme
        self.ssl_context = ssl_context


def kubelet_url(client, where: str, path: str = "") -> str:
    """``http(s)://IP:PORT<path>`` for a kubelet at ``where``, the scheme from ``client``
    (a KubeletClient; plain ``http`` for any other client)."""
    return f"{getattr(client, 'scheme', 'http')}://{where}{path}"


def kubelet_host_port(node: dict) -> str | None:
    """``IP:PORT`` (IPv6 in brackets) of ``node``'s kubelet, or None when the node has no address."""
    status = node.get("status") or {}
    addrs = status.get("addresses") or []
    ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None) \
        or next((a.get("address") for a in addrs), None)
    if not ip:
        return None
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
        or DEFAULT_KUBELET_PORT
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def pod_container(pod: dict, container: str | None) -> str:
    """The container a log/exec request addresses: ``container`` if the pod has it (app, init or
    ephemeral container), else the pod's only app container. StatusError 400 with upstream's message otherwise."""
    name = (pod.get("metadata") or {}).get("name", "")
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    if not container:
        if len(names) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(names)}]")
        return names[0]
    if container not in names + [c.get("name") for f in ("initContainers", "ephemeralContainers")
                                 for c in spec.get(f) or []]:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


async def pod_kubelet(stores: dict, pod: dict) -> str:
    """``IP:PORT`` of the kubelet running ``pod``; StatusError 400 when the pod is not bound
    or its node has no address, 404 when the node is gone."""
    name = (pod.get("metadata") or {}).get("name", "")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node = await stores[("", "v1", "nodes")].get(None, node_name)
    where = kubelet_host_port(node)
    if not where:
        raise errors.bad_request(f"node {node_name} has no address to reach its kubelet")
    return where
