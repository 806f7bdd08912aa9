"""The cluster DNS process (python -m addons.dns) against a real etcd + apiserver:
records for ClusterIP, headless (EndpointSlice), named ports, ExternalName,
pods, PTR, NXDOMAIN + SOA, TCP, forwarding to a fake upstream on loopback,
deletions seen within 2 s, and the kube-dns objects it registers."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

import support

from kubeling.client import Client


def query(addr, port, name, rdtype="A", *, tcp=False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    fn = dns.query.tcp if tcp else dns.query.udp
    return fn(q, addr, port=port, timeout=3)


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns")
    upstream = support.FakeResolver({"example.org.": "192.0.2.77"})
    try:
        with support.control_plane(tmp) as cp:
            addr = f"127.0.0.{random.randint(2, 250)}"
            port, health, metrics_port = support.free_port(), support.free_port(), support.free_port()
            cp.procs.spawn("dns", [sys.executable, "-m", "addons.dns", "--kubeconfig", str(cp.kubeconfig),
                                   "--bind-address", addr, "--port", str(port), "--cluster-domain", "cluster.local",
                                   "--service-ip", "10.96.0.10", "--upstream", upstream.address,
                                   "--health-port", str(health), "--metrics-port", str(metrics_port)])
            _wait_http(cp, f"http://{addr}:{health}/readyz")
            yield cp, addr, port, upstream, metrics_port
    finally:
        upstream.close()


def _wait_http(cp, url):
    proc = cp.procs.get("dns")

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"dns exited {proc.returncode}: {cp.procs.log('dns')}")
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    support.wait_for("dns ready", ready, 30, 0.1, errors=(OSError, httpx.HTTPError))


def run(coro):
    return asyncio.run(coro)


async def _apply(kubeconfig, *objs):
    async with Client.from_kubeconfig(kubeconfig) as c:
        for resource, obj in objs:
            await c.create(resource, obj, namespace=obj["metadata"].get("namespace", "default"))


@pytest.fixture(scope="module")
def objects(cluster):
    cp = cluster[0]
    run(_apply(cp.kubeconfig,
               ("services", {"metadata": {"name": "web"},
                             "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                                      "selector": {"app": "web"}}}),
               ("services", {"metadata": {"name": "db"},
                             "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
               ("endpointslices", {"metadata": {"name": "db-manual",
                                                "labels": {"kubernetes.io/service-name": "db"}},
                                   "addressType": "IPv4",
                                   "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "db-0",
                                                  "conditions": {"ready": True}},
                                                 {"addresses": ["10.244.2.6"], "conditions": {"ready": True}}],
                                   "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
               ("services", {"metadata": {"name": "ext"},
                             "spec": {"type": "ExternalName", "externalName": "example.org"}}),
               ))
    return cluster


def _wait_name(addr, port, name, rdtype="A", timeout=10.0):
    def ok():
        m = query(addr, port, name, rdtype)
        return m if m.rcode() == dns.rcode.NOERROR and m.answer else None
    return support.wait_for(f"{name} resolves", ok, timeout, 0.1)


def _web_ip(cp) -> str:
    async def get():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            return (await c.get("services", "web", namespace="default"))["spec"]["clusterIP"]
    return run(get())


def test_clusterip_a_srv_ptr(objects):
    cp, addr, port, _, _ = objects
    ip = _web_ip(cp)
    m = _wait_name(addr, port, "web.default.svc.cluster.local.")
    assert addresses(m) == [ip] and m.answer[0].ttl == 5
    srv = query(addr, port, "_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert addresses(srv) == ["0 100 80 web.default.svc.cluster.local."]
    ptr = query(addr, port, ".".join(reversed(ip.split("."))) + ".in-addr.arpa.", "PTR")
    assert addresses(ptr) == ["web.default.svc.cluster.local."]


def test_headless_and_endpoint_names(objects):
    _, addr, port, _, _ = objects
    m = _wait_name(addr, port, "db.default.svc.cluster.local.")
    assert addresses(m) == ["10.244.1.5", "10.244.2.6"]
    assert addresses(query(addr, port, "db-0.db.default.svc.cluster.local.")) == ["10.244.1.5"]
    srv = query(addr, port, "_pg._tcp.db.default.svc.cluster.local.", "SRV")
    assert addresses(srv) == ["0 50 5432 10-244-2-6.db.default.svc.cluster.local.",
                              "0 50 5432 db-0.db.default.svc.cluster.local."]
    assert addresses(query(addr, port, "5.1.244.10.in-addr.arpa.", "PTR")) == ["db-0.db.default.svc.cluster.local."]


def test_externalname_pod_nxdomain_tcp(objects):
    _, addr, port, _, _ = objects
    m = _wait_name(addr, port, "ext.default.svc.cluster.local.", "CNAME")
    assert addresses(m) == ["example.org."]
    a = query(addr, port, "ext.default.svc.cluster.local.")  # CNAME + the target's A from the upstream
    assert addresses(a) == ["192.0.2.77", "example.org."]
    assert addresses(query(addr, port, "10-244-7-9.default.pod.cluster.local.")) == ["10.244.7.9"]
    nx = query(addr, port, "missing.default.svc.cluster.local.")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    aaaa = query(addr, port, "web.default.svc.cluster.local.", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    t = query(addr, port, "web.default.svc.cluster.local.", tcp=True)
    assert len(addresses(t)) == 1


def test_forwarding_to_fake_upstream(objects):
    _, addr, port, upstream, _ = objects
    m = query(addr, port, "example.org.")
    assert addresses(m) == ["192.0.2.77"] and "example.org." in upstream.seen
    assert addresses(query(addr, port, "example.org.", tcp=True)) == ["192.0.2.77"]


def test_delete_gives_nxdomain_within_2s(objects):
    cp, addr, port, _, _ = objects
    run(_apply(cp.kubeconfig, ("services", {"metadata": {"name": "gone"},
                                            "spec": {"ports": [{"name": "http", "port": 80}]}})))
    _wait_name(addr, port, "gone.default.svc.cluster.local.")

    async def delete():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            await c.delete("services", "gone", namespace="default")
    run(delete())
    start = time.monotonic()
    support.wait_for("gone is NXDOMAIN", lambda: query(addr, port, "gone.default.svc.cluster.local.").rcode()
                     == dns.rcode.NXDOMAIN, 2.0, 0.05)
    assert time.monotonic() - start < 2.0


def test_kube_dns_objects_registered(objects):
    cp, addr, port, _, metrics_port = objects

    async def get():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            out = {}
            for res, name in (("services", "kube-dns"), ("endpoints", "kube-dns"),
                              ("endpointslices", "kube-dns-kubeling")):
                out[res] = await c.get(res, name, namespace="kube-system")
            return out
    objs = support.wait_for("kube-dns objects", lambda: _try(lambda: run(get())), 15, 0.2)
    svc = objs["services"]
    assert svc["spec"]["clusterIP"] == "10.96.0.10" and not svc["spec"].get("selector")
    assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == \
        {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    sub = objs["endpoints"]["subsets"][0]
    assert sub["addresses"][0]["ip"] == addr
    assert {(p["name"], p["port"]) for p in sub["ports"]} == {("dns", port), ("dns-tcp", port),
                                                              ("metrics", metrics_port)}
    es = objs["endpointslices"]
    assert es["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert es["endpoints"][0]["addresses"] == [addr] and es["endpoints"][0]["conditions"]["ready"] is True
    # the DNS answers for itself, and serves CoreDNS-named metrics
    assert addresses(_wait_name(addr, port, "kube-dns.kube-system.svc.cluster.local.")) == ["10.96.0.10"]
    text = httpx.get(f"http://{addr}:{metrics_port}/metrics", timeout=5, trust_env=False).text
    assert "coredns_dns_requests_total" in text and "coredns_dns_request_duration_seconds_bucket" in text


def test_kube_dns_objects_come_back_after_delete(objects):
    cp = objects[0]

    async def delete():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            await c.delete("endpointslices", "kube-dns-kubeling", namespace="kube-system")
            await c.delete("services", "kube-dns", namespace="kube-system")

    async def get():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            svc = await c.get("services", "kube-dns", namespace="kube-system")
            await c.get("endpointslices", "kube-dns-kubeling", namespace="kube-system")
            return svc
    run(delete())
    svc = support.wait_for("kube-dns back", lambda: _try(lambda: run(get())), 15, 0.2)
    assert svc["spec"]["clusterIP"] == "10.96.0.10"


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - not there yet
        return None


def test_restart_converges_and_bad_flags(objects, tmp_path):
    cp, addr, port, upstream, metrics_port = objects
    # a second server on the same port cannot bind: one readable line, non-zero exit
    r = subprocess.run([sys.executable, "-m", "addons.dns", "--kubeconfig", str(cp.kubeconfig),
                        "--bind-address", addr, "--port", str(port), "--upstream", upstream.address,
                        "--health-port", "0", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=30, cwd=support.REPO)
    assert r.returncode != 0 and "cannot listen for DNS" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "addons.dns", "--kubeconfig", str(cp.kubeconfig),
                        "--bind-address", "nope", "--upstream", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=30, cwd=support.REPO)
    assert r.returncode != 0 and "--bind-address" in r.stderr and "Traceback" not in r.stderr
    # restart: the registration converges (no error in the log, objects unchanged)
    cp.procs.stop("dns")
    health = support.free_port()
    cp.procs.spawn("dns", [sys.executable, "-m", "addons.dns", "--kubeconfig", str(cp.kubeconfig),
                           "--bind-address", addr, "--port", str(port), "--upstream", upstream.address,
                           "--health-port", str(health), "--metrics-port", str(metrics_port)])
    _wait_http(cp, f"http://{addr}:{health}/readyz")
    support.wait_for("registration logged", lambda: "EndpointSlice kube-system/kube-dns-kubeling unchanged"
                     in cp.procs.log("dns", 20000), 15, 0.2)
    assert addresses(query(addr, port, "web.default.svc.cluster.local.")) == [_web_ip(cp)]
