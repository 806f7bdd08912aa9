"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics) served by the apiserver itself, for ``kubectl top``.

Upstream serves this group from metrics-server through the aggregation
layer; metrics-server scrapes every kubelet's resource metrics and keeps the
latest point. Here the apiserver asks the kubelets' /stats/summary (node
InternalIP + daemonEndpoints.kubeletEndpoint.Port, as pods/log does) when a
request comes and answers in metrics-server's shapes
(sigs.k8s.io/metrics-server pkg/api: nodes.go, pod.go; types from
k8s.io/metrics pkg/apis/metrics/v1beta1): usage cpu as a nanocore/millicore
quantity, memory (working set) in binary units.
"""
from __future__ import annotations

import asyncio
import datetime
import logging

import httpx
from starlette.requests import Request

from apiserver import authz, errors
from apiserver.authn import authenticate
from apiserver.authz import RequestAttributes
from apiserver.kubeletlocation import kubelet_host_port, kubelet_url
from apiserver.registry.rest import ResourceInfo
from kubeling.api.resources import Resource

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
# A kubelet that does not answer in this time is left out (metrics-server's scrape timeout is 10 s).
KUBELET_TIMEOUT = 5.0

RESOURCE_INFOS = [
    ResourceInfo(Resource(GROUP, VERSION, "nodes", "NodeMetrics", False), "", verbs=("get", "list")),
    ResourceInfo(Resource(GROUP, VERSION, "pods", "PodMetrics", True), "", verbs=("get", "list")),
]


def cpu_quantity(nanocores: int) -> str:
    """Nanocores as a canonical quantity: ``0``, ``12m`` when whole millicores, else ``12345n``."""
    if nanocores == 0:
        return "0"
    if nanocores % 1_000_000_000 == 0:
        return str(nanocores // 1_000_000_000)
    if nanocores % 1_000_000 == 0:
        return f"{nanocores // 1_000_000}m"
    if nanocores % 1_000 == 0:
        return f"{nanocores // 1_000}u"
    return f"{nanocores}n"


def memory_quantity(n: int) -> str:
    """Bytes as a canonical binary quantity: ``34Mi`` / ``1234Ki`` when exact, else plain bytes."""
    if n == 0:
        return "0"
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def kubelet_base_url(node: dict, client=None) -> str | None:
    """``http(s)://IP:PORT`` of a node's kubelet (scheme from ``client``, see kubeletlocation.kubelet_url),
    None without an address."""
    where = kubelet_host_port(node)
    return kubelet_url(client, where) if where else None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(stats: dict) -> dict | None:
    cpu, mem = stats.get("cpu") or {}, stats.get("memory") or {}
    if "usageNanoCores" not in cpu or "workingSetBytes" not in mem:
        return None
    return {"cpu": cpu_quantity(int(cpu["usageNanoCores"])), "memory": memory_quantity(int(mem["workingSetBytes"]))}


def node_metrics(node: dict, summary: dict, *, window: str) -> dict | None:
    """NodeMetrics of ``node`` from its kubelet's Summary; None when the summary has no cpu rate yet."""
    usage = _usage(summary.get("node") or {})
    if usage is None:
        return None
    meta = node.get("metadata") or {}
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": meta.get("name"), "creationTimestamp": _now(), "labels": meta.get("labels") or {}},
            "timestamp": (summary["node"].get("cpu") or {}).get("time") or _now(), "window": window,
            "usage": usage}


def pod_metrics(pod: dict, stats: dict, *, window: str) -> dict | None:
    """PodMetrics of ``pod`` from its PodStats entry; None when a container lacks figures (as metrics-server)."""
    containers = []
    for c in stats.get("containers") or []:
        usage = _usage(c)
        if usage is None:
            return None
        containers.append({"name": c.get("name"), "usage": usage})
    meta = pod.get("metadata") or {}
    return {"kind": "PodMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "creationTimestamp": _now(),
                         "labels": meta.get("labels") or {}},
            "timestamp": (stats.get("cpu") or {}).get("time") or _now(), "window": window,
            "containers": sorted(containers, key=lambda c: c["name"] or "")}


