"""The kube-dns Service and its endpoints, written by the DNS server itself.

Upstream, CoreDNS runs as a Deployment and its manifests (kubeadm's
addons/dns, cluster/addons/dns/coredns) carry a Service ``kube-system/kube-dns``
with a fixed cluster IP (10.96.0.10), ports ``dns`` 53/UDP, ``dns-tcp``
53/TCP and ``metrics`` 9153/TCP, selecting the CoreDNS pods. Here the server
is a host process, so the Service has no selector and the server publishes
its own address as the Endpoints ``kube-system/kube-dns`` (which kube-proxy
reads to DNAT the cluster IP) and as an EndpointSlice managed by
``kubeling-dns`` (which kubectl reads). Each object is created if absent and
replaced if it differs, so a restart with other flags converges; the
Service's clusterIP is immutable, so a Service holding another IP is left
with a warning. The objects are checked again every minute and at once when
the kube-dns Service or its slice is deleted.
"""
from __future__ import annotations

import asyncio
import logging

from kubeling.client import ApiError, Client, retry_on_conflict

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
NAME = "kube-dns"
SLICE_NAME = "kube-dns-kubeling"
MANAGED_BY = "kubeling-dns"
SERVICE_LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}


def desired_service(*, service_ip: str, port: int, metrics_port: int) -> dict:
    """The kube-dns Service: fixed clusterIP, dns/dns-tcp on 53 and metrics on 9153, no selector."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SERVICE_LABELS),
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "clusterIPs": [service_ip],
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": metrics_port}]},
    }


def _ports(port: int, metrics_port: int) -> list[dict]:
    return [{"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
            {"name": "metrics", "port": metrics_port, "protocol": "TCP"}]


def desired_endpoints(*, address: str, port: int, metrics_port: int) -> dict:
    """The Endpoints kube-dns: one ready address (the server's) with the three named ports."""
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SERVICE_LABELS)},
            "subsets": [{"addresses": [{"ip": address}], "ports": _ports(port, metrics_port)}]}


def desired_endpointslice(*, address: str, port: int, metrics_port: int) -> dict:
    """The EndpointSlice of kube-dns (service-name label, managed-by kubeling-dns), one ready endpoint."""
    labels = {**SERVICE_LABELS, "kubernetes.io/service-name": NAME,
              "endpointslice.kubernetes.io/managed-by": MANAGED_BY}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": SLICE_NAME, "namespace": NAMESPACE, "labels": labels},
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address],
                           "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": _ports(port, metrics_port)}


def _service_differs(cur: dict, want: dict) -> bool:
    spec, wspec = cur.get("spec") or {}, want["spec"]
    ports = [{k: p.get(k) for k in ("name", "port", "protocol", "targetPort")} for p in spec.get("ports") or []]
    labels = (cur.get("metadata") or {}).get("labels") or {}
    return (ports != wspec["ports"] or bool(spec.get("selector"))
            or any(labels.get(k) != v for k, v in SERVICE_LABELS.items()))


async def _ensure(client: Client, resource: str, want: dict, differs) -> str:
    """Create ``want`` or replace the existing object when ``differs(cur, want)``; returns what was done."""
    async def attempt() -> str:
        try:
            cur = await client.get(resource, want["metadata"]["name"], namespace=NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            try:
                await client.create(resource, want, namespace=NAMESPACE)
                return "created"
            except ApiError as e2:
                if e2.code == 409 and e2.reason == "AlreadyExists":
                    raise ApiError(409, {"reason": "Conflict", "message": "raced"}) from None
                raise
        if not differs(cur, want):
            return "unchanged"
        body = dict(want)
        body["metadata"] = {**want["metadata"], "resourceVersion": cur["metadata"].get("resourceVersion")}
        if resource == "services":  # clusterIP is immutable: keep what the Service has
            spec = dict(want["spec"])
            spec["clusterIP"] = cur["spec"].get("clusterIP")
            spec["clusterIPs"] = cur["spec"].get("clusterIPs") or [spec["clusterIP"]]
            body["spec"] = spec
        await client.replace(resource, body)
        return "updated"
    return await retry_on_conflict(attempt)


async def register(client: Client, *, service_ip: str, address: str, port: int, metrics_port: int) -> None:
    """Create or update the Service, Endpoints and EndpointSlice kube-system/kube-dns.
    Raises ApiError (or httpx.TransportError) on the first failure."""
    svc = desired_service(service_ip=service_ip, port=port, metrics_port=metrics_port)
    done = await _ensure(client, "services", svc, _service_differs)
    cur = await client.get("services", NAME, namespace=NAMESPACE)
    if cur["spec"].get("clusterIP") != service_ip:
        log.warning("Service %s/%s has clusterIP %s, not %s (clusterIP is immutable: delete the Service to move it)",
                    NAMESPACE, NAME, cur["spec"].get("clusterIP"), service_ip)
    log.info("Service %s/%s %s", NAMESPACE, NAME, done)
    ep = desired_endpoints(address=address, port=port, metrics_port=metrics_port)
    done = await _ensure(client, "endpoints", ep, lambda c, w: c.get("subsets") != w["subsets"])
    log.info("Endpoints %s/%s %s (%s:%d)", NAMESPACE, NAME, done, address, port)
    es = desired_endpointslice(address=address, port=port, metrics_port=metrics_port)
    done = await _ensure(client, "endpointslices", es,
                         lambda c, w: (c.get("endpoints"), c.get("ports"), (c.get("metadata") or {}).get("labels"))
                         != (w["endpoints"], w["ports"], w["metadata"]["labels"]))
    log.info("EndpointSlice %s/%s %s", NAMESPACE, SLICE_NAME, done)


async def register_until_done(client: Client, *, retry_delay: float = 1.0, max_delay: float = 10.0,
                              **kwargs) -> None:
    """``register`` again (backing off up to ``max_delay`` s) until it succeeds: the apiserver
    may start after the DNS server. Cancel to give up."""
    delay = retry_delay
    while True:
        try:
            await register(client, **kwargs)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure is retried; logged once per try
            log.warning("registering %s/%s failed, retrying in %.0fs: %s", NAMESPACE, NAME, delay, e)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)


async def keep_registered(client: Client, trigger: asyncio.Event, *, period: float = 60.0, **kwargs) -> None:
    """``register_until_done`` now, then again every ``period`` s or as soon as ``trigger``
    is set (the informers set it when the kube-dns Service or slice is deleted), so the
    objects come back like a Deployment's would. Runs until cancelled."""
    while True:
        trigger.clear()
        await register_until_done(client, **kwargs)
        try:
            await asyncio.wait_for(trigger.wait(), period)
        except asyncio.TimeoutError:
            pass
