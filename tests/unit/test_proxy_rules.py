"""Golden tests of the kube-proxy iptables renderer (proxy.iptables.rules).

The expected texts follow upstream's pkg/proxy/iptables/proxier_test.go
layouts; chain hashes are checked against names seen on real clusters.
"""
from __future__ import annotations

import pytest

from proxy.iptables.rules import (RulesConfig, assemble, endpoint_chain, is_owned_chain, probability,
                                  render_cleanup, render_rules, service_chain, service_port_rules)
from proxy.serviceport import Endpoint, ServicePortName, build_endpoints_map, build_service_map

CFG = RulesConfig(cluster_cidr="10.244.0.0/16")

FILTER_HEAD = """\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "kubeling: pod traffic stays on this machine" -m conntrack --ctstate NEW -j REJECT --reject-with icmp-net-unreachable
-A KUBE-FORWARD -s 10.244.0.0/16 -m comment --comment "kubernetes forwarding pod source rule" -j ACCEPT
-A KUBE-FORWARD -d 10.244.0.0/16 -m comment --comment "kubernetes forwarding pod destination rule" -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
"""
NAT_CHAINS = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
"""
NAT_BASE_RULES = """\
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
"""
NODEPORTS_JUMP = """\
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
"""
NAT_TAIL = NODEPORTS_JUMP + "COMMIT\n"


def service(name: str, cluster_ip: str, *ports: dict, ns: str = "default", **spec) -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": list(ports), **spec}}


def endpoints(name: str, ips: list[str], *ports: dict, ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": list(ports)}] if ips else []}


def render(svcs: list[dict], eps: list[dict], config: RulesConfig = CFG, **kw) -> str:
    return render_rules(build_service_map(svcs), build_endpoints_map(eps), config, **kw)


WEB = service("web", "10.96.0.20", {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080})


def test_no_services():
    """An empty cluster still gets the base chains and the forwarding rules."""
    assert render([], []) == FILTER_HEAD + "COMMIT\n" + NAT_CHAINS + NAT_BASE_RULES + NAT_TAIL


def test_service_without_endpoints_is_rejected():
    """No endpoints: a REJECT in filter KUBE-SERVICES and no KUBE-SVC chain at all."""
    want = (FILTER_HEAD
            + '-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" -m tcp -p tcp '
              "-d 10.96.0.20 --dport 80 -j REJECT --reject-with icmp-port-unreachable\n"
            + "COMMIT\n" + NAT_CHAINS + NAT_BASE_RULES + NAT_TAIL)
    assert render([WEB], []) == want
    assert render([WEB], [endpoints("web", [], {"name": "http", "port": 8080})]) == want


def test_one_endpoint():
    """One endpoint: the service chain jumps to it without a statistic match."""
    want = (FILTER_HEAD + "COMMIT\n" + NAT_CHAINS
            + ":KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]\n"
              ":KUBE-SEP-TCD3IFXQZW3ZEZQU - [0:0]\n"
            + NAT_BASE_RULES
            + '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL\n'
            + NODEPORTS_JUMP
            + '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n'
              '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.3:8080" -j KUBE-SEP-TCD3IFXQZW3ZEZQU\n'
              "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -m comment --comment default/web:http -s 10.244.0.3 -j KUBE-MARK-MASQ\n"
              "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.0.3:8080\n"
            + "COMMIT\n")
    got = render([WEB], [endpoints("web", ["10.244.0.3"], {"name": "http", "port": 8080, "protocol": "TCP"})])
    assert got == want


def test_three_endpoints_probabilities():
    """n endpoints: rule i matches with probability 1/(n-i), the last one always (upstream's formula)."""
    want = (FILTER_HEAD + "COMMIT\n" + NAT_CHAINS
            + ":KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]\n"
              ":KUBE-SEP-TCD3IFXQZW3ZEZQU - [0:0]\n"
              ":KUBE-SEP-MQPSSF2DIKDEHI3U - [0:0]\n"
              ":KUBE-SEP-7U6MWNJWR3SADOJA - [0:0]\n"
            + NAT_BASE_RULES
            + '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL\n'
            + NODEPORTS_JUMP
            + '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n'
              '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.3:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-TCD3IFXQZW3ZEZQU\n'
              '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.4:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-MQPSSF2DIKDEHI3U\n'
              '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.5:8080" -j KUBE-SEP-7U6MWNJWR3SADOJA\n'
              "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -m comment --comment default/web:http -s 10.244.0.3 -j KUBE-MARK-MASQ\n"
              "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.0.3:8080\n"
              "-A KUBE-SEP-MQPSSF2DIKDEHI3U -m comment --comment default/web:http -s 10.244.0.4 -j KUBE-MARK-MASQ\n"
              "-A KUBE-SEP-MQPSSF2DIKDEHI3U -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.0.4:8080\n"
              "-A KUBE-SEP-7U6MWNJWR3SADOJA -m comment --comment default/web:http -s 10.244.0.5 -j KUBE-MARK-MASQ\n"
              "-A KUBE-SEP-7U6MWNJWR3SADOJA -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.0.5:8080\n"
            + "COMMIT\n")
    # Addresses given out of order (and .10 after .5 numerically) come out sorted by IP.
    eps = endpoints("web", ["10.244.0.5", "10.244.0.3", "10.244.0.4"], {"name": "http", "port": 8080})
    assert render([WEB], [eps]) == want


def test_probability_formula():
    assert [probability(5 - i) for i in range(4)] == ["0.2000000000", "0.2500000000", "0.3333333333",
                                                      "0.5000000000"]


def test_multi_port_and_udp():
    """Each port gets its own KUBE-SVC chain; target ports come from the Endpoints by port name;
    UDP ports use -m udp -p udp."""
    dns = service("kube-dns", "10.96.0.10",
                  {"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                  {"name": "metrics", "port": 9153, "protocol": "TCP"}, ns="kube-system")
    eps = endpoints("kube-dns", ["10.244.0.7"], {"name": "dns", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}, ns="kube-system")
    got = render([dns], [eps])
    nat = got[got.index("*nat"):]
    assert ("-A KUBE-SERVICES -m comment --comment \"kube-system/kube-dns:dns cluster IP\" -m udp -p udp "
            "-d 10.96.0.10 --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU\n") in nat
    assert ("-A KUBE-SERVICES -m comment --comment \"kube-system/kube-dns:dns-tcp cluster IP\" -m tcp -p tcp "
            "-d 10.96.0.10 --dport 53 -j KUBE-SVC-ERIFXISQEP7F7OF4\n") in nat
    sep = endpoint_chain(CFG, ServicePortName("kube-system", "kube-dns", "dns", "UDP"), Endpoint("10.244.0.7", 5353))
    assert (f"-A {sep} -m comment --comment kube-system/kube-dns:dns -m udp -p udp "
            "-j DNAT --to-destination 10.244.0.7:5353\n") in nat
    assert "--to-destination 10.244.0.7:5353\n" in nat.split("KUBE-SVC-ERIFXISQEP7F7OF4")[-1]
    # The metrics port has no endpoint port of that name: rejected, no chain.
    assert ('-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:metrics has no endpoints" '
            "-m tcp -p tcp -d 10.96.0.10 --dport 9153 -j REJECT --reject-with icmp-port-unreachable\n") in got
    assert got.count(":KUBE-SVC-") == 2 and got.count(":KUBE-SEP-") == 2


@pytest.mark.parametrize("name,protocol,endpoint,svc_chain,sep_chain", [
    pytest.param(ServicePortName("default", "kubernetes", "https", "TCP"), "TCP", None,
                 "KUBE-SVC-NPX46M4PTMTKRN6Y", None, id="kubernetes-https"),
    pytest.param(ServicePortName("kube-system", "kube-dns", "dns", "UDP"), "UDP", Endpoint("10.64.1.7", 53),
                 "KUBE-SVC-TCOU7JCQXEZGVUNU", "KUBE-SEP-TYGHG4DTIAC24P3K", id="kube-dns-udp"),
    pytest.param(ServicePortName("default", "web-svc", "nginx-svc-port", "TCP"), "TCP",
                 Endpoint("10.64.1.13", 80), "KUBE-SVC-YVE4DVDYZJRPV46I", "KUBE-SEP-CC3QGOI23D5U3CR7",
                 id="web-svc"),
    pytest.param(ServicePortName("default", "nginx", "", "TCP"), "TCP", None,
                 "KUBE-SVC-2CMXP7HKUVJN7L6M", None, id="unnamed-port"),
])
def test_chain_hashes_match_upstream(name, protocol, endpoint, svc_chain, sep_chain):
    """Chain names are the ones upstream kube-proxy gives the same service ports
    (names observed in iptables-save of real clusters)."""
    assert service_chain(CFG, name) == svc_chain
    if endpoint:
        assert endpoint_chain(CFG, name, endpoint) == sep_chain


def test_rendering_is_deterministic():
    svcs = [WEB, service("a", "10.96.0.21", {"port": 81})]
    eps = [endpoints("web", ["10.244.0.9", "10.244.0.10"], {"name": "http", "port": 8080}),
           endpoints("a", ["10.244.0.2"], {"port": 81})]
    assert render(svcs, eps) == render(list(reversed(svcs)), list(reversed(eps)))
    assert render(svcs, eps).index("10.244.0.9:8080") < render(svcs, eps).index("10.244.0.10:8080")


def test_headless_and_external_name_are_skipped():
    headless = service("db", "None", {"port": 5432})
    ext = {"metadata": {"namespace": "default", "name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}}
    eps = endpoints("db", ["10.244.0.3"], {"port": 5432})
    assert render([headless, ext], [eps]) == render([], [])


def test_stale_owned_chains_are_deleted_and_others_left_alone():
    """Owned hashed chains no longer wanted are declared and -X'd; chains of others
    (Docker's, another prefix's) are never named in the output."""
    existing = {"nat": {"KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "DOCKER",
                        "KUBE-KUBELET-CANARY", "KLTEST-SVC-CCCCCCCCCCCCCCCC", "KUBE-SERVICES"}}
    got = render([], [], existing_chains=existing)
    nat = got[got.index("*nat"):]
    assert nat.endswith("-X KUBE-SEP-BBBBBBBBBBBBBBBB\n-X KUBE-SVC-AAAAAAAAAAAAAAAA\nCOMMIT\n")
    assert ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n" in nat
    for other in ("DOCKER", "KUBE-KUBELET-CANARY", "KLTEST-SVC"):
        assert other not in got
    assert "-X KUBE-SERVICES" not in got


def test_chain_prefix_and_mark_are_configurable():
    """A test prefix renames every chain; another masquerade bit changes every mark."""
    cfg = RulesConfig(cluster_cidr="10.244.0.0/16", chain_prefix="KLTEST", masquerade_bit=13)
    got = render([WEB], [endpoints("web", ["10.244.0.3"], {"name": "http", "port": 8080})], cfg)
    assert "KUBE-" not in got and "0x4000" not in got
    assert "-A KLTEST-MARK-MASQ -j MARK --set-xmark 0x2000/0x2000\n" in got
    assert ":KLTEST-SVC-CDGGSHYLG3RE2FKL - [0:0]\n" in got
    assert all(len(line.split()[0]) - 1 <= 28 for line in got.splitlines() if line.startswith(":"))


def test_session_affinity_and_node_port():
    """ClientIP affinity adds -m recent check rules before the random ones and --set on DNAT;
    a NodePort gets a KUBE-NODEPORTS rule into a KUBE-EXT chain that masquerades."""
    svc = service("web", "10.96.0.20", {"name": "http", "port": 80, "nodePort": 30080},
                  type="NodePort", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    got = render([svc], [endpoints("web", ["10.244.0.3", "10.244.0.4"], {"name": "http", "port": 8080})])
    sep = "KUBE-SEP-TCD3IFXQZW3ZEZQU"
    assert (f'-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.3:8080" '
            f"-m recent --name {sep} --rcheck --seconds 600 --reap -j {sep}\n") in got
    assert got.index("--rcheck") < got.index("--probability")
    assert (f"-A {sep} -m comment --comment default/web:http -m recent --name {sep} --set -m tcp -p tcp "
            "-j DNAT --to-destination 10.244.0.3:8080\n") in got
    assert ("-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 "
            "-j KUBE-EXT-CDGGSHYLG3RE2FKL\n") in got
    assert "-A KUBE-EXT-CDGGSHYLG3RE2FKL -j KUBE-SVC-CDGGSHYLG3RE2FKL\n" in got
    # Without endpoints the node port is rejected in KUBE-EXTERNAL-SERVICES.
    assert "-A KUBE-EXTERNAL-SERVICES" in render([svc], []) and "--dport 30080" in render([svc], [])


def test_no_cluster_cidr_means_no_masquerade_rule_unless_masquerade_all():
    eps = [endpoints("web", ["10.244.0.3"], {"name": "http", "port": 8080})]
    plain = render([WEB], eps, RulesConfig())
    assert "! -s" not in plain and "pod source rule" not in plain
    everything = render([WEB], eps, RulesConfig(masquerade_all=True))
    assert ('-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
            "-d 10.96.0.20 --dport 80 -j KUBE-MARK-MASQ\n") in everything


def test_owned_chains_and_cleanup_text():
    assert is_owned_chain(CFG, "KUBE-SEP-ABC") and is_owned_chain(CFG, "KUBE-MARK-MASQ")
    assert not is_owned_chain(CFG, "KUBE-FIREWALL") and not is_owned_chain(CFG, "DOCKER")
    text = render_cleanup(CFG, {"filter": {"INPUT", "KUBE-FORWARD", "DOCKER-USER"},
                                "nat": {"KUBE-SERVICES", "KUBE-SVC-X", "POSTROUTING"}})
    assert text == ("*filter\n:KUBE-FORWARD - [0:0]\n-X KUBE-FORWARD\nCOMMIT\n"
                    "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n-X KUBE-SERVICES\n-X KUBE-SVC-X\nCOMMIT\n")
    assert render_cleanup(CFG, {"filter": {"INPUT"}, "nat": set()}) == ""


def test_pod_egress_is_rejected_unless_allowed():
    """Forwarded pod traffic to outside the cluster CIDR is rejected by default,
    so nothing a pod sends leaves the machine; --allow-pod-egress lifts it."""
    reject = '-s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "kubeling: pod traffic stays on this machine"'
    assert reject in render([], [])
    assert reject not in render([], [], RulesConfig(cluster_cidr="10.244.0.0/16", pod_egress=True))


def test_pod_egress_cidrs_are_accepted_before_the_reject():
    """The node underlay (other nodes, the cluster DNS) stays reachable for pods."""
    text = render([], [], RulesConfig(cluster_cidr="10.244.0.0/16", pod_egress_cidrs=("10.250.0.0/24",)))
    accept = '-A KUBE-FORWARD -s 10.244.0.0/16 -d 10.250.0.0/24 -m comment --comment ' \
             '"kubeling: pod traffic to the node underlay" -j ACCEPT'
    assert accept in text
    assert text.index(accept) < text.index("kubeling: pod traffic stays on this machine")


def test_large_cluster_mode_drops_per_endpoint_comments():
    """Upstream's largeClusterMode (more than 1000 endpoints): SVC -> SEP and SEP rules
    lose their comments; KUBE-SERVICES keeps its own."""
    eps = [endpoints("web", ["10.244.0.3"], {"name": "http", "port": 8080})]
    got = render([WEB], eps, large_cluster=True)
    assert "-A KUBE-SVC-CDGGSHYLG3RE2FKL -j KUBE-SEP-TCD3IFXQZW3ZEZQU\n" in got
    assert "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -s 10.244.0.3 -j KUBE-MARK-MASQ\n" in got
    assert "-A KUBE-SEP-TCD3IFXQZW3ZEZQU -m tcp -p tcp -j DNAT --to-destination 10.244.0.3:8080\n" in got
    assert '--comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 -j KUBE-SVC-' in got
    assert render([WEB], eps) == render([WEB], eps, large_cluster=False)


def test_large_cluster_mode_is_chosen_by_endpoint_count():
    many = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(1001)]
    rules = service_port_rules(build_service_map([WEB]),
                               build_endpoints_map([endpoints("web", many, {"name": "http", "port": 8080})]), CFG)
    assert not any("--comment" in r for r in next(iter(rules.values())).chain_rules if "DNAT" in r)


NODEPORTS_RULE = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                  'last rule in this chain" ')


def test_nodeport_addresses_give_one_rule_per_node_ip():
    """--nodeport-addresses: node ports answer only on the node IPs in those CIDRs
    (upstream writes one -d rule per IP instead of addrtype LOCAL)."""
    got = render([], [], node_ips=["10.250.0.11", "127.0.0.1"])
    assert NODEPORTS_RULE + "-d 10.250.0.11 -j KUBE-NODEPORTS\n" in got
    assert NODEPORTS_RULE + "-d 127.0.0.1 -j KUBE-NODEPORTS\n" in got
    assert "--dst-type LOCAL" not in got.split("*nat")[1]
    no_lo = RulesConfig(cluster_cidr="10.244.0.0/16", localhost_nodeports=False)
    got = render([], [], no_lo, node_ips=["10.250.0.11", "127.0.0.1"])
    assert "-d 127.0.0.1 -j" not in got
    assert (NODEPORTS_RULE + "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS\n") in render([], [], no_lo)


def test_udp_node_port_and_multi_port_node_port():
    svc = service("dns", "10.96.0.10", {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                  {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30054}, type="NodePort")
    eps = endpoints("dns", ["10.244.0.7"], {"name": "dns", "port": 5353, "protocol": "UDP"},
                    {"name": "tcp", "port": 5353, "protocol": "TCP"})
    got = render([svc], [eps])
    assert "-A KUBE-NODEPORTS -m comment --comment default/dns:dns -m udp -p udp --dport 30053 -j KUBE-EXT-" in got
    assert "-A KUBE-NODEPORTS -m comment --comment default/dns:tcp -m tcp -p tcp --dport 30054 -j KUBE-EXT-" in got


def test_partial_assemble_writes_only_named_service_ports():
    """assemble(write=...) keeps every KUBE-SERVICES rule but declares and fills the
    chains of the named service ports only; ``chains`` lists all active ones."""
    a = service("a", "10.96.0.21", {"port": 81})
    svcs = build_service_map([WEB, a])
    eps = build_endpoints_map([endpoints("web", ["10.244.0.3"], {"name": "http", "port": 8080}),
                               endpoints("a", ["10.244.0.2"], {"port": 81})])
    rules = service_port_rules(svcs, eps, CFG)
    web_spn = ServicePortName("default", "web", "http", "TCP")
    rs = assemble(rules, CFG, write={web_spn})
    assert rs.written == 1
    assert ":KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]\n" in rs.text
    a_chain = service_chain(CFG, ServicePortName("default", "a", "", "TCP"))
    assert f":{a_chain} " not in rs.text and f"-j {a_chain}\n" in rs.text
    assert a_chain in rs.chains and "KUBE-SERVICES" in rs.chains
    assert assemble(rules, CFG).text == render_rules(svcs, eps, CFG)
    again = service_port_rules(svcs, eps, CFG, previous=rules)
    assert all(again[k] is rules[k] for k in rules)
