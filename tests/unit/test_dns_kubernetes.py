"""Names -> records of the cluster DNS (addons.dns.kubernetes), from in-memory
Services and EndpointSlices; the record shapes of the Kubernetes DNS specification."""
from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from addons.dns.kubernetes import Kubernetes, dashed_ip
from addons.dns.forward import parse_upstream


def svc(name, ns="default", *, ip="10.96.0.20", ports=(("http", 80, "TCP"),), type_="ClusterIP", **spec):
    s = {"type": type_, "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports], **spec}
    if ip is not None:
        s["clusterIP"] = ip
        s["clusterIPs"] = [ip]
    return {"metadata": {"name": name, "namespace": ns}, "spec": s}


def slice_(name, service, ns="default", *, endpoints, ports=(("http", 8080, "TCP"),)):
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}


def ep(ip, *, ready=True, hostname=None):
    e = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        e["hostname"] = hostname
    return e


@pytest.fixture
def k():
    changes = []
    k = Kubernetes(zone="cluster.local", dns_ip="10.96.0.10", on_change=changes.append)
    k.changes = changes
    k.upsert_service(svc("web"))
    k.upsert_service(svc("db", ip="None", ports=(("pg", 5432, "TCP"),)))
    k.upsert_endpointslice(slice_("db-abc", "db", ports=(("pg", 5432, "TCP"),),
                                  endpoints=[ep("10.244.1.5", hostname="db-0"), ep("10.244.2.6"),
                                             ep("10.244.3.7", ready=False)]))
    k.upsert_service({"metadata": {"name": "ext", "namespace": "default"},
                      "spec": {"type": "ExternalName", "externalName": "example.org"}})
    return k


def values(ans):
    return sorted(str(rr.rdata) for rr in ans.answer)


def test_clusterip_service_a(k):
    ans = k.resolve("web.default.svc.cluster.local.", QTYPE.A)
    assert ans.rcode == RCODE.NOERROR and values(ans) == ["10.96.0.20"]
    assert ans.answer[0].ttl == 5 and ans.zone == "cluster.local."


def test_case_insensitive_and_keeps_question_spelling(k):
    ans = k.resolve("WEB.Default.SVC.cluster.local", QTYPE.A)
    assert values(ans) == ["10.96.0.20"]
    assert str(ans.answer[0].rname) == "WEB.Default.SVC.cluster.local."


def test_headless_gives_ready_endpoints(k):
    ans = k.resolve("db.default.svc.cluster.local", QTYPE.A)
    assert values(ans) == ["10.244.1.5", "10.244.2.6"]


