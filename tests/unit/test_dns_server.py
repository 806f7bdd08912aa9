"""The DNS server's wire path (addons.dns.server) on loopback sockets inside one test:
cache hits patch the ID, the cache is dropped on change, truncation, forwarding
to a fake upstream, SERVFAIL when the upstream is silent, FORMERR on junk."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from addons.dns.forward import Forwarder
from addons.dns.kubernetes import Kubernetes
from addons.dns.server import DNSServer


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream(asyncio.DatagramProtocol):
    """Answers every A query with 192.0.2.99 (or nothing when ``silent``)."""

    def __init__(self, silent=False):
        self.silent = silent
        self.seen = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = DNSRecord.parse(data)
        self.seen.append(str(q.q.qname))
        if self.silent:
            return
        r = q.reply()
        r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.99")))
        self.transport.sendto(r.pack(), addr)


async def ask(port, name, qtype="A", *, tcp=False, qid=None, timeout=3.0) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if qid is not None:
        q.header.id = qid
    data = q.pack()
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(struct.pack("!H", len(data)) + data)
        (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))
        out = await reader.readexactly(n)
        writer.close()
        return DNSRecord.parse(out)
    fut = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, a):
            if not fut.done():
                fut.set_result(d)
    t, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
    try:
        t.sendto(data)
        return DNSRecord.parse(await asyncio.wait_for(fut, timeout))
    finally:
        t.close()


@pytest.fixture
async def dns():
    loop = asyncio.get_running_loop()
    up_port = _free_udp_port()
    upstream = FakeUpstream()
    up_t, _ = await loop.create_datagram_endpoint(lambda: upstream, local_addr=("127.0.0.1", up_port))
    server = None
    k = Kubernetes(on_change=lambda keys: server and server.invalidate(keys))
    server = DNSServer(k, Forwarder([("127.0.0.1", up_port)], timeout=0.5))
    for attempt in range(20):  # the UDP port may be taken for TCP (other tests run at once): try another
        port = _free_udp_port()
        try:
            await server.start("127.0.0.1", port)
            break
        except OSError:
            if attempt == 19:
                raise
    k.upsert_service({"metadata": {"name": "web", "namespace": "default"},
                      "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}})
    try:
        yield k, server, port, upstream
    finally:
        await server.close()
        up_t.close()


async def test_cache_hit_patches_id_and_change_drops_cache(dns):
    k, server, port, _ = dns
    a = await ask(port, "web.default.svc.cluster.local", qid=1111)
    assert a.header.id == 1111 and str(a.a.rdata) == "10.96.0.20" and a.header.aa
    assert len(server.cache) == 1
    b = await ask(port, "web.default.svc.cluster.local", qid=2222)
    assert b.header.id == 2222 and str(b.a.rdata) == "10.96.0.20"
    k.upsert_service({"metadata": {"name": "web", "namespace": "default"},
                      "spec": {"clusterIP": "10.96.0.21", "ports": [{"name": "http", "port": 80}]}})
    assert server.cache == {}
    c = await ask(port, "web.default.svc.cluster.local")
    assert str(c.a.rdata) == "10.96.0.21"


async def test_nxdomain_and_tcp(dns):
    _, _, port, _ = dns
    a = await ask(port, "missing.default.svc.cluster.local")
    assert a.header.rcode == RCODE.NXDOMAIN and a.auth[0].rtype == QTYPE.SOA
    b = await ask(port, "web.default.svc.cluster.local", tcp=True)
    assert str(b.a.rdata) == "10.96.0.20"


async def test_forward_and_servfail(dns):
    _, server, port, upstream = dns
    a = await ask(port, "example.org")
    assert str(a.a.rdata) == "192.0.2.99" and upstream.seen == ["example.org."]
    assert server.cache == {}  # forwarded answers are not cached
    b = await ask(port, "example.org", tcp=True)
    assert str(b.a.rdata) == "192.0.2.99"
    upstream.silent = True
    c = await ask(port, "example.net")
    assert c.header.rcode == RCODE.SERVFAIL


async def test_truncation_over_udp(dns):
    k, _, port, _ = dns
    eps = [{"addresses": [f"10.244.{i // 200}.{i % 200 + 1}"], "conditions": {"ready": True}} for i in range(60)]
    k.upsert_service({"metadata": {"name": "big", "namespace": "default"},
                      "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    k.upsert_endpointslice({"metadata": {"name": "big-1", "namespace": "default",
                                         "labels": {"kubernetes.io/service-name": "big"}},
                            "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "http", "port": 80}]})
    a = await ask(port, "big.default.svc.cluster.local")
    assert a.header.tc and not a.rr and str(a.q.qname) == "big.default.svc.cluster.local."
    b = await ask(port, "big.default.svc.cluster.local", tcp=True)
    assert len(b.rr) == 60


async def test_junk_gets_formerr(dns):
    _, _, port, _ = dns
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, a):
            fut.set_result(d)
    t, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
    try:
        t.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff")
        out = await asyncio.wait_for(fut, 3)
    finally:
        t.close()
    assert out[:2] == b"\x12\x34" and out[3] & 0x0F == RCODE.FORMERR and out[2] & 0x80


async def test_external_name_target_asked_upstream(dns):
    k, server, port, upstream = dns
    k.upsert_service({"metadata": {"name": "ext", "namespace": "default"},
                      "spec": {"type": "ExternalName", "externalName": "example.org"}})
    for tcp in (False, True):
        a = await ask(port, "ext.default.svc.cluster.local", tcp=tcp)
        assert [(rr.rtype, str(rr.rdata)) for rr in a.rr] == [(QTYPE.CNAME, "example.org."), (QTYPE.A, "192.0.2.99")]
    assert "example.org." in upstream.seen and server.cache == {}


async def test_invalidation_is_scoped_to_the_changed_service(dns):
    k, server, port, _ = dns
    k.upsert_service({"metadata": {"name": "other", "namespace": "default"},
                      "spec": {"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}})
    for name in ("web.default.svc.cluster.local", "other.default.svc.cluster.local",
                 "web2.default.svc.cluster.local", "10-244-0-1.default.pod.cluster.local"):
        await ask(port, name)
    await ask(port, "20.0.96.10.in-addr.arpa", "PTR")
    assert len(server.cache) == 5
    # endpoints of "other" change: web's answer, the pod answer and web2's NXDOMAIN stay
    k.upsert_endpointslice({"metadata": {"name": "other-1", "namespace": "default",
                                         "labels": {"kubernetes.io/service-name": "other"}},
                            "addressType": "IPv4", "endpoints": [], "ports": []})
    names = {bytes(key) for key in server.cache}
    assert len(server.cache) == 3 and not any(b"other" in key for key in names)
    # web2 appears: its cached NXDOMAIN goes and the next answer is positive
    k.upsert_service({"metadata": {"name": "web2", "namespace": "default"},
                      "spec": {"clusterIP": "10.96.0.40", "ports": [{"name": "http", "port": 80}]}})
    assert len(server.cache) == 2
    a = await ask(port, "web2.default.svc.cluster.local")
    assert a.header.rcode == RCODE.NOERROR and str(a.a.rdata) == "10.96.0.40"
