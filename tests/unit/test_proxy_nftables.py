"""The nftables proxy mode: rendering (golden-ish assertions on the ruleset text),
``nft -c`` acceptance of what is rendered (needs root and nft; nothing is
changed), and the Proxier's full/partial syncs against a fake nft."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import pytest

from proxy.config import RulesConfig
from proxy.nftables.proxier import Proxier, cleanup_leftovers
from proxy.nftables.rules import (affinity_set, assemble, endpoint_chain, external_chain, render_cleanup,
                                  render_ruleset, service_chain, service_port_rules)
from proxy.nftables.runner import NftError, parse_names
from proxy.serviceport import Endpoint, ServicePortName, build_endpoints_map, build_service_map

CONFIG = RulesConfig(cluster_cidr="10.244.0.0/16")
T = "add rule ip kube-proxy"
WEB = ServicePortName("default", "web", "http", "TCP")


def svc(name: str, ip: str, *ports: dict, ns: str = "default", **spec) -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": list(ports), **spec}}


def eps(name: str, ips: list[str], *ports: dict, ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": list(ports)}] if ips else []}


HTTP = {"name": "http", "port": 80, "targetPort": 8080}
HTTP_EP = {"name": "http", "port": 8080}


def render(services: list[dict], endpoints: list[dict], config: RulesConfig = CONFIG, **kw) -> str:
    return render_ruleset(build_service_map(services), build_endpoints_map(endpoints), config, **kw)


def test_chain_names_are_upstreams():
    """Same hashes and shapes as upstream's servicePortChainName & co (its unit tests'
    service-ULMVA6XW-ns1/svc1/tcp/p80 and endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80)."""
    spn = ServicePortName("ns1", "svc1", "p80", "TCP")
    ep = Endpoint("10.180.0.1", 80)
    assert service_chain(spn) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert external_chain(spn) == "external-ULMVA6XW-ns1/svc1/tcp/p80"
    assert endpoint_chain(spn, ep) == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert affinity_set(spn, ep) == "affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = ServicePortName("n" * 200, "s" * 63, "p" * 15, "UDP")  # longer than the API allows
    assert len(endpoint_chain(long, ep)) == 255 and endpoint_chain(long, ep).endswith("...")


def test_base_chains_maps_and_masquerading():
    text = render([], [])
    lines = text.splitlines()
    assert lines[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    for chain in ("add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }",
                  "add chain ip kube-proxy filter-forward { type filter hook forward priority -110 ; }",
                  "add chain ip kube-proxy filter-output { type filter hook output priority -110 ; }",
                  "add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }",
                  "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }",
                  "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }",
                  "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }"):
        assert chain in lines
    for rule in ("nat-prerouting jump services", "nat-output jump services", "nat-postrouting jump masquerading",
                 "services ip daddr . meta l4proto . th dport vmap @service-ips",
                 "services fib daddr type local meta l4proto . th dport vmap @service-nodeports",
                 "service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
                 "filter-input ct state new jump nodeport-endpoints-check",
                 "filter-forward ct state new jump service-endpoints-check",
                 "filter-output-post-dnat ct state new jump cluster-ips-check",
                 "masquerading meta mark & 0x4000 == 0 return",
                 "masquerading meta mark set meta mark ^ 0x4000",
                 "masquerading masquerade fully-random",
                 "mark-for-masquerade meta mark set meta mark | 0x4000",
                 "filter-forward ct state invalid drop",
                 'filter-forward ip saddr 10.244.0.0/16 accept comment "kubernetes forwarding pod source rule"'):
        assert f"{T} {rule}" in lines, rule
    assert "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ;" \
        ' comment "ClusterIP traffic" ; }' in lines
    assert not any(line.startswith(("flush", "delete")) for line in lines)  # nothing existed


def test_cluster_ip_service_chain_and_map_element():
    text = render([svc("web", "10.96.0.10", HTTP)], [eps("web", ["10.244.1.2", "10.244.1.3"], HTTP_EP)])
    # No chain per service port or endpoint: the endpoints are elements of one data map,
    # picked by one chain shared by every service port with as many endpoints.
    d = "service-dnat-tcp-2"
    chain_rules = [line[len(T) + 1:] for line in text.splitlines() if line.startswith(f"{T} {d} ")]
    assert chain_rules == [
        f"{d} ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        f"{d} meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 2 map @service-endpoints-tcp"]
    assert "add element ip kube-proxy service-endpoints-tcp { 10.96.0.10 . 80 . 0 : 10.244.1.2 . 8080, " \
        "10.96.0.10 . 80 . 1 : 10.244.1.3 . 8080 }" in text
    assert f"add element ip kube-proxy service-ips {{ 10.96.0.10 . tcp . 80 : goto {d} }}" in text
    assert "add element ip kube-proxy cluster-ips { 10.96.0.10 }" in text
    # Hairpin: a pod reaching itself through the service is masqueraded.
    assert "add element ip kube-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2, 10.244.1.3 . 10.244.1.3 }" in text
    assert f"{T} masquerading ct status dnat ip saddr . ip daddr @hairpin-endpoints meta mark set meta mark | 0x4000" \
        in text.splitlines()[text.splitlines().index(f"{T} masquerading meta mark & 0x4000 == 0 return") - 1]
    assert "no-endpoint" not in text.split("add element", 1)[1]
    assert external_chain(WEB) not in text and service_chain(WEB) not in text
    assert "chain ip kube-proxy endpoint-" not in text


def test_masquerade_all_and_no_cluster_cidr():
    objs = ([svc("web", "10.96.0.10", HTTP)], [eps("web", ["10.244.1.2"], HTTP_EP)])
    d = "service-dnat-tcp-1"
    dnat = f"{T} {d} meta l4proto tcp dnat"
    assert f"{T} {d} jump mark-for-masquerade\n{dnat}" in \
        render(*objs, RulesConfig(cluster_cidr="10.244.0.0/16", masquerade_all=True))
    assert [line for line in render(*objs, RulesConfig()).splitlines() if line.startswith(f"{T} {d} ")] == \
        [f"{dnat} ip to ip daddr . tcp dport . numgen random mod 1 map @service-endpoints-tcp"]  # no masquerading


def test_node_port_goes_through_its_dnat_chain():
    text = render([svc("web", "10.96.0.10", {**HTTP, "nodePort": 30080}, type="NodePort")],
                  [eps("web", ["10.244.1.2"], HTTP_EP)])
    x = "nodeport-dnat-tcp-1"
    assert f"{T} {x} jump mark-for-masquerade\n{T} {x} meta l4proto tcp dnat ip to tcp dport . " \
        "numgen random mod 1 map @nodeport-endpoints-tcp\n" in text
    assert "add element ip kube-proxy nodeport-endpoints-tcp { 30080 . 0 : 10.244.1.2 . 8080 }" in text
    assert f"add element ip kube-proxy service-nodeports {{ tcp . 30080 : goto {x} }}" in text
    assert "10.96.0.10 . tcp . 80 : goto service-dnat-tcp-1" in text and external_chain(WEB) not in text


def test_nodeport_addresses_and_localhost():
    text = render([], [], node_ips=["10.250.0.2", "127.0.0.1"])
    assert f"{T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports" in text
    assert "add element ip kube-proxy nodeport-ips { 10.250.0.2, 127.0.0.1 }" in text
    no_lo = RulesConfig(cluster_cidr="10.244.0.0/16", localhost_nodeports=False)
    assert "add element ip kube-proxy nodeport-ips { 10.250.0.2 }" in render([], [], no_lo, node_ips=["10.250.0.2",
                                                                                                     "127.0.0.1"])
    assert "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto" in render([], [], no_lo)


def test_no_endpoints_are_rejected_through_the_maps():
    text = render([svc("web", "10.96.0.10", {**HTTP, "nodePort": 30080}, type="NodePort")], [])
    assert "add element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }" in text
    assert "add element ip kube-proxy no-endpoint-nodeports { tcp . 30080 : goto reject-chain }" in text
    assert f"{T} reject-chain reject" in text
    assert "service-ips {" not in text.split("add element", 1)[1]
    assert service_chain(WEB) not in text


def test_session_affinity_uses_dynamic_sets():
    text = render([svc("web", "10.96.0.10", HTTP, sessionAffinity="ClientIP",
                       sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})],
                  [eps("web", ["10.244.1.2", "10.244.1.3"], HTTP_EP)])
    s = service_chain(WEB)
    for ip in ("10.244.1.2", "10.244.1.3"):
        e, a = endpoint_chain(WEB, Endpoint(ip, 8080)), affinity_set(WEB, Endpoint(ip, 8080))
        assert f"add set ip kube-proxy {a} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}" in text
        assert f"{T} {s} ip saddr @{a} goto {e}" in text
        assert f"{T} {e} update @{a} {{ ip saddr }}" in text
    # The lookups come before the random choice.
    body = [line for line in text.splitlines() if line.startswith(f"{T} {s} ")]
    assert "@affinity-" in body[1] and "@affinity-" in body[2] and "numgen" in body[3]
    assert "flush set" not in text  # the sessions survive full syncs


def test_several_ports_and_named_target_ports():
    """Each port of a Service gets its own service-ips element and endpoint-map entries (through
    the shared per-protocol dnat chains); the DNAT port is the one the Endpoints give for the
    port's name (the endpoints controller resolved the named targetPort)."""
    text = render([svc("multi", "10.96.0.20", {"name": "http", "port": 80, "targetPort": "web"},
                       {"name": "dns", "port": 53, "targetPort": 9053, "protocol": "UDP"})],
                  [eps("multi", ["10.244.1.2"], {"name": "http", "port": 8080},
                       {"name": "dns", "port": 9053, "protocol": "UDP"})])
    dns = ServicePortName("default", "multi", "dns", "UDP")
    assert service_chain(dns) == service_chain(dns).split("-", 2)[0] + "-" + service_chain(dns).split("-", 2)[1] \
        + "-default/multi/udp/dns"
    assert "10.96.0.20 . tcp . 80 : goto service-dnat-tcp-1" in text
    assert "10.96.0.20 . udp . 53 : goto service-dnat-udp-1" in text
    assert "add element ip kube-proxy service-endpoints-tcp { 10.96.0.20 . 80 . 0 : 10.244.1.2 . 8080 }" in text
    assert "add element ip kube-proxy service-endpoints-udp { 10.96.0.20 . 53 . 0 : 10.244.1.2 . 9053 }" in text
    assert f"{T} service-dnat-udp-1 meta l4proto udp dnat ip to ip daddr . udp dport . numgen random mod 1 " \
        "map @service-endpoints-udp" in text
    assert "add element ip kube-proxy cluster-ips { 10.96.0.20 }" in text  # once for both ports


