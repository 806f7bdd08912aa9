"""The iptables ruleset kube-proxy programs, rendered as ``iptables-restore`` text.

``render_rules`` is a pure function: service ports + endpoints + config (+ the
chains that exist now, to delete stale ones) -> the text of one
``iptables-restore --noflush`` call that rewrites every chain we own and
nothing else. Keeping it pure is what lets the unit tests compare it with
golden text. Mirrors the rule layout of upstream's
pkg/proxy/iptables/proxier.go (syncProxyRules) and its chain naming
(servicePortChainName, servicePortEndpointChainName).

Chains are named ``<prefix>-...`` with prefix ``KUBE`` by default; tests use
another prefix so they never touch a running cluster's chains.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Iterable, NamedTuple

from proxy.serviceport import Endpoint, EndpointsMap, ServicePort, ServicePortName

# The chain-name kinds that carry a hash and come and go with services.
HASHED_KINDS = ("SVC", "SEP", "EXT")


@dataclasses.dataclass(frozen=True)
class RulesConfig:
    """Node-level inputs of the ruleset.

    ``cluster_cidr``: pod CIDR of the cluster (``"10.244.0.0/16"``); traffic to
    a cluster IP from outside it gets masqueraded (upstream's ``--cluster-cidr``
    local-traffic detector); None disables that rule unless ``masquerade_all``.
    ``chain_prefix``: first word of every chain name (``"KUBE"``).
    ``masquerade_bit``: the fwmark bit that means "SNAT this" (upstream's
    ``--iptables-masquerade-bit``, 14 -> 0x4000).
    ``pod_egress``: let pods send to addresses outside the cluster CIDR.
    kubeling's default (False) rejects such forwarded traffic so that nothing
    a pod sends leaves the machine (no upstream counterpart: upstream leaves
    egress to the node's masquerade and firewall).
    ``pod_egress_cidrs``: destinations outside the cluster CIDR that stay on
    this machine and pods may reach even so (the node underlay, where other
    nodes and the cluster DNS live).
    """

    cluster_cidr: str | None = None
    chain_prefix: str = "KUBE"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    pod_egress: bool = False
    pod_egress_cidrs: tuple[str, ...] = ()

    @property
    def mark(self) -> str:
        """The masquerade fwmark as a hex string, e.g. "0x4000" for bit 14."""
        return f"{1 << self.masquerade_bit:#x}"

    def chain(self, suffix: str) -> str:
        """``"<prefix>-<suffix>"``, e.g. ``chain("SERVICES") == "KUBE-SERVICES"``."""
        return f"{self.chain_prefix}-{suffix}"


class JumpRule(NamedTuple):
    """A rule in a built-in chain jumping to one of ours (upstream's iptablesJumpChains)."""

    table: str
    source_chain: str
    target: str  # suffix; the full name is config.chain(target)
    comment: str
    extra: tuple[str, ...] = ()

    def args(self, config: RulesConfig) -> list[str]:
        """The rule spec for ``iptables -t TABLE -C/-I/-D SOURCE <args>``."""
        return [*self.extra, "-m", "comment", "--comment", self.comment,
                "-j", config.chain(self.target)]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMP_RULES = (
    JumpRule("filter", "INPUT", "EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", "EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", "SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", "SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", "FORWARD", "kubernetes forwarding rules"),
    JumpRule("nat", "OUTPUT", "SERVICES", "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", "SERVICES", "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", "POSTROUTING", "kubernetes postrouting rules"),
)

# Fixed chains per table, in the order they are declared.
BASE_CHAINS = {
    "filter": ("SERVICES", "EXTERNAL-SERVICES", "FORWARD"),
    "nat": ("SERVICES", "NODEPORTS", "POSTROUTING", "MARK-MASQ"),
}


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """16 chars of base32(sha256(name + lower(protocol))), upstream's portProtoHash."""
    digest = hashlib.sha256((service_port_name + protocol.lower()).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def service_chain(config: RulesConfig, spn: ServicePortName) -> str:
    """``KUBE-SVC-<hash>`` for a service port (upstream's servicePortChainName)."""
    return config.chain("SVC-" + port_proto_hash(str(spn), spn.protocol))


def external_chain(config: RulesConfig, spn: ServicePortName) -> str:
    """``KUBE-EXT-<hash>``: the NodePort entry chain (upstream's serviceExternalChainName)."""
    return config.chain("EXT-" + port_proto_hash(str(spn), spn.protocol))


def endpoint_chain(config: RulesConfig, spn: ServicePortName, ep: Endpoint) -> str:
    """``KUBE-SEP-<hash>`` for one endpoint of a service port
    (upstream's servicePortEndpointChainName: hash of name + protocol + "ip:port")."""
    digest = hashlib.sha256((str(spn) + spn.protocol.lower() + str(ep)).encode()).digest()
    return config.chain("SEP-" + base64.b32encode(digest).decode()[:16])


def is_owned_chain(config: RulesConfig, chain: str) -> bool:
    """True for the chains this proxier creates (fixed or hashed), and only those."""
    if chain in {config.chain(c) for cs in BASE_CHAINS.values() for c in cs}:
        return True
    return any(chain.startswith(config.chain(kind + "-")) for kind in HASHED_KINDS)


def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", f'"{text}"' if " " in text else text]


def _proto(protocol: str) -> list[str]:
    p = protocol.lower()
    return ["-m", p, "-p", p]


def probability(n: int) -> str:
    """``1/n`` with 10 decimals, as upstream's computeProbability."""
    return f"{1.0 / n:0.10f}"


class _Table:
    """Chain declarations and rules of one table, written in restore order."""

    def __init__(self, name: str):
        self.name = name
        self.chains: list[str] = []
        self.rules: list[str] = []
        self.deletes: list[str] = []

    def declare(self, chain: str) -> None:
        """Declare ``chain`` in this table (``:CHAIN - [0:0]``, which also flushes it on restore)."""
        self.chains.append(chain)

    def add(self, chain: str, *args: str) -> None:
        """Append the rule ``-A chain args...`` (each arg one already-quoted iptables token)."""
        self.rules.append(" ".join(["-A", chain, *args]))

    def text(self) -> str:
        """This table as an iptables-restore block: ``*table``, chains, rules, ``-X`` deletes, ``COMMIT``."""
        lines = [f"*{self.name}"]
        lines += [f":{c} - [0:0]" for c in self.chains]
        lines += self.rules
        lines += [f"-X {c}" for c in self.deletes]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def render_rules(service_map: dict[ServicePortName, ServicePort], endpoints_map: EndpointsMap,
                 config: RulesConfig, *,
                 existing_chains: dict[str, Iterable[str]] | None = None) -> str:
    """The ``iptables-restore --noflush`` input for the whole proxy state.

    ``service_map``/``endpoints_map`` come from proxy.serviceport;
    ``existing_chains`` maps table name -> chain names present now (from
    ``iptables-save``): owned hashed chains that are no longer wanted are
    declared (flushed) and deleted with ``-X``. Output is deterministic for
    equal inputs (service ports sorted by name and protocol, endpoints by IP).
    """
    filt, nat = _Table("filter"), _Table("nat")
    for table in (filt, nat):
        for c in BASE_CHAINS[table.name]:
            table.declare(config.chain(c))
    mark = config.mark
    svcs_chain, nodeports_chain = config.chain("SERVICES"), config.chain("NODEPORTS")
    masq_chain = config.chain("MARK-MASQ")

    # nat: SNAT of marked traffic, and the marking chain.
    post = config.chain("POSTROUTING")
    nat.add(post, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    nat.add(post, "-j", "MARK", "--xor-mark", mark)
    nat.add(post, *_comment("kubernetes service traffic requiring SNAT"),
            "-j", "MASQUERADE", "--random-fully")
    nat.add(masq_chain, "-j", "MARK", "--set-xmark", f"{mark}/{mark}")

    # filter: forwarding of pod and marked service traffic.
    fwd = config.chain("FORWARD")
    filt.add(fwd, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    filt.add(fwd, *_comment("kubernetes forwarding rules"), "-m", "mark", "--mark", f"{mark}/{mark}",
             "-j", "ACCEPT")
    if config.cluster_cidr and not config.pod_egress:
        for cidr in config.pod_egress_cidrs:
            filt.add(fwd, "-s", config.cluster_cidr, "-d", cidr,
                     *_comment("kubeling: pod traffic to the node underlay"), "-j", "ACCEPT")
        filt.add(fwd, "-s", config.cluster_cidr, "!", "-d", config.cluster_cidr,
                 *_comment("kubeling: pod traffic stays on this machine"),
                 "-j", "REJECT", "--reject-with", "icmp-net-unreachable")
    if config.cluster_cidr:
        filt.add(fwd, "-s", config.cluster_cidr, *_comment("kubernetes forwarding pod source rule"),
                 "-j", "ACCEPT")
        filt.add(fwd, "-d", config.cluster_cidr, *_comment("kubernetes forwarding pod destination rule"),
                 "-j", "ACCEPT")
    filt.add(fwd, *_comment("kubernetes forwarding conntrack rule"),
             "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

    active: set[str] = set()
    for spn in sorted(service_map, key=lambda s: (str(s), s.protocol)):
        sp = service_map[spn]
        name = str(spn)
        eps = endpoints_map.get(spn, [])
        dst = [*_proto(sp.protocol), "-d", sp.cluster_ip, "--dport", str(sp.port)]
        if not eps:
            filt.add(svcs_chain, *_comment(f"{name} has no endpoints"), *dst,
                     "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
            if sp.node_port:
                filt.add(config.chain("EXTERNAL-SERVICES"), *_comment(f"{name} has no endpoints"),
                         "-m", "addrtype", "--dst-type", "LOCAL", *_proto(sp.protocol),
                         "--dport", str(sp.node_port), "-j", "REJECT", "--reject-with",
                         "icmp-port-unreachable")
            continue

        svc_chain = service_chain(config, spn)
        nat.declare(svc_chain)
        active.add(svc_chain)
        nat.add(svcs_chain, *_comment(f"{name} cluster IP"), *dst, "-j", svc_chain)
        if config.masquerade_all:
            nat.add(svc_chain, *_comment(f"{name} cluster IP"), *dst, "-j", masq_chain)
        elif config.cluster_cidr:
            nat.add(svc_chain, *_comment(f"{name} cluster IP"), *dst, "!", "-s", config.cluster_cidr,
                    "-j", masq_chain)
        if sp.node_port:
            ext_chain = external_chain(config, spn)
            nat.declare(ext_chain)
            active.add(ext_chain)
            nat.add(nodeports_chain, *_comment(name), *_proto(sp.protocol), "--dport", str(sp.node_port),
                    "-j", ext_chain)
            nat.add(ext_chain, *_comment(f"masquerade traffic for {name} external destinations"),
                    "-j", masq_chain)
            nat.add(ext_chain, "-j", svc_chain)

        sep_chains = [endpoint_chain(config, spn, ep) for ep in eps]
        if sp.affinity_timeout:
            for ep, sep in zip(eps, sep_chains):
                nat.add(svc_chain, *_comment(f"{name} -> {ep}"), "-m", "recent", "--name", sep,
                        "--rcheck", "--seconds", str(sp.affinity_timeout), "--reap", "-j", sep)
        n = len(eps)
        for i, (ep, sep) in enumerate(zip(eps, sep_chains)):
            stat = ([] if i == n - 1 else
                    ["-m", "statistic", "--mode", "random", "--probability", probability(n - i)])
            nat.add(svc_chain, *_comment(f"{name} -> {ep}"), *stat, "-j", sep)
        for ep, sep in zip(eps, sep_chains):
            nat.declare(sep)
            active.add(sep)
            nat.add(sep, *_comment(name), "-s", ep.ip, "-j", masq_chain)
            recent = ["-m", "recent", "--name", sep, "--set"] if sp.affinity_timeout else []
            nat.add(sep, *_comment(name), *recent, *_proto(sp.protocol), "-j", "DNAT",
                    "--to-destination", str(ep))

    nat.add(svcs_chain, *_comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
            "-m", "addrtype", "--dst-type", "LOCAL", "-j", nodeports_chain)

    # Stale hashed chains: declaring them flushes them, so the -X can succeed
    # once nothing jumps to them any more (KUBE-SERVICES is rewritten above).
    for table in (filt, nat):
        existing = (existing_chains or {}).get(table.name, ())
        declared = set(table.chains)
        for chain in sorted(existing):
            if chain not in declared and chain not in active and is_owned_chain(config, chain):
                table.declare(chain)
                table.deletes.append(chain)
    return filt.text() + nat.text()


def render_cleanup(config: RulesConfig, existing_chains: dict[str, Iterable[str]]) -> str:
    """Restore text that flushes and deletes every owned chain in ``existing_chains``
    (upstream's CleanupLeftovers). Jumps from built-in chains must be gone first."""
    out = []
    for table in ("filter", "nat"):
        owned = sorted(c for c in existing_chains.get(table, ()) if is_owned_chain(config, c))
        if owned:
            t = _Table(table)
            for c in owned:
                t.declare(c)
            t.deletes = owned
            out.append(t.text())
    return "".join(out)
