"""Forwarding of names outside the cluster domain to upstream resolvers.

Mirrors CoreDNS's plugin/forward as the default Corefile uses it
(``forward . /etc/resolv.conf``): the query is sent unchanged over UDP to
an upstream; a truncated answer (TC bit) is asked again over TCP; each try
waits at most ``timeout`` seconds (2 s) before the next upstream; when every
upstream failed the caller answers SERVFAIL. Every forwarded query gets its
own UDP socket (a fresh random source port, so answers cannot be confused or
spoofed by ID alone) and at most ``max_concurrent`` run at once (CoreDNS's
``max_concurrent``, 1000 by default).
"""
from __future__ import annotations

import asyncio
import logging
import random
import struct

from addons.dns import metrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
MAX_CONCURRENT = 1000
TC_BIT = 0x02  # in the third byte of the header (QR OPCODE AA TC RD)


def parse_upstream(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); port 53 by default.
    Raises ValueError with a readable message."""
    text = text.strip()
    if text.startswith("dns://"):
        text = text[len("dns://"):]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
    if not host:
        raise ValueError(f"upstream {text!r}: empty host")
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"upstream {text!r}: port {port!r} is not a number") from None
    if not 0 < p < 65536:
        raise ValueError(f"upstream {text!r}: port {p} out of range")
    return host, p


def resolv_conf_nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The ``nameserver`` lines of a resolv.conf as (host, 53) pairs ([] when unreadable)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append((parts[1], 53))
    except OSError:
        return []
    return out


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes, fut: asyncio.Future):
        self.query_id = query_id
        self.fut = fut

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.query_id and not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class Forwarder:
    """Sends queries to ``upstreams`` [(host, port)], trying them in random order
    (CoreDNS's default ``policy random``)."""

    def __init__(self, upstreams: list[tuple[str, int]], *, timeout: float = DEFAULT_TIMEOUT,
                 max_concurrent: int = MAX_CONCURRENT):
        if not upstreams:
            raise ValueError("no upstream resolver (give --upstream HOST:PORT or a nameserver in /etc/resolv.conf)")
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    @property
    def saturated(self) -> bool:
        """True when ``max_concurrent`` forwards are already running (the caller refuses more)."""
        return self.in_flight >= self.max_concurrent

    async def forward(self, query: bytes) -> bytes | None:
        """The upstream's wire answer to ``query`` (wire bytes, same ID), or None when every upstream failed."""
        self.in_flight += 1
        try:
            order = self.upstreams[:]
            random.shuffle(order)
            for host, port in order:
                to = f"{host}:{port}"
                metrics.FORWARD_REQUESTS.labels(to).inc()
                try:
                    answer = await self._udp(query, host, port)
                    if len(answer) > 2 and answer[2] & TC_BIT:
                        answer = await self._tcp(query, host, port)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    log.debug("forward to %s failed: %r", to, e)
                    continue
                metrics.FORWARD_RESPONSES.labels(to, str(answer[3] & 0x0F) if len(answer) > 3 else "?").inc()
                return answer
            return None
        finally:
            self.in_flight -= 1

    async def _udp(self, query: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Reply(query[:2], fut),
                                                           remote_addr=(host, port))
        try:
            transport.sendto(query)
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, query: bytes, host: str, port: int) -> bytes:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(struct.pack("!H", len(query)) + query)
                await writer.drain()
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                return await reader.readexactly(length)
            finally:
                writer.close()
        return await asyncio.wait_for(exchange(), self.timeout)