class MetricsAPI:
    """Serves GET /apis/metrics.k8s.io/v1beta1/{nodes[/NAME], pods, namespaces/NS/pods[/NAME]}.

    ``stores`` is the apiserver's store table (nodes and pods are read from
    the watch cache), ``kubelet`` the shared httpx client; ``authenticators``
    and ``authorizer`` as the resource handler's. Errors are StatusError.
    """

    def __init__(self, stores: dict, *, kubelet: httpx.AsyncClient, authenticators, authorizer,
                 window: str = "0.25s") -> None:
        self.stores = stores
        self.kubelet = kubelet
        self.authenticators = authenticators
        self.authorizer = authorizer
        self.window = window

    async def summary(self, node: dict) -> dict | None:
        """The node's kubelet Summary, None when it cannot be reached (logged)."""
        base = kubelet_base_url(node, self.kubelet)
        if base is None:
            return None
        try:
            r = await self.kubelet.get(f"{base}/stats/summary", timeout=KUBELET_TIMEOUT)
            if r.status_code != 200:
                log.info("stats of node %s: kubelet answered %s", node["metadata"]["name"], r.status_code)
                return None
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            log.info("stats of node %s: %s", node["metadata"]["name"], e)
            return None

    async def handle(self, request: Request, parts: list[str]) -> dict:
        """The answer to ``request`` whose path after ``/apis/metrics.k8s.io/v1beta1`` is ``parts``."""
        ns, resource, name = None, None, None
        if len(parts) in (1, 2) and parts[0] in ("nodes", "pods"):
            resource, name = parts[0], (parts[1] if len(parts) == 2 else None)
        elif len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == "pods":
            ns, resource, name = parts[1], "pods", (parts[3] if len(parts) == 4 else None)
        if resource is None or (resource == "nodes" and ns is not None):
            raise errors.path_not_found()
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, resource)
        user = await authenticate(self.authenticators, request)
        if user is None:
            raise errors.StatusError(401, "Unauthorized", "Unauthorized")
        verb = "get" if name else "list"
        await authz.check(self.authorizer, user, RequestAttributes(verb, GROUP, resource, None, ns, name))
        selector = request.query_params.get("labelSelector")
        if resource == "nodes":
            return await self.nodes(name, label_selector=selector)
        return await self.pods(ns, name, label_selector=selector)

    @staticmethod
    async def _get(store, ns: str | None, name: str, resource: str) -> dict:
        """The object, or 404 in metrics.k8s.io's terms (``pods.metrics.k8s.io "x" not found``) as metrics-server."""
        try:
            return await store.get(ns, name)
        except errors.StatusError as e:
            if e.code == 404:
                raise errors.not_found(resource, name, group=GROUP) from None
            raise

    async def nodes(self, name: str | None, *, label_selector: str | None = None) -> dict:
        """NodeMetrics of ``name`` (404 without figures) or a NodeMetricsList."""
        store = self.stores[("", "v1", "nodes")]
        if name:
            nodes = [await self._get(store, None, name, "nodes")]
        else:
            nodes = (await store.list(None, label_selector=label_selector, resource_version="0"))["items"]
        summaries = await asyncio.gather(*(self.summary(n) for n in nodes))
        items = [m for n, s in zip(nodes, summaries) if s for m in [node_metrics(n, s, window=self.window)] if m]
        if name:
            if not items:
                raise errors.not_found("nodes", name, group=GROUP)
            return items[0]
        return {"kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}

    async def pods(self, ns: str | None, name: str | None, *, label_selector: str | None = None) -> dict:
        """PodMetrics of ``ns/name`` (404 without figures) or a PodMetricsList of ``ns`` (all when None)."""
        store = self.stores[("", "v1", "pods")]
        if name:
            pods = [await self._get(store, ns, name, "pods")]
        else:
            pods = (await store.list(ns, label_selector=label_selector, resource_version="0"))["items"]
        node_names = sorted({(p.get("spec") or {}).get("nodeName") for p in pods} - {None, ""})
        node_store = self.stores[("", "v1", "nodes")]
        nodes = []
        for n in node_names:
            try:
                nodes.append(await node_store.get(None, n))
            except errors.StatusError:
                continue
        summaries = await asyncio.gather(*(self.summary(n) for n in nodes))
        stats = {}
        for s in summaries:
            for ps in (s or {}).get("pods") or []:
                ref = ps.get("podRef") or {}
                stats[(ref.get("namespace"), ref.get("name"))] = ps
        items = []
        for p in pods:
            meta = p["metadata"]
            ps = stats.get((meta.get("namespace"), meta.get("name")))
            m = pod_metrics(p, ps, window=self.window) if ps else None
            if m:
                items.append(m)
        if name:
            if not items:
                raise errors.not_found("pods", name, group=GROUP)
            return items[0]
        return {"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}