def test_headless_endpoint_hostname_and_dashed_name(k):
    assert values(k.resolve("db-0.db.default.svc.cluster.local", QTYPE.A)) == ["10.244.1.5"]
    assert values(k.resolve("10-244-2-6.db.default.svc.cluster.local", QTYPE.A)) == ["10.244.2.6"]
    assert k.resolve("db-9.db.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    # endpoint names exist only under headless services
    assert k.resolve("x.web.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_srv_clusterip_targets_the_service(k):
    ans = k.resolve("_http._tcp.web.default.svc.cluster.local", QTYPE.SRV)
    assert len(ans.answer) == 1
    srv = ans.answer[0].rdata
    assert (srv.priority, srv.weight, srv.port, str(srv.target)) == (0, 100, 80, "web.default.svc.cluster.local.")
    assert [(str(r.rname), str(r.rdata)) for r in ans.additional] == [("web.default.svc.cluster.local.", "10.96.0.20")]
    assert k.resolve("_nope._tcp.web.default.svc.cluster.local", QTYPE.SRV).rcode == RCODE.NXDOMAIN
    assert k.resolve("_http._udp.web.default.svc.cluster.local", QTYPE.SRV).rcode == RCODE.NXDOMAIN


def test_srv_headless_targets_each_endpoint(k):
    ans = k.resolve("_pg._tcp.db.default.svc.cluster.local", QTYPE.SRV)
    got = sorted((r.rdata.port, str(r.rdata.target), r.rdata.weight) for r in ans.answer)
    assert got == [(5432, "10-244-2-6.db.default.svc.cluster.local.", 50),
                   (5432, "db-0.db.default.svc.cluster.local.", 50)]
    assert sorted(str(r.rdata) for r in ans.additional) == ["10.244.1.5", "10.244.2.6"]


def test_external_name_is_cname(k):
    ans = k.resolve("ext.default.svc.cluster.local", QTYPE.A)
    assert ans.answer[0].rtype == QTYPE.CNAME and str(ans.answer[0].rdata) == "example.org."
    assert ans.chase == "example.org."  # the server asks upstream for the target's A records
    assert k.resolve("ext.default.svc.cluster.local", QTYPE.CNAME).chase is None


def test_external_name_into_the_zone_is_followed_here(k):
    k.upsert_service({"metadata": {"name": "alias", "namespace": "default"},
                      "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}})
    ans = k.resolve("alias.default.svc.cluster.local", QTYPE.A)
    assert [(rr.rtype, str(rr.rdata)) for rr in ans.answer] == [
        (QTYPE.CNAME, "web.default.svc.cluster.local."), (QTYPE.A, "10.96.0.20")]
    assert ans.chase is None
    k.upsert_service({"metadata": {"name": "loop", "namespace": "default"},
                      "spec": {"type": "ExternalName", "externalName": "loop.default.svc.cluster.local"}})
    assert len(k.resolve("loop.default.svc.cluster.local", QTYPE.A).answer) == 9  # bounded


def test_pod_a_insecure(k):
    assert values(k.resolve("10-244-1-9.default.pod.cluster.local", QTYPE.A)) == ["10.244.1.9"]
    assert k.resolve("not-an-ip.default.pod.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_ptr_for_cluster_ip_and_headless_endpoint(k):
    ans = k.resolve("20.0.96.10.in-addr.arpa.", QTYPE.PTR)
    assert values(ans) == ["web.default.svc.cluster.local."]
    assert values(k.resolve("5.1.244.10.in-addr.arpa", QTYPE.PTR)) == ["db-0.db.default.svc.cluster.local."]
    assert k.resolve("4.3.2.1.in-addr.arpa", QTYPE.PTR) is None  # falls through to the forwarder


def test_nxdomain_has_soa_and_nodata(k):
    ans = k.resolve("missing.default.svc.cluster.local", QTYPE.A)
    assert ans.rcode == RCODE.NXDOMAIN and not ans.answer
    soa = ans.authority[0]
    assert soa.rtype == QTYPE.SOA and str(soa.rname) == "cluster.local."
    assert str(soa.rdata.mname) == "ns.dns.cluster.local." and soa.rdata.times[-1] == 5
    nodata = k.resolve("web.default.svc.cluster.local", QTYPE.AAAA)
    assert nodata.rcode == RCODE.NOERROR and not nodata.answer and nodata.authority[0].rtype == QTYPE.SOA
    # search-path expansions of a name in another namespace
    assert k.resolve("web.default.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert k.resolve("web.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert k.resolve("default.svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR
    assert k.resolve("nons.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_outside_zone_is_not_ours(k):
    assert k.resolve("example.org", QTYPE.A) is None
    assert k.resolve("local", QTYPE.A) is None
    assert k.resolve("othercluster.local", QTYPE.A) is None


def test_apex_and_dns_version(k):
    assert k.resolve("cluster.local", QTYPE.SOA).answer[0].rtype == QTYPE.SOA
    assert values(k.resolve("cluster.local", QTYPE.NS)) == ["ns.dns.cluster.local."]
    assert values(k.resolve("ns.dns.cluster.local", QTYPE.A)) == ["10.96.0.10"]
    assert k.resolve("dns-version.cluster.local", QTYPE.TXT).answer[0].rtype == QTYPE.TXT


def test_deletes_and_changes(k):
    n = len(k.changes)
    k.remove_service(svc("web"))
    assert len(k.changes) == n + 1
    assert k.resolve("web.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert k.resolve("20.0.96.10.in-addr.arpa", QTYPE.PTR) is None
    k.remove_endpointslice(slice_("db-abc", "db", endpoints=[]))
    ans = k.resolve("db.default.svc.cluster.local", QTYPE.A)
    assert ans.rcode == RCODE.NXDOMAIN and not ans.answer  # headless without endpoints, as CoreDNS


def test_endpoints_deduplicated_across_slices(k):
    k.upsert_endpointslice(slice_("db-def", "db", ports=(("pg", 5432, "TCP"),),
                                  endpoints=[ep("10.244.2.6"), ep("10.244.4.8")]))
    assert values(k.resolve("db.default.svc.cluster.local", QTYPE.A)) == ["10.244.1.5", "10.244.2.6", "10.244.4.8"]


def test_answer_packs_as_wire(k):
    ans = k.resolve("_pg._tcp.db.default.svc.cluster.local", QTYPE.SRV)
    q = DNSRecord.question("_pg._tcp.db.default.svc.cluster.local", "SRV")
    r = q.reply()
    for rr in ans.answer:
        r.add_answer(rr)
    for rr in ans.additional:
        r.add_ar(rr)
    back = DNSRecord.parse(r.pack())
    assert len(back.rr) == 2 and len(back.ar) == 2


def test_dashed_ip():
    assert dashed_ip("10.244.1.5") == "10-244-1-5"


@pytest.mark.parametrize("text,want", [("127.0.0.1:5353", ("127.0.0.1", 5353)), ("1.2.3.4", ("1.2.3.4", 53)),
                                       ("[::1]:54", ("::1", 54)), ("dns://127.0.0.2:53", ("127.0.0.2", 53))])
def test_parse_upstream(text, want):
    assert parse_upstream(text) == want


@pytest.mark.parametrize("text", ["127.0.0.1:x", "127.0.0.1:0", ":53"])
def test_parse_upstream_errors(text):
    with pytest.raises(ValueError):
        parse_upstream(text)


def test_kube_dns_objects_feed_kube_proxy():
    """The selector-less kube-dns Service and the Endpoints the server writes give kube-proxy
    the DNAT 10.96.0.10:53/UDP and /TCP -> the server's address and port."""
    from addons.dns.register import desired_endpoints, desired_endpointslice, desired_service
    from proxy.serviceport import Endpoint, ServicePortName, build_endpoints_map, build_service_map

    svc = desired_service(service_ip="10.96.0.10", port=53, metrics_port=9153)
    assert "selector" not in svc["spec"]
    services = build_service_map([svc])
    endpoints = build_endpoints_map([desired_endpoints(address="10.250.0.1", port=53, metrics_port=9153)])
    for proto, pname in (("UDP", "dns"), ("TCP", "dns-tcp")):
        spn = ServicePortName("kube-system", "kube-dns", pname, proto)
        assert services[spn].cluster_ip == "10.96.0.10" and services[spn].port == 53
        assert endpoints[spn] == [Endpoint("10.250.0.1", 53)]
    from proxy.iptables.rules import RulesConfig, render_rules
    text = render_rules(services, endpoints, RulesConfig(cluster_cidr="10.244.0.0/16"))
    for proto in ("udp", "tcp"):
        assert any(f"-p {proto}" in line and "--to-destination 10.250.0.1:53" in line for line in text.splitlines())
        assert any("-d 10.96.0.10 " in line and f"-p {proto}" in line and "--dport 53" in line
                   for line in text.splitlines())
    es = desired_endpointslice(address="10.250.0.1", port=53, metrics_port=9153)
    assert es["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "kubeling-dns"
    assert es["endpoints"][0]["conditions"]["ready"] is True


@pytest.mark.parametrize("argv,needle", [
    (["--bind-address", "nope"], "--bind-address"),
    (["--bind-address", "0.0.0.0"], "--bind-address"),
    (["--service-ip", "10.96.0"], "--service-ip"),
    (["--port", "0"], "--port"),
    (["--port", "70000"], "--port"),
    (["--cluster-domain", "a..b"], "--cluster-domain"),
    (["--upstream", "127.0.0.1:x"], "--upstream"),
])
def test_bad_flags_are_one_line(argv, needle):
    from addons.dns.__main__ import UsageError, parse_args, validate
    args = parse_args(["--kubeconfig", "k", "--upstream", "127.0.0.1:53", *argv])
    with pytest.raises(UsageError) as e:
        validate(args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_answer_dependencies(k):
    assert k.resolve("web.default.svc.cluster.local", QTYPE.A).deps == ("svc", "default", "web")
    assert k.resolve("_pg._tcp.db.default.svc.cluster.local", QTYPE.SRV).deps == ("svc", "default", "db")
    assert k.resolve("web.other.default.svc.cluster.local", QTYPE.A).deps == ("svc", "default", "other")
    assert k.resolve("default.svc.cluster.local", QTYPE.A).deps == ("ns", "default")
    assert k.resolve("1-2-3-4.default.pod.cluster.local", QTYPE.A).deps == ("static",)
    assert k.resolve("web.cluster.local", QTYPE.A).deps == ("static",)
    assert k.resolve("cluster.local", QTYPE.SOA).deps == ("global",)
    assert k.resolve("20.0.96.10.in-addr.arpa", QTYPE.PTR).deps == ("ptr",)
    k.changes.clear()
    k.upsert_endpointslice(slice_("db-abc", "db", endpoints=[]))
    assert k.changes == [[("default", "db"), ("default", "db")]]


def test_servfail_until_synced(k):
    k.synced = False
    assert k.resolve("web.default.svc.cluster.local", QTYPE.A).rcode == RCODE.SERVFAIL
    assert k.resolve("example.org", QTYPE.A) is None
    k.synced = True
    assert k.resolve("web.default.svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR
