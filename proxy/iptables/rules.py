"""The iptables ruleset kube-proxy programs, rendered as ``iptables-restore`` text.

Rendering is pure: service ports + endpoints + config -> the text of one
``iptables-restore --noflush`` call that rewrites the chains we own and
nothing else. Keeping it pure is what lets the unit tests compare it with
golden text. Mirrors the rule layout of upstream's
pkg/proxy/iptables/proxier.go (syncProxyRules) and its chain naming
(servicePortChainName, servicePortEndpointChainName).

It is done in two steps so that a sync after a small change stays small, as
upstream 1.28's MinimizeIPTablesRestore: ``service_port_rules`` renders each
service port's rules once and reuses the previous rendering when the port
and its endpoints are unchanged; ``assemble`` writes the fixed chains in
full, and the per-service chains either all (a full sync) or only those of
the service ports named in ``write`` (a partial sync; with ``--noflush`` the
others stay as they are in the kernel).

Chains are named ``<prefix>-...`` with prefix ``KUBE`` by default; tests use
another prefix so they never touch a running cluster's chains.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Collection, Iterable, Mapping, NamedTuple

from proxy.config import RulesConfig
from proxy.serviceport import Endpoint, EndpointsMap, ServicePort, ServicePortName

# The chain-name kinds that carry a hash and come and go with services.
HASHED_KINDS = ("SVC", "SEP", "EXT")
# Upstream's largeClusterEndpointsThreshold: above this many endpoints the
# per-endpoint rules lose their comments, which makes iptables-restore faster.
LARGE_CLUSTER_ENDPOINTS = 1000


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


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def _proto(protocol: str) -> str:
    p = protocol.lower()
    return f"-m {p} -p {p}"


def probability(n: int) -> str:
    """``1/n`` with 10 decimals, as upstream's computeProbability."""
    return f"{1.0 / n:0.10f}"


class ServicePortRules(NamedTuple):
    """The rendered rules of one service port (each entry one restore line).

    ``key`` is what they were rendered from (the ServicePort, its endpoints and
    the large-cluster switch): equal keys give equal rules, so a rendering is
    reused while its key stays the same. ``chains`` are the nat chains the
    port owns (SVC, EXT, SEPs; none without endpoints), ``chain_rules`` their
    rules; the other fields are its lines in the shared chains.
    """

    key: tuple
    chains: tuple[str, ...]
    chain_rules: tuple[str, ...]
    nat_services: tuple[str, ...]
    nat_nodeports: tuple[str, ...]
    filter_services: tuple[str, ...]
    filter_external: tuple[str, ...]
    source: object = None  # the endpoints list rendered from, for a cheap identity check


