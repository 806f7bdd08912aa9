"""What kube-proxy needs to know about Services and Endpoints, as flat records.

The iptables renderer must be a pure function of plain data, so the API
objects (Service and v1 Endpoints dicts from the informers) are first turned
into ``ServicePort`` records (one per port of a Service) and lists of
``Endpoint`` records keyed by ``ServicePortName``. Mirrors upstream's
pkg/proxy/serviceport.go, endpoint.go and the service/endpoints change
trackers (servicechangetracker.go, endpointschangetracker.go), without the
incremental bookkeeping: a sync always rebuilds everything from the listers.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
from typing import Iterable, NamedTuple

log = logging.getLogger(__name__)

PROTOCOLS = ("TCP", "UDP", "SCTP")
# Upstream's default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
DEFAULT_AFFINITY_TIMEOUT = 10800


class ServicePortName(NamedTuple):
    """Identity of one port of one Service (upstream's proxy.ServicePortName).

    ``str()`` is ``"namespace/name:port"`` (``"namespace/name"`` for an unnamed
    port): the text hashed into chain names and shown in rule comments.
    """

    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self) -> str:
        suffix = f":{self.port}" if self.port else ""
        return f"{self.namespace}/{self.name}{suffix}"


@dataclasses.dataclass(frozen=True)
class ServicePort:
    """One port of a ClusterIP/NodePort Service (upstream's BaseServicePortInfo).

    ``protocol`` is ``"TCP"``/``"UDP"``/``"SCTP"``; ``node_port`` is 0 when the
    Service has none; ``affinity_timeout`` is seconds of ClientIP session
    affinity, or 0 for none.
    """

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_timeout: int = 0

    @property
    def protocol(self) -> str:
        """The port's protocol ("TCP", "UDP" or "SCTP")."""
        return self.name.protocol


@dataclasses.dataclass(frozen=True, order=True)
class Endpoint:
    """One ready backend of a service port: ``ip`` (IPv4 text) and ``port``."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"

    def sort_key(self) -> tuple[int, int]:
        """``(ip as int, port)``: orders endpoints numerically, for stable rule output."""
        return _ipv4_int(self.ip), self.port


EndpointsMap = dict[ServicePortName, list[Endpoint]]


@functools.lru_cache(maxsize=1 << 18)
def _ipv4_int(text: str) -> int:
    # Cached: a sync sorts and checks the same tens of thousands of addresses
    # again and again (ipaddress parsing was half of a 5,000-service render).
    return int(ipaddress.IPv4Address(text))


def _ipv4(text: str | None) -> bool:
    try:
        _ipv4_int(text or "")
        return True
    except ValueError:
        return False


def service_ports(service: dict) -> list[ServicePort]:
    """The proxiable ports of one Service object.

    Headless Services (clusterIP ``None`` or empty), ExternalName Services and
    non-IPv4 cluster IPs give no ports (upstream's ``newServiceInfo`` skips them
    too). Ports with an unknown protocol are skipped with a warning.
    """
    meta = service.get("metadata", {})
    spec = service.get("spec") or {}
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    if spec.get("type") == "ExternalName":
        return []
    cluster_ip = spec.get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        return []
    if not _ipv4(cluster_ip):
        log.warning("service %s/%s: cluster IP %r is not IPv4, skipped", ns, name, cluster_ip)
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    node_ports_wanted = spec.get("type") in ("NodePort", "LoadBalancer")
    out = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        if protocol not in PROTOCOLS or not isinstance(p.get("port"), int):
            log.warning("service %s/%s: port %r skipped (protocol/port)", ns, name, p)
            continue
        spn = ServicePortName(ns, name, p.get("name") or "", protocol)
        node_port = int(p.get("nodePort") or 0) if node_ports_wanted else 0
        out.append(ServicePort(spn, cluster_ip, int(p["port"]), node_port, affinity))
    return out


def build_service_map(services: Iterable[dict]) -> dict[ServicePortName, ServicePort]:
    """All proxiable service ports of ``services``, keyed by ServicePortName."""
    out: dict[ServicePortName, ServicePort] = {}
    for svc in services:
        for sp in service_ports(svc):
            out[sp.name] = sp
    return out


def endpoints_ports(endpoints: dict) -> EndpointsMap:
    """Ready endpoints per service port of ONE v1 Endpoints object.

    An Endpoints object has the Service's name; each subset's ports carry the
    Service port's *name* and the resolved target port (the endpoints
    controller resolved named target ports against the pods), so the
    ServicePortName is (namespace, object name, port name, protocol).
    ``notReadyAddresses`` are left out, as upstream does for cluster traffic.
    Lists come sorted by IP then port, without duplicates.
    """
    meta = endpoints.get("metadata", {})
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    out: dict[ServicePortName, set[Endpoint]] = {}
    for subset in endpoints.get("subsets") or []:
        ips = [a.get("ip") for a in subset.get("addresses") or [] if _ipv4(a.get("ip"))]
        for port in subset.get("ports") or []:
            if not isinstance(port.get("port"), int):
                continue
            spn = ServicePortName(ns, name, port.get("name") or "", port.get("protocol") or "TCP")
            out.setdefault(spn, set()).update(Endpoint(ip, port["port"]) for ip in ips)
    return {k: sorted(v, key=Endpoint.sort_key) for k, v in out.items()}


def build_endpoints_map(endpoints: Iterable[dict]) -> EndpointsMap:
    """Ready endpoints per service port of every v1 Endpoints object (see endpoints_ports)."""
    out: EndpointsMap = {}
    for ep in endpoints:
        out.update(endpoints_ports(ep))
    return out
