"""Serving DNS over UDP and TCP on asyncio, with a cache of wire answers.

The server plays CoreDNS's dnsserver + plugin chain (kubernetes, then
forward) with a cache in front. Unlike CoreDNS's cache plugin (keyed by
name/type, TTL-bound), this cache is keyed by the query's bytes after the
2-byte ID (flags, question, EDNS record: everything that shapes the answer),
holds the encoded answer, and is invalidated by informer events, so an
answer is never staler than the caches the plugin reads. Invalidation is
scoped: an event for Service or EndpointSlice of ``ns/name`` drops the
answers for names under ``name.ns.svc`` (positive and negative), those for
``ns.svc`` / ``ns.pod``, every PTR answer and every answer that followed an
in-zone CNAME; answers no object can change (pod names, names outside
``svc``) stay, SOA serial included. So endpoint churn in one Service does not
empty the cache of every other name. A hit costs one
dict lookup and one ``sendto`` of ``id + cached bytes``; only misses parse
with dnslib. Forwarded answers are not cached (the upstream's TTLs are
the upstream's business).

One ``asyncio.DatagramProtocol`` serves UDP; ``asyncio.start_server``
serves TCP (RFC 7766 framing, several queries per connection, idle timeout).
Cluster names are answered synchronously inside the callback; only
forwarding awaits.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSError, DNSHeader, DNSQuestion, DNSRecord

from addons.dns import metrics
from addons.dns.forward import Forwarder
from addons.dns.kubernetes import Kubernetes

log = logging.getLogger(__name__)

UDP_DEFAULT_SIZE = 512
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay quiet (CoreDNS's idle timeout)
DEFAULT_CACHE_SIZE = 10000


class CachedAnswer:
    """One encoded answer without its ID: ``udp`` (truncated with TC when it
    exceeds the client's UDP size), ``tcp`` (whole), and the metric observers."""

    __slots__ = ("udp", "tcp", "udp_obs", "tcp_obs", "denial")

    def __init__(self, udp: bytes, tcp: bytes, udp_obs: metrics.Observer, tcp_obs: metrics.Observer,
                 denial: bool = False):
        self.udp, self.tcp, self.udp_obs, self.tcp_obs = udp, tcp, udp_obs, tcp_obs
        self.denial = denial


class Pending:
    """An answer of the plugin that needs an upstream lookup first (``result.chase``)."""

    __slots__ = ("result",)

    def __init__(self, result):
        self.result = result


class DNSServer:
    """Answers wire queries: cluster names from ``plugin`` (cached), the rest via ``forwarder``.

    ``server`` is the metric label (``dns://ADDR:PORT``); ``cache_size`` bounds
    the answer cache (0 turns it off, for measuring what it saves).
    """

    def __init__(self, plugin: Kubernetes, forwarder: Forwarder, *, server: str = "dns://:53",
                 cache_size: int = DEFAULT_CACHE_SIZE):
        self.plugin = plugin
        self.forwarder = forwarder
        self.server = server
        self.cache_size = cache_size
        self.cache: dict[bytes, CachedAnswer] = {}
        self.groups: dict[tuple, list[bytes]] = {}  # Answer.deps -> cache keys depending on it
        self._tasks: set[asyncio.Task] = set()
        self.transports: list = []
        self._tcp_servers: list[asyncio.base_events.Server] = []
        # Counted at scrape time only, so the hot path stays a dict lookup.
        metrics.CACHE_ENTRIES.labels(server, "denial").set_function(
            lambda: sum(1 for e in list(self.cache.values()) if e.denial))
        metrics.CACHE_ENTRIES.labels(server, "success").set_function(
            lambda: sum(1 for e in list(self.cache.values()) if not e.denial))

    def clear_cache(self) -> None:
        """Drop every cached answer."""
        self.cache.clear()
        self.groups.clear()

    def invalidate(self, keys: list[tuple[str, str]]) -> None:
        """Drop the cached answers that may change with Services ``keys`` [(namespace, name)]
        (the plugin's ``on_change``); see the module docstring for the scope."""
        doomed = [("ptr",), ("global",)]
        for ns, name in keys:
            doomed += [("svc", ns, name), ("ns", ns)]
        cache = self.cache
        for dep in doomed:
            for key in self.groups.pop(dep, ()):
                cache.pop(key, None)

    # ------------------------------------------------------------------ answering

    def _observer(self, proto: str, family: str, qtype: int, rcode: int, zone: str, plugin: str,
                  cache_type: str | None = None) -> metrics.Observer:
        return metrics.observer(self.server, zone, proto, family, QTYPE.get(qtype, "other"),
                                RCODE.get(rcode, str(rcode)), plugin, cache_type)

    def answer_local(self, data: bytes, family: str) -> tuple[CachedAnswer | Pending | None, DNSRecord | None]:
        """Resolve a query that missed the cache. Returns (answer, request): an answer
        (cached when it came from the plugin), (Pending, request) when an ExternalName
        must be followed upstream (``answer_chased``), (None, request) when the query must
        be forwarded, (None, None) for bytes that are not a DNS query (dropped)."""
        try:
            request = DNSRecord.parse(data)
        except (DNSError, IndexError, ValueError, struct.error):
            return self._formerr(data, family), None
        if request.header.qr:
            return None, None  # a response, not a query: never answer it (loops)
        if request.header.opcode != OPCODE.QUERY or len(request.questions) != 1:
            rcode = RCODE.NOTIMP if request.header.opcode != OPCODE.QUERY else RCODE.FORMERR
            return self._error(request, rcode, family, "."), request
        q = request.questions[0]
        result = self.plugin.resolve(str(q.qname), q.qtype)
        if result is None:
            return None, request
        if result.chase:
            return Pending(result), request  # an ExternalName to follow upstream: not cacheable
        udp, tcp = self._encode(request, result)
        cache_type = "denial" if result.rcode == RCODE.NXDOMAIN or not result.answer else "success"
        entry = CachedAnswer(udp[2:], tcp[2:],
                             self._observer("udp", family, q.qtype, result.rcode, result.zone, "kubernetes",
                                            cache_type),
                             self._observer("tcp", family, q.qtype, result.rcode, result.zone, "kubernetes",
                                            cache_type), cache_type == "denial")
        if self.cache_size > 0 and result.rcode != RCODE.SERVFAIL:
            if len(self.cache) >= self.cache_size:
                self.clear_cache()  # full (a flood of distinct names): start over, keeps groups bounded
            key = data[2:]
            self.cache[key] = entry
            self.groups.setdefault(result.deps, []).append(key)
            metrics.CACHE_MISSES.labels(self.server).inc()
        return entry, request

    @staticmethod
    def _encode(request: DNSRecord, result) -> tuple[bytes, bytes]:
        """(UDP wire, TCP wire) of the reply carrying ``result`` (an Answer)."""
        reply = request.reply(ra=1, aa=1)
        reply.header.ad = 0  # nothing here is DNSSEC-validated (dnslib copies the query's AD bit)
        reply.header.rcode = result.rcode
        for rr in result.answer:
            reply.add_answer(rr)
        for rr in result.authority:
            reply.add_auth(rr)
        for rr in result.additional:
            reply.add_ar(rr)
        limit = _udp_size(request)
        if limit > UDP_DEFAULT_SIZE:
            reply.add_ar(EDNS0(udp_len=limit))
        tcp = reply.pack()
        return (tcp if len(tcp) <= limit else _truncated(reply)), tcp

    async def answer_chased(self, request: DNSRecord, pending: "Pending", proto: str, family: str,
                            start: float) -> bytes:
        """The ExternalName's CNAME plus the target's records from upstream (the CNAME
        alone when the upstream fails), as CoreDNS's kubernetes plugin answers."""
        result = pending.result
        q = request.questions[0]
        upstream = await self.forwarder.forward(DNSRecord(q=DNSQuestion(result.chase, q.qtype)).pack())
        if upstream is not None:
            try:
                result.answer = result.answer + DNSRecord.parse(upstream).rr
            except (DNSError, IndexError, ValueError, struct.error):
                pass
        udp, tcp = self._encode(request, result)
        self._observer(proto, family, q.qtype, result.rcode, result.zone, "kubernetes").observe(start)
        return udp if proto == "udp" else tcp

    def _error(self, request: DNSRecord, rcode: int, family: str, zone: str) -> CachedAnswer:
        reply = request.reply(ra=1, aa=0)
        reply.header.ad = 0
        reply.header.rcode = rcode
        wire = reply.pack()[2:]
        qtype = request.questions[0].qtype if request.questions else 0
        return CachedAnswer(wire, wire, self._observer("udp", family, qtype, rcode, zone, ""),
                            self._observer("tcp", family, qtype, rcode, zone, ""))

    def _formerr(self, data: bytes, family: str) -> CachedAnswer | None:
        if len(data) < 12 or data[2] & 0x80:
            return None
        # Header only: QR set, opcode and RD copied, RCODE FORMERR, no records.
        flags = bytes([0x80 | (data[2] & 0x79), 0x80 | RCODE.FORMERR])
        wire = flags + b"\x00" * 8
        return CachedAnswer(wire, wire, self._observer("udp", family, 0, RCODE.FORMERR, ".", ""),
                            self._observer("tcp", family, 0, RCODE.FORMERR, ".", ""))

    async def answer_forwarded(self, data: bytes, request: DNSRecord, proto: str, family: str,
                               start: float) -> bytes:
        """The upstream's answer to ``data`` or a SERVFAIL (REFUSED when too many forwards run)."""
        qtype = request.questions[0].qtype if request.questions else 0
        if self.forwarder.saturated:
            err = self._error(request, RCODE.REFUSED, family, ".")
            (err.udp_obs if proto == "udp" else err.tcp_obs).observe(start)
            return data[:2] + err.udp
        answer = await self.forwarder.forward(data)
        if answer is None:
            err = self._error(request, RCODE.SERVFAIL, family, ".")
            (err.udp_obs if proto == "udp" else err.tcp_obs).observe(start)
            return data[:2] + err.udp
        rcode = answer[3] & 0x0F if len(answer) > 3 else RCODE.SERVFAIL
        self._observer(proto, family, qtype, rcode, ".", "forward").observe(start)
        return answer

    def spawn(self, coro) -> None:
        """Run ``coro`` as a task kept alive until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ transports

    async def start(self, host: str, port: int) -> None:
        """Listen on UDP and TCP ``host:port``. Raises OSError when either cannot bind."""
        loop = asyncio.get_running_loop()
        family = "2" if ":" in host else "1"
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self, family),
                                                           local_addr=(host, port))
        self.transports.append(transport)
        try:
            tcp = await asyncio.start_server(lambda r, w: self._tcp_client(r, w, family), host, port,
                                             reuse_address=True)
        except OSError:
            transport.close()
            raise
        self._tcp_servers.append(tcp)

    async def close(self) -> None:
        """Stop listening and cancel forwards in flight."""
        for t in self.transports:
            t.close()
        for s in self._tcp_servers:
            s.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, family: str) -> None:
        try:
            for _ in range(100_000):  # bounded: a client gets at most this many queries per connection
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (length,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                start = time.perf_counter()
                entry = self.cache.get(data[2:])
                if entry is not None:
                    out = data[:2] + entry.tcp
                    entry.tcp_obs.observe(start, hit=True)
                else:
                    entry, request = self.answer_local(data, family)
                    if isinstance(entry, Pending):
                        out = await self.answer_chased(request, entry, "tcp", family, start)
                    elif entry is not None:
                        out = data[:2] + entry.tcp
                        entry.tcp_obs.observe(start)
                    elif request is not None:
                        out = await self.answer_forwarded(data, request, "tcp", family, start)
                    else:
                        return
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, family: str):
        self.server = server
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        start = time.perf_counter()
        server = self.server
        entry = server.cache.get(data[2:])
        if entry is not None:  # the hot path: no parsing at all
            self.transport.sendto(data[:2] + entry.udp, addr)
            entry.udp_obs.observe(start, hit=True)
            return
        entry, request = server.answer_local(data, self.family)
        if isinstance(entry, Pending):
            server.spawn(self._forward(data, request, addr, start, entry))
        elif entry is not None:
            self.transport.sendto(data[:2] + entry.udp, addr)
            entry.udp_obs.observe(start)
        elif request is not None:
            server.spawn(self._forward(data, request, addr, start))

    async def _forward(self, data: bytes, request: DNSRecord, addr, start: float,
                       pending: Pending | None = None) -> None:
        if pending is not None:
            out = await self.server.answer_chased(request, pending, "udp", self.family, start)
        else:
            out = await self.server.answer_forwarded(data, request, "udp", self.family, start)
        if len(out) > _udp_size(request):
            # An answer fetched over TCP can exceed what the client takes over UDP: it asks again over TCP.
            try:
                out = _truncated(DNSRecord.parse(out))
            except (DNSError, IndexError, ValueError, struct.error):
                out = _truncated(request.reply())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %r", exc)


def _udp_size(request: DNSRecord) -> int:
    """The client's UDP payload limit: its EDNS0 size (at least 512), else 512 (RFC 6891)."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_DEFAULT_SIZE, min(int(rr.rclass), 65535))
    return UDP_DEFAULT_SIZE


def _truncated(reply: DNSRecord) -> bytes:
    """The header (TC set) and question of ``reply``: the client asks again over TCP."""
    return DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1),
                     questions=reply.questions).pack()