def render_service_port(sp: ServicePort, eps: list[Endpoint], config: RulesConfig, *,
                        large_cluster: bool = False) -> ServicePortRules:
    """Rules for one service port with endpoints ``eps`` (sorted, ready).

    ``large_cluster`` drops the comments of the per-endpoint rules (upstream's
    largeClusterMode). Mirrors the per-service part of upstream's syncProxyRules.
    """
    spn = sp.name
    name = str(spn)
    key = (sp, tuple(eps), large_cluster)
    proto = _proto(sp.protocol)
    dst = f"{proto} -d {sp.cluster_ip} --dport {sp.port}"
    if not eps:
        reject = "-j REJECT --reject-with icmp-port-unreachable"
        fsvc = (f"-A {config.chain('SERVICES')} {_comment(name + ' has no endpoints')} {dst} {reject}",)
        fext = ((f"-A {config.chain('EXTERNAL-SERVICES')} {_comment(name + ' has no endpoints')} "
                 f"-m addrtype --dst-type LOCAL {proto} --dport {sp.node_port} {reject}",)
                if sp.node_port else ())
        return ServicePortRules(key, (), (), (), (), fsvc, fext, eps)

    masq = config.chain("MARK-MASQ")
    svc = service_chain(config, spn)
    chains, rules = [svc], []
    nat_services = (f"-A {config.chain('SERVICES')} {_comment(name + ' cluster IP')} {dst} -j {svc}",)
    if config.masquerade_all:
        rules.append(f"-A {svc} {_comment(name + ' cluster IP')} {dst} -j {masq}")
    elif config.cluster_cidr:
        rules.append(f"-A {svc} {_comment(name + ' cluster IP')} {dst} ! -s {config.cluster_cidr} -j {masq}")
    nat_nodeports: tuple[str, ...] = ()
    ext_rules = []
    if sp.node_port:
        ext = external_chain(config, spn)
        chains.append(ext)
        nat_nodeports = (f"-A {config.chain('NODEPORTS')} {_comment(name)} {proto} --dport {sp.node_port} "
                         f"-j {ext}",)
        ext_rules = [f"-A {ext} {_comment(f'masquerade traffic for {name} external destinations')} -j {masq}",
                     f"-A {ext} -j {svc}"]

    seps = [endpoint_chain(config, spn, ep) for ep in eps]
    chains += seps

    def comment(text: str) -> str:
        return "" if large_cluster else _comment(text) + " "

    if sp.affinity_timeout:
        for ep, sep in zip(eps, seps):
            rules.append(f"-A {svc} {comment(f'{name} -> {ep}')}-m recent --name {sep} --rcheck "
                         f"--seconds {sp.affinity_timeout} --reap -j {sep}")
    n = len(eps)
    for i, (ep, sep) in enumerate(zip(eps, seps)):
        stat = "" if i == n - 1 else f"-m statistic --mode random --probability {probability(n - i)} "
        rules.append(f"-A {svc} {comment(f'{name} -> {ep}')}{stat}-j {sep}")
    rules += ext_rules
    recent_set = "-m recent --name {} --set " if sp.affinity_timeout else ""
    for ep, sep in zip(eps, seps):
        rules.append(f"-A {sep} {comment(name)}-s {ep.ip} -j {masq}")
        rules.append(f"-A {sep} {comment(name)}{recent_set.format(sep)}{proto} -j DNAT --to-destination {ep}")
    return ServicePortRules(key, tuple(chains), tuple(rules), nat_services, nat_nodeports, (), (), eps)


def service_port_rules(service_map: Mapping[ServicePortName, ServicePort], endpoints_map: EndpointsMap,
                       config: RulesConfig, *, previous: Mapping[ServicePortName, ServicePortRules] | None = None,
                       large_cluster: bool | None = None) -> dict[ServicePortName, ServicePortRules]:
    """Rules of every service port, reusing ``previous`` renderings whose key is unchanged
    (the very same object comes back, so ``new[spn] is previous[spn]`` means "unchanged").

    ``large_cluster`` None: decided from the endpoint count, as upstream.
    """
    if large_cluster is None:
        large_cluster = sum(len(v) for v in endpoints_map.values()) > LARGE_CLUSTER_ENDPOINTS
    previous = previous or {}
    out = {}
    for spn, sp in service_map.items():
        eps = endpoints_map.get(spn, [])
        old = previous.get(spn)
        # Parsed objects are cached, so an unchanged port usually hands back the
        # very same records: identity first, equality only when that fails.
        if old is not None and old.key[2] == large_cluster and (
                (old.key[0] is sp and old.source is eps) or (old.key[0] == sp and old.key[1] == tuple(eps))):
            out[spn] = old
        else:
            out[spn] = render_service_port(sp, eps, config, large_cluster=large_cluster)
    return out


class Ruleset(NamedTuple):
    """One restore input: ``text``, the owned nat ``chains`` active after it,
    how many service ports had their chains written (``written``), and the
    rules of each fixed chain, keyed by (table, chain) (``fixed``)."""

    text: str
    chains: frozenset[str]
    written: int
    fixed: Mapping[tuple[str, str], tuple[str, ...]] = {}

    def count_rules(self, table: str) -> int:
        """Number of ``-A`` lines for ``table`` in ``text``."""
        body = self.text.split(f"*{table}\n", 1)[1].split("COMMIT\n", 1)[0]
        return body.count("\n-A ") + body.startswith("-A ")