def test_full_sync_flushes_what_exists_and_deletes_the_rest():
    """A full sync over a crashed proxy's table: existing chains and maps are flushed
    and rewritten, chains and sets nobody wants are flushed then deleted."""
    sm = build_service_map([svc("web", "10.96.0.10", HTTP)])
    em = build_endpoints_map([eps("web", ["10.244.1.2"], HTTP_EP)])
    s = service_chain(WEB)
    text = render_ruleset(sm, em, CONFIG, existing_chains={"services", s, "endpoint-OLD-x", "service-OLD-y"},
                          existing_sets={"service-ips", "affinity-OLD-x"})
    lines = text.splitlines()
    assert f"flush chain ip kube-proxy {s}" in lines and "flush chain ip kube-proxy services" in lines
    assert "flush map ip kube-proxy service-ips" in lines
    assert "flush set ip kube-proxy cluster-ips" not in lines  # did not exist
    i = lines.index
    assert i("flush chain ip kube-proxy endpoint-OLD-x") < i("delete chain ip kube-proxy endpoint-OLD-x")
    assert i("flush chain ip kube-proxy service-OLD-y") < i("delete chain ip kube-proxy endpoint-OLD-x")
    assert lines[-1] == "delete set ip kube-proxy affinity-OLD-x"


def test_partial_sync_writes_only_the_difference():
    sm = build_service_map([svc("web", "10.96.0.10", HTTP), svc("db", "10.96.0.11", {**HTTP, "port": 5432})])
    em = build_endpoints_map([eps("web", ["10.244.1.2", "10.244.1.3"], HTTP_EP), eps("db", ["10.244.2.2"], HTTP_EP)])
    rules = service_port_rules(sm, em, CONFIG)
    first = assemble(rules, CONFIG)
    em2 = {**em, WEB: [Endpoint("10.244.1.3", 8080)]}
    rules2 = service_port_rules(sm, em2, CONFIG, previous=rules)
    changed = {k for k, v in rules2.items() if rules[k] is not v}
    assert changed == {WEB}
    second = assemble(rules2, CONFIG, write=changed, previous=first)
    lines = second.text.splitlines()
    # service-dnat-tcp-1 exists (db uses it); the 2-endpoint one nobody uses any more goes.
    assert not any(line.startswith(("add chain", "add table", "add map")) for line in lines)
    assert lines[-2:] == ["flush chain ip kube-proxy service-dnat-tcp-2", "delete chain ip kube-proxy service-dnat-tcp-2"]
    assert lines[-7:-2] == [
        "delete element ip kube-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }",
        "delete element ip kube-proxy service-endpoints-tcp { 10.96.0.10 . 80 . 0, 10.96.0.10 . 80 . 1 }",
        "delete element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 }",
        "add element ip kube-proxy service-endpoints-tcp { 10.96.0.10 . 80 . 0 : 10.244.1.3 . 8080 }",
        "add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto service-dnat-tcp-1 }"]
    assert "db" not in second.text and "10.96.0.11" not in second.text  # the other service is not touched
    assert second.written == 1 and "service-dnat-tcp-2" not in second.chains

    # The last endpoint goes: the map element moves from service-ips to no-endpoint-services.
    rules3 = service_port_rules(sm, {k: v for k, v in em2.items() if k != WEB}, CONFIG, previous=rules2)
    third = assemble(rules3, CONFIG, write={WEB}, previous=second).text.splitlines()
    assert "delete element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 }" in third
    assert "add element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }" in third
    assert "delete element ip kube-proxy service-endpoints-tcp { 10.96.0.10 . 80 . 0 }" in third
    assert not any(line.startswith("delete chain") for line in third)  # db still uses service-dnat-tcp-1


def test_partial_sync_keeps_elements_another_service_port_still_puts_in():
    """Cluster IPs (several ports of one Service) and hairpin pairs (a pod behind
    several services) are shared: a partial sync deletes one only with its last user,
    and ends with the elements a full sync would write."""
    two_ports = svc("multi", "10.96.0.20", HTTP, {"name": "dns", "port": 53, "protocol": "UDP"})
    objs = {"svcs": [two_ports, svc("web", "10.96.0.10", HTTP)],
            "eps": [eps("multi", ["10.244.1.2"], HTTP_EP, {"name": "dns", "port": 53, "protocol": "UDP"}),
                    eps("web", ["10.244.1.2"], HTTP_EP)]}
    rules = service_port_rules(build_service_map(objs["svcs"]), build_endpoints_map(objs["eps"]), CONFIG)
    prev = assemble(rules, CONFIG, node_ips=["10.250.0.2"])
    steps = [([svc("multi", "10.96.0.20", HTTP), svc("web", "10.96.0.10", HTTP)], objs["eps"], []),
             ([svc("multi", "10.96.0.20", HTTP)], objs["eps"], ["10.96.0.10"]),
             ([], objs["eps"], ["10.96.0.20", "10.244.1.2 . 10.244.1.2"])]
    for i, (services, endpoints, deleted) in enumerate(steps):
        new = service_port_rules(build_service_map(services), build_endpoints_map(endpoints), CONFIG,
                                 previous=prev.rules)
        ruleset = assemble(new, CONFIG, node_ips=["10.250.0.3"], write={k for k, v in new.items()
                                                                          if prev.rules.get(k) is not v},
                           previous=prev)
        lines = ruleset.text.splitlines()
        assert ("delete element ip kube-proxy nodeport-ips { 10.250.0.2 }" in lines) == (i == 0)
        for key in ("10.96.0.10", "10.96.0.20"):
            assert (f"delete element ip kube-proxy cluster-ips {{ {key} }}" in lines) == (key in deleted)
        hairpin = "delete element ip kube-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }"
        assert (hairpin in lines) == ("10.244.1.2 . 10.244.1.2" in deleted)
        assert ruleset.elements == assemble(new, CONFIG, node_ips=["10.250.0.3"]).elements
        prev = ruleset


