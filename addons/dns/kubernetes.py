"""Names in the cluster domain -> DNS records, from Services and EndpointSlices.

Mirrors CoreDNS's plugin/kubernetes (kubernetes.go Records/findServices,
reverse.go, parse.go, ns.go) in its default kubeadm configuration, which in
turn implements the Kubernetes DNS-Based Service Discovery specification
(kubernetes/dns docs/specification.md, schema 1.1.0):

- ``<svc>.<ns>.svc.<zone>``: A (AAAA) = the cluster IP(s); for a headless
  Service (clusterIP None) the ready endpoint addresses; ExternalName -> CNAME,
  followed (the target's records appended: resolved here when in the zone,
  asked upstream by the server otherwise), as CoreDNS's backend lookup does.
- ``<hostname>.<svc>.<ns>.svc.<zone>``: A of one endpoint of a headless
  Service; the hostname is the endpoint's ``hostname`` or, as CoreDNS makes it
  up, its address with dashes (``10-244-1-5``).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>``: SRV ``0 <100/n> <port> <target>``
  for a named port; the target is the Service's name (ClusterIP) or each
  endpoint's name (headless), with the A records of the targets as additional.
- ``<a-b-c-d>.<ns>.pod.<zone>``: A ``a.b.c.d`` without any lookup ("pods insecure").
- ``<d>.<c>.<b>.<a>.in-addr.arpa``: PTR for cluster IPs and headless endpoint
  addresses; other addresses fall through to the forwarder (``fallthrough in-addr.arpa``).
- ``dns-version.<zone>`` TXT "1.1.0"; the zone apex has SOA and NS.
- A name that exists with other types -> NOERROR, no answers, SOA in authority
  (NODATA); a name in the zone that does not exist -> NXDOMAIN with the SOA
  (so is a headless Service without ready endpoints, as in CoreDNS).

All comparisons are case-insensitive; answers carry the question's own
spelling. TTL 5 s (CoreDNS's default ``ttl``). The object caches here are fed
by informer handlers (``upsert_*`` / ``remove_*``), so the lookups never wait.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections import Counter
from typing import Callable

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

DEFAULT_TTL = 5
DNS_SCHEMA_VERSION = "1.1.0"
REVERSE_ZONE = "in-addr.arpa"
# SOA timers as CoreDNS's plugin/kubernetes serves them: refresh, retry, expire (s); minimum = the ttl.
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400


@dataclasses.dataclass
class Answer:
    """What the plugin says for one question: ``rcode`` (dnslib RCODE value),
    the answer/authority/additional RR lists (dnslib RR) and the zone that
    answered (``cluster.local.`` or ``in-addr.arpa.``), used as a metric label."""

    rcode: int
    answer: list[RR]
    authority: list[RR]
    additional: list[RR]
    zone: str
    chase: str | None = None  # an out-of-zone CNAME target (FQDN) whose records the server appends
    # What the answer depends on, for the server's cache: ("svc", ns, name), ("ns", ns), ("ptr",),
    # ("global",) (anything may change it) or ("static",) (no object changes it).
    deps: tuple = ("static",)


def dashed_ip(ip: str) -> str:
    """``10.244.1.5`` -> ``10-244-1-5`` (CoreDNS's endpointHostname for endpoints without a hostname)."""
    return ip.replace(".", "-").replace(":", "-")


def _undash_ipv4(label: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None


def _ready(endpoint: dict, publish_not_ready: bool) -> bool:
    # An unset ready condition means ready (discovery/v1 says consumers should assume so; CoreDNS does).
    return publish_not_ready or (endpoint.get("conditions") or {}).get("ready") is not False


class Kubernetes:
    """The cluster-domain resolver: object caches plus ``resolve(qname, qtype)``.

    ``zone`` is the cluster domain (``cluster.local``), ``ttl`` seconds on every
    record, ``dns_ip`` the address answered for ``ns.dns.<zone>`` (the Service
    IP), ``on_change(keys)`` is called after every object change with the
    (namespace, service) keys it touched (the server drops the cached answers
    that depend on them, see ``Answer.deps``). Mirrors CoreDNS's ``Kubernetes`` plugin
    struct with its dnsController caches.
    """

    def __init__(self, *, zone: str = "cluster.local", ttl: int = DEFAULT_TTL, dns_ip: str | None = None,
                 on_change: Callable[[list[tuple[str, str]]], None] | None = None):
        self.zone = zone.strip(".").lower()
        if not self.zone:
            raise ValueError("cluster domain must not be empty")
        self.zone_fqdn = self.zone + "."
        self._zone_labels = self.zone.split(".")
        self.ttl = ttl
        self.dns_ip = dns_ip
        self.on_change = on_change
        self.services: dict[tuple[str, str], dict] = {}
        self.slices: dict[tuple[str, str], dict[str, dict]] = {}     # (ns, service) -> slice name -> slice
        self._slice_owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, slice name) -> (ns, service)
        self._namespaces: Counter = Counter()                         # services per namespace
        self._reverse: dict[str, list[str]] | None = None             # IP -> PTR targets, built lazily
        self.serial = int(time.time())
        # False until the informers have listed: names of the zone get SERVFAIL (clients retry)
        # rather than an NXDOMAIN they would cache, as CoreDNS holds queries until its API sync.
        self.synced = True

    # ------------------------------------------------------------------ caches

    def _changed(self, *keys: tuple[str, str]) -> None:
        self._reverse = None
        # CoreDNS's SOA serial is the time of the last change it saw.
        self.serial = max(self.serial + 1, int(time.time()))
        if self.on_change is not None:
            self.on_change([k for k in keys if k is not None])

    def upsert_service(self, svc: dict) -> None:
        """Add or replace a Service (informer on_add / on_update)."""
        meta = svc.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        if key not in self.services:
            self._namespaces[key[0]] += 1
        self.services[key] = svc
        self._changed(key)

    def remove_service(self, svc: dict) -> None:
        """Forget a deleted Service (informer on_delete)."""
        meta = svc.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        if self.services.pop(key, None) is not None:
            self._namespaces[key[0]] -= 1
            if self._namespaces[key[0]] <= 0:
                del self._namespaces[key[0]]
        self._changed(key)

    def upsert_endpointslice(self, es: dict) -> None:
        """Add or replace an EndpointSlice, filed under its ``kubernetes.io/service-name`` label."""
        meta = es.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name", "")
        old = self._drop_slice(ns, name)
        service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if service:
            self.slices.setdefault((ns, service), {})[name] = es
            self._slice_owner[(ns, name)] = (ns, service)
        self._changed(old, (ns, service) if service else None)

    def remove_endpointslice(self, es: dict) -> None:
        """Forget a deleted EndpointSlice."""
        meta = es.get("metadata") or {}
        self._changed(self._drop_slice(meta.get("namespace") or "default", meta.get("name", "")))

    def _drop_slice(self, ns: str, name: str) -> tuple[str, str] | None:
        """Unfile slice ``ns/name``; returns the (ns, service) it was filed under."""
        owner = self._slice_owner.pop((ns, name), None)
        if owner is not None:
            group = self.slices.get(owner, {})
            group.pop(name, None)
            if not group:
                self.slices.pop(owner, None)
        return owner

    # ------------------------------------------------------------------ lookups

    def is_authoritative(self, qname: str) -> bool:
        """True when ``qname`` is in the cluster domain (the in-addr.arpa zone falls through instead)."""
        labels = qname.rstrip(".").lower().split(".")
        n = len(self._zone_labels)
        return len(labels) >= n and labels[-n:] == self._zone_labels

    def resolve(self, qname: str, qtype: int, *, _depth: int = 0) -> Answer | None:
        """Answer ``qname`` (text, any case, trailing dot optional) for ``qtype``
        (dnslib QTYPE value). None means "not ours": the caller forwards it
        (names outside the zone, and PTR of addresses no Service owns).

        An ExternalName's CNAME is followed as CoreDNS's backend lookup does:
        a target in the zone is resolved here and its records appended; a
        target outside is left in ``Answer.chase`` for the server to ask upstream."""
        name = qname.rstrip(".").lower()
        labels = name.split(".") if name else []
        n = len(self._zone_labels)
        if len(labels) >= n and labels[-n:] == self._zone_labels:
            if not self.synced:
                return Answer(RCODE.SERVFAIL, [], [], [], self.zone_fqdn, deps=("global",))
            rel = labels[:-n]
            records = self._zone_records(rel)
            ans = self._answer(qname, qtype, records, self.zone_fqdn)
            ans.deps = _deps(rel)
            if ans.answer and ans.answer[0].rtype == QTYPE.CNAME and qtype not in (QTYPE.CNAME, QTYPE.ANY):
                target = str(ans.answer[0].rdata.label)
                if not self.is_authoritative(target):
                    ans.chase = target
                elif _depth < 8:  # bounded: ExternalNames may point at each other
                    ans.deps = ("global",)
                    inner = self.resolve(target, qtype, _depth=_depth + 1)
                    if inner is not None:
                        ans.answer += inner.answer
                        ans.chase = inner.chase
            return ans
        if name.endswith("." + REVERSE_ZONE):
            records = self._reverse_records(labels[:-2])
            if records is None:
                return None  # fallthrough in-addr.arpa
            ans = self._answer(qname, qtype, records, REVERSE_ZONE + ".")
            ans.deps = ("ptr",)
            return ans
        return None

    def soa(self, zone: str | None = None) -> RR:
        """The SOA record of ``zone`` (default the cluster domain), as CoreDNS's plugin serves it."""
        zone = zone or self.zone_fqdn
        return RR(zone, QTYPE.SOA, ttl=self.ttl,
                  rdata=SOA(f"ns.dns.{self.zone_fqdn}", f"hostmaster.{self.zone_fqdn}",
                            (self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)))

    def _answer(self, qname: str, qtype: int, records, zone: str) -> Answer:
        if records is None:
            return Answer(RCODE.NXDOMAIN, [], [self.soa(zone)], [], zone)
        rrs, extra = records
        label = DNSLabel(qname)
        cnames = [r for r in rrs if r[0] == QTYPE.CNAME]
        chosen = cnames or [r for r in rrs if qtype == QTYPE.ANY or r[0] == qtype]
        if not chosen:
            return Answer(RCODE.NOERROR, [], [self.soa(zone)], [], zone)
        answer = [RR(label, rtype, ttl=self.ttl, rdata=rdata) for rtype, rdata in chosen]
        additional = [RR(owner, rtype, ttl=self.ttl, rdata=rdata) for owner, rtype, rdata in extra] \
            if qtype == QTYPE.SRV else []
        return Answer(RCODE.NOERROR, answer, [], additional, zone)

    # records: None = the name does not exist; (records, additional) otherwise, where records
    # are (rtype, rdata) for the queried name and additional are (owner, rtype, rdata).

    def _zone_records(self, rel: list[str]):
        if not rel:
            return [(QTYPE.SOA, self.soa().rdata), (QTYPE.NS, NS(f"ns.dns.{self.zone_fqdn}"))], []
        if rel == ["dns-version"]:
            return [(QTYPE.TXT, TXT(DNS_SCHEMA_VERSION))], []
        if rel == ["ns", "dns"]:
            return ([(QTYPE.A, A(self.dns_ip))] if self.dns_ip else []), []
        if rel == ["dns"]:
            return [], []
        if rel[-1] == "svc":
            return self._service_records(rel[:-1])
        if rel[-1] == "pod":
            return self._pod_records(rel[:-1])
        return None

    def _pod_records(self, rel: list[str]):
        if len(rel) == 0 or (len(rel) == 1 and rel[0] in self._namespaces):
            return [], []
        if len(rel) == 2:
            ip = _undash_ipv4(rel[0])
            if ip is not None:
                return [(QTYPE.A, A(ip))], []
        return None

    def _service_records(self, rel: list[str]):
        if len(rel) == 0:
            return [], []
        if len(rel) == 1:
            return ([], []) if rel[0] in self._namespaces else None
        svc = self.services.get((rel[-1], rel[-2]))
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        ns, name = rel[-1], rel[-2]
        fqdn = f"{name}.{ns}.svc.{self.zone_fqdn}"
        if len(rel) == 2:
            return self._whole_service(svc, spec, fqdn, ns, name)
        if len(rel) == 4:
            return self._srv(rel[0], rel[1], svc, spec, fqdn, ns, name)
        if len(rel) != 3 or spec.get("type") == "ExternalName" or self._cluster_ips(spec):
            return None  # endpoint names exist only under headless services
        addrs = [(ip, t) for ip, t, host, _ in self._endpoints(ns, name, spec) if host == rel[0]]
        return ([(t, _rdata(t, ip)) for ip, t in addrs], []) if addrs else None

    def _whole_service(self, svc: dict, spec: dict, fqdn: str, ns: str, name: str):
        if spec.get("type") == "ExternalName":
            target = (spec.get("externalName") or "").rstrip(".")
            return ([(QTYPE.CNAME, CNAME(target + "."))] if target else []), []
        ips = self._cluster_ips(spec)
        if ips:
            records = [(_rtype(ip), _rdata(_rtype(ip), ip)) for ip in ips]
            srv, extra = [], []
            for port in spec.get("ports") or []:
                srv.append((QTYPE.SRV, SRV(0, 100, int(port.get("port", 0)), fqdn)))
            if srv:
                extra = [(fqdn, t, rd) for t, rd in records]
            return records + srv, extra
        eps = self._endpoints(ns, name, spec)
        if not eps:
            return None  # CoreDNS: a headless service without ready endpoints is a name error (errNoItems)
        return [(t, _rdata(t, ip)) for ip, t, _, _ in eps], []

    def _srv(self, port_label: str, proto_label: str, svc: dict, spec: dict, fqdn: str, ns: str, name: str):
        if spec.get("type") == "ExternalName" or not (port_label.startswith("_") and proto_label.startswith("_")):
            return None
        pname, proto = port_label[1:], proto_label[1:]
        ips = self._cluster_ips(spec)
        if ips:
            ports = [p for p in spec.get("ports") or []
                     if (p.get("name") or "").lower() == pname and (p.get("protocol") or "TCP").lower() == proto]
            if not ports:
                return None
            records = [(QTYPE.SRV, SRV(0, 100, int(p.get("port", 0)), fqdn)) for p in ports]
            return records, [(fqdn, _rtype(ip), _rdata(_rtype(ip), ip)) for ip in ips]
        targets = []
        for ip, t, host, port_map in self._endpoints(ns, name, spec):
            port = port_map.get((pname, proto))
            if port is not None:
                targets.append((f"{host}.{fqdn}", port, ip, t))
        if not targets:
            return None
        weight = max(1, 100 // len(targets))
        records = [(QTYPE.SRV, SRV(0, weight, port, target)) for target, port, _, _ in targets]
        return records, [(target, t, _rdata(t, ip)) for target, _, ip, t in targets]

    @staticmethod
    def _cluster_ips(spec: dict) -> list[str]:
        if spec.get("type") == "ExternalName":
            return []
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        return [ip for ip in ips if ip and ip != "None"]

    def _endpoints(self, ns: str, name: str, spec: dict) -> list[tuple[str, int, str, dict]]:
        """Ready endpoints of a Service, deduplicated by address across its slices:
        (address, QTYPE.A/AAAA, hostname, {(port name, protocol): port number})."""
        publish = bool(spec.get("publishNotReadyAddresses"))
        seen: dict[str, tuple[str, int, str, dict]] = {}
        for es in self.slices.get((ns, name), {}).values():
            at = es.get("addressType") or "IPv4"
            if at not in ("IPv4", "IPv6"):
                continue
            rtype = QTYPE.A if at == "IPv4" else QTYPE.AAAA
            ports = {((p.get("name") or "").lower(), (p.get("protocol") or "TCP").lower()): int(p.get("port") or 0)
                     for p in es.get("ports") or []}
            for ep in es.get("endpoints") or []:
                if not _ready(ep, publish):
                    continue
                for addr in ep.get("addresses") or []:
                    host = (ep.get("hostname") or dashed_ip(addr)).lower()
                    if addr in seen:
                        seen[addr][3].update(ports)
                    else:
                        seen[addr] = (addr, rtype, host, dict(ports))
        return list(seen.values())

    def _reverse_records(self, octets: list[str]):
        if len(octets) != 4:
            return None
        try:
            ip = str(ipaddress.IPv4Address(".".join(reversed(octets))))
        except ValueError:
            return None
        targets = self._reverse_map().get(ip)
        if not targets:
            return None
        return [(QTYPE.PTR, PTR(t)) for t in targets], []

    def _reverse_map(self) -> dict[str, list[str]]:
        # Mirrors reverse.go serviceRecordForIP: service cluster IPs first, then endpoint addresses
        # (of headless services, as the specification lists them).
        if self._reverse is None:
            rev: dict[str, list[str]] = {}
            for (ns, name), svc in self.services.items():
                spec = svc.get("spec") or {}
                fqdn = f"{name}.{ns}.svc.{self.zone_fqdn}"
                ips = self._cluster_ips(spec)
                for ip in ips:
                    rev.setdefault(ip, []).append(fqdn)
                if not ips and spec.get("type") != "ExternalName":
                    for ip, _, host, _ in self._endpoints(ns, name, spec):
                        rev.setdefault(ip, []).append(f"{host}.{fqdn}")
            self._reverse = rev
        return self._reverse


def _deps(rel: list[str]) -> tuple:
    """What the records of zone-relative labels ``rel`` depend on (see Answer.deps)."""
    if not rel:
        return ("global",)  # the apex SOA carries the serial, which every change moves
    if rel[-1] == "svc":
        if len(rel) >= 3:
            return ("svc", rel[-2], rel[-3])
        if len(rel) == 2:
            return ("ns", rel[0])
    if len(rel) == 2 and rel[-1] == "pod":
        return ("ns", rel[0])
    return ("static",)


def _rtype(ip: str) -> int:
    return QTYPE.AAAA if ":" in ip else QTYPE.A


def _rdata(rtype: int, ip: str):
    return AAAA(ip) if rtype == QTYPE.AAAA else A(ip)