def _base_rules(config: RulesConfig) -> tuple[list[str], list[str]]:
    """(filter KUBE-FORWARD rules, nat KUBE-POSTROUTING + KUBE-MARK-MASQ rules)."""
    mark = config.mark
    post, fwd = config.chain("POSTROUTING"), config.chain("FORWARD")
    nat = [f"-A {post} -m mark ! --mark {mark}/{mark} -j RETURN",
           f"-A {post} -j MARK --xor-mark {mark}",
           f"-A {post} {_comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully",
           f"-A {config.chain('MARK-MASQ')} -j MARK --set-xmark {mark}/{mark}"]
    filt = [f"-A {fwd} -m conntrack --ctstate INVALID -j DROP",
            f"-A {fwd} {_comment('kubernetes forwarding rules')} -m mark --mark {mark}/{mark} -j ACCEPT"]
    cidr = config.cluster_cidr
    if cidr and not config.pod_egress:
        for dest in config.pod_egress_cidrs:
            filt.append(f"-A {fwd} -s {cidr} -d {dest} {_comment('kubeling: pod traffic to the node underlay')} "
                        "-j ACCEPT")
        # Only NEW flows: replies to connections that came in (a node port
        # reached from the underlay) must still leave.
        filt.append(f"-A {fwd} -s {cidr} ! -d {cidr} {_comment('kubeling: pod traffic stays on this machine')} "
                    "-m conntrack --ctstate NEW -j REJECT --reject-with icmp-net-unreachable")
    if cidr:
        filt.append(f"-A {fwd} -s {cidr} {_comment('kubernetes forwarding pod source rule')} -j ACCEPT")
        filt.append(f"-A {fwd} -d {cidr} {_comment('kubernetes forwarding pod destination rule')} -j ACCEPT")
    filt.append(f"-A {fwd} {_comment('kubernetes forwarding conntrack rule')} "
                "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    return filt, nat


_NODEPORTS_COMMENT = _comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")


def _nodeports_jumps(config: RulesConfig, node_ips: Collection[str] | None) -> list[str]:
    # Upstream: "-m addrtype --dst-type LOCAL" when --nodeport-addresses matches
    # everything, else one "-d <ip>" rule per node IP in those CIDRs.
    head, target = f"-A {config.chain('SERVICES')} {_NODEPORTS_COMMENT}", f"-j {config.chain('NODEPORTS')}"
    if node_ips is None:
        local = "" if config.localhost_nodeports else " ! -d 127.0.0.0/8"
        return [f"{head} -m addrtype --dst-type LOCAL{local} {target}"]
    return [f"{head} -d {ip} {target}" for ip in node_ips
            if config.localhost_nodeports or not ip.startswith("127.")]


def assemble(rules: Mapping[ServicePortName, ServicePortRules], config: RulesConfig, *,
             existing_chains: Mapping[str, Iterable[str]] | None = None,
             node_ips: Collection[str] | None = None,
             write: Collection[ServicePortName] | None = None,
             previous_fixed: Mapping[tuple[str, str], tuple[str, ...]] | None = None) -> Ruleset:
    """The ``iptables-restore --noflush`` input for ``rules`` (from service_port_rules).

    ``write`` None is a full sync: every chain is declared and written;
    otherwise only the chains of the service ports in ``write`` are (the
    others are left as the kernel has them), and of the fixed chains those
    whose rules differ from ``previous_fixed`` (the last sync's ``fixed``). ``existing_chains`` maps table -> chain names that exist
    now (from iptables-save, or the previous sync's ``chains``): owned hashed
    chains that are no longer wanted are declared (flushed) and deleted with
    ``-X``. ``node_ips``: the addresses node ports answer on (upstream's
    --nodeport-addresses), None for every local address. Output is
    deterministic (service ports sorted by name and protocol).
    """
    filt_fwd, nat_base = _base_rules(config)
    order = sorted(rules, key=lambda s: (str(s), s.protocol))
    filt_chains = [config.chain(c) for c in BASE_CHAINS["filter"]]
    nat_chains = [config.chain(c) for c in BASE_CHAINS["nat"]]
    filt_rules: list[str] = []
    filt_ext: list[str] = []
    nat_services: list[str] = []
    nat_nodeports: list[str] = []
    chain_rules: list[str] = []
    active: set[str] = set()
    written = 0
    write_set = None if write is None else set(write)
    for spn in order:
        r = rules[spn]
        filt_rules += r.filter_services
        filt_ext += r.filter_external
        nat_services += r.nat_services
        nat_nodeports += r.nat_nodeports
        active.update(r.chains)
        if r.chains and (write_set is None or spn in write_set):
            nat_chains += r.chains
            chain_rules += r.chain_rules
            written += 1
    nat_services += _nodeports_jumps(config, node_ips)

    # Stale hashed chains: declaring them flushes them, so the -X can succeed
    # once nothing jumps to them any more (KUBE-SERVICES is rewritten above).
    stale = sorted(c for c in (existing_chains or {}).get("nat", ())
                   if c not in active and is_owned_chain(config, c) and c not in nat_chains)
    # Declared in descending name order: iptables-nft (1.8.9) keeps its chain
    # cache as a sorted list and inserts each new chain by walking it, which is
    # cheap for this order and quadratic for hash order (measured: 20,000 empty
    # chains in 1 s descending, 5 s ascending, 48 s random; 500 services x 10
    # endpoints restored in 1.3-2.5 s instead of 6.3-7.3 s).
    declare = nat_chains[:len(BASE_CHAINS["nat"])] + sorted(nat_chains[len(BASE_CHAINS["nat"]):] + stale,
                                                            reverse=True)
    post, masq = config.chain("POSTROUTING"), config.chain("MARK-MASQ")
    fixed = {("filter", filt_chains[0]): tuple(filt_rules), ("filter", filt_chains[1]): tuple(filt_ext),
             ("filter", filt_chains[2]): tuple(filt_fwd),
             ("nat", post): tuple(r for r in nat_base if r.startswith(f"-A {post} ")),
             ("nat", masq): tuple(r for r in nat_base if r.startswith(f"-A {masq} ")),
             ("nat", nat_chains[0]): tuple(nat_services), ("nat", nat_chains[1]): tuple(nat_nodeports)}
    # A partial sync leaves alone the fixed chains whose rules did not change
    # (a one-endpoint change then rewrites its SVC and SEP chains only).
    keep = {k for k, v in fixed.items() if write is not None and previous_fixed and previous_fixed.get(k) == v}
    filt_order = [(filt_chains[2], filt_fwd), (filt_chains[0], filt_rules), (filt_chains[1], filt_ext)]
    nat_order = [(post, fixed[("nat", post)]), (masq, fixed[("nat", masq)]),
                 (nat_chains[0], nat_services), (nat_chains[1], nat_nodeports)]
    lines = ["*filter", *(f":{c} - [0:0]" for c in filt_chains if ("filter", c) not in keep)]
    for chain, rules_ in filt_order:
        if ("filter", chain) not in keep:
            lines += rules_
    lines += ["COMMIT", "*nat", *(f":{c} - [0:0]" for c in declare if ("nat", c) not in keep)]
    for chain, rules_ in nat_order:
        if ("nat", chain) not in keep:
            lines += rules_
    lines += [*chain_rules, *(f"-X {c}" for c in stale), "COMMIT", ""]
    base = {config.chain(c) for c in BASE_CHAINS["nat"]}
    return Ruleset("\n".join(lines), frozenset(active | base), written, fixed)


def render_rules(service_map: Mapping[ServicePortName, ServicePort], endpoints_map: EndpointsMap,
                 config: RulesConfig, *, existing_chains: Mapping[str, Iterable[str]] | None = None,
                 node_ips: Collection[str] | None = None, large_cluster: bool | None = None) -> str:
    """The full-sync restore text for the whole proxy state (service_port_rules + assemble)."""
    rules = service_port_rules(service_map, endpoints_map, config, large_cluster=large_cluster)
    return assemble(rules, config, existing_chains=existing_chains, node_ips=node_ips).text


def render_cleanup(config: RulesConfig, existing_chains: Mapping[str, Iterable[str]]) -> str:
    """Restore text that flushes and deletes every owned chain in ``existing_chains``
    (upstream's CleanupLeftovers). Jumps from built-in chains must be gone first."""
    out = []
    for table in ("filter", "nat"):
        owned = sorted(c for c in existing_chains.get(table, ()) if is_owned_chain(config, c))
        if owned:
            out += [f"*{table}", *(f":{c} - [0:0]" for c in owned), *(f"-X {c}" for c in owned), "COMMIT"]
    return "\n".join(out) + "\n" if out else ""