def test_cleanup_is_one_transaction_whether_or_not_the_table_exists():
    assert render_cleanup(CONFIG) == "add table ip kube-proxy\ndelete table ip kube-proxy\n"
    assert RulesConfig(chain_prefix="KLNFT").nftables_table == "klnft-proxy"


def test_names_from_nft_terse_listing():
    text = ("table ip nat {\n\tchain KUBE-SERVICES {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            "\t}\n}\ntable ip kube-proxy {\n\tchain services {\n\t}\n\tchain endpoint-AB-ns/x/tcp/__10.0.0.1/80 {\n"
            "\t}\n}\ntable ip kube-proxy {\n\tset affinity-AB-x {\n\t\ttype ipv4_addr\n\t}\n}\n"
            "table ip kube-proxy {\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
            "\t}\n}\n")
    assert parse_names(text, "kube-proxy") == ({"services", "endpoint-AB-ns/x/tcp/__10.0.0.1/80"},
                                               {"affinity-AB-x", "service-ips"})
    assert parse_names("", "kube-proxy") == (set(), set())


# ------------------------------------------------------------------ nft -c (root, nft; changes nothing)

_nft = shutil.which("nft")


@pytest.mark.skipif(os.geteuid() != 0 or not _nft, reason="nft -c needs root and nft")
def test_nft_check_accepts_the_rendered_ruleset():
    cfg = RulesConfig(cluster_cidr="10.244.0.0/16", chain_prefix="KLNFTCHK", pod_egress_cidrs=("10.250.0.0/24",))
    text = render([svc("web", "10.96.0.10", {**HTTP, "nodePort": 30080}, type="NodePort", sessionAffinity="ClientIP"),
                   svc("multi", "10.96.0.20", {"name": "http", "port": 80, "targetPort": "web"},
                       {"name": "dns", "port": 53, "protocol": "UDP"},
                       {"name": "sctp", "port": 99, "protocol": "SCTP", "nodePort": 30099}, type="NodePort"),
                   svc("empty", "10.96.0.30", {**HTTP, "nodePort": 30081}, type="NodePort")],
                  [eps("web", ["10.244.1.2", "10.244.1.3"], HTTP_EP),
                   eps("multi", ["10.244.1.2", "10.244.1.3"], {"name": "http", "port": 8080},
                       {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "sctp", "port": 99, "protocol": "SCTP"})],
                  cfg)
    assert "nodeport-dnat-sctp-2" in text and "service-dnat-udp-2" in text
    for variant in (text, render([], [], cfg, node_ips=["10.250.0.2"])):
        proc = subprocess.run([_nft, "-c", "-f", "-"], input=variant, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
    assert "klnftchk-proxy" not in subprocess.run([_nft, "list", "tables"], capture_output=True, text=True,
                                                  timeout=30).stdout


# ------------------------------------------------------------------ Proxier with a fake nft

class FakeNft:
    def __init__(self):
        self.applied: list[str] = []
        self.listed = 0
        self.fail = False
        self.existing: tuple[set[str], set[str]] = (set(), set())

    async def list_names(self, table: str, *, family: str = "ip"):
        self.listed += 1
        return self.existing

    async def apply(self, text: str) -> None:
        if self.fail:
            raise NftError(["nft", "-f", "-"], 1, "Error: boom")
        self.applied.append(text)


class NoConntrack:
    async def clear_entries_for_ip(self, *a): pass
    async def clear_entries_for_nat(self, *a): pass
    async def clear_entries_for_port(self, *a): pass
    async def clear_entries_for_port_nat(self, *a): pass


async def test_proxier_full_then_partial_then_full_after_failure():
    state = {"svcs": [svc("web", "10.96.0.10", HTTP)], "eps": [eps("web", ["10.244.1.2"], HTTP_EP)]}
    nft = FakeNft()
    p = Proxier(list_services=lambda: state["svcs"], list_endpoints=lambda: state["eps"], config=CONFIG,
                nft=nft, conntrack=NoConntrack(), full_sync_period=3600)
    assert not p.healthy
    stats = await p.sync_proxy_rules()
    assert stats.full and nft.listed == 1 and p.healthy and len(nft.applied) == 1
    state["eps"] = [eps("web", ["10.244.1.3"], HTTP_EP)]
    stats = await p.sync_proxy_rules()
    assert not stats.full and stats.written == 1 and nft.listed == 1
    assert "delete element ip kube-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }" in nft.applied[-1]
    stats = await p.sync_proxy_rules()  # nothing changed: only the sentinel chain is rewritten
    assert not stats.full and stats.written == 0
    assert nft.applied[-1] == ("flush chain ip kube-proxy services\n"
                               "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n"
                               "add rule ip kube-proxy services fib daddr type local meta l4proto . th dport "
                               "vmap @service-nodeports\n")
    nft.fail = True
    state["eps"] = []
    with pytest.raises(NftError):
        await p.sync_proxy_rules()
    nft.fail = False
    stats = await p.sync_proxy_rules()
    assert stats.full and nft.listed == 2  # the failed sync was a partial one
    assert "no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }" in nft.applied[-1]


def test_cleanup_reports_failure_without_raising():
    nft = FakeNft()
    assert asyncio.run(cleanup_leftovers(CONFIG, nft=nft)) and nft.applied == [render_cleanup(CONFIG)]
    nft.fail = True
    assert not asyncio.run(cleanup_leftovers(CONFIG, nft=nft))


def test_proxy_mode_flag():
    from proxy.server import build_parser, check_proxy_mode
    assert build_parser().parse_args(["--proxy-mode", "nftables"]).proxy_mode == "nftables"
    assert check_proxy_mode("nftables", nft="/nonexistent/nft").startswith("--proxy-mode=nftables: ")
    if _nft:
        assert check_proxy_mode("nftables") is None


def test_recreate_deletes_the_table_in_the_same_transaction():
    text = render_ruleset({}, {}, CONFIG, existing_chains={"services", "endpoint-OLD"}, existing_sets={"service-ips"})
    assert "flush chain ip kube-proxy services" in text
    rules = service_port_rules({}, {}, CONFIG)
    lines = assemble(rules, CONFIG, existing_chains={"services", "endpoint-OLD"}, existing_sets={"service-ips"},
                     recreate=True).text.splitlines()
    assert lines[:3] == ["add table ip kube-proxy", "delete table ip kube-proxy",
                         'add table ip kube-proxy { comment "rules for kube-proxy" ; }']
    assert not any(line.startswith(("flush", "delete chain", "delete set")) for line in lines)


async def test_failed_full_sync_is_retried_with_the_table_recreated():
    state = {"svcs": [svc("web", "10.96.0.10", HTTP)], "eps": []}
    nft = FakeNft()
    p = Proxier(list_services=lambda: state["svcs"], list_endpoints=lambda: state["eps"], config=CONFIG,
                nft=nft, conntrack=NoConntrack())
    nft.fail = True
    with pytest.raises(NftError):
        await p.sync_proxy_rules()
    nft.fail = False
    assert (await p.sync_proxy_rules()).full
    assert nft.applied[-1].startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    p.force_full_sync()
    await p.sync_proxy_rules()
    assert "delete table" not in nft.applied[-1]  # only after a failed full sync
