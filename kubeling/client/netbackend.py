"""An asyncio network backend for httpcore, under every component's apiserver client.

Why a module of its own: httpx's default backend goes through anyio, and
httpcore's connection pool asks every pooled connection, on every request it
places and every response it closes, whether the server hung up
(``get_extra_info("is_readable")``). Through anyio that is a getpeername and
a poll system call per connection per check: with a scheduler's 16 binding
connections plus its watches it was a third of the scheduler's CPU per pod
(bench/scheduler_scale.py --profile-scheduler). Here a connection is an
asyncio Protocol that buffers what arrives, so "readable" is a look at the
buffer, and reads and writes are plain callbacks, with no task-group or
cancel-scope machinery around each one.

httpcore's ``AsyncNetworkBackend`` / ``AsyncNetworkStream`` interface is
implemented as documented (connect_tcp, connect_unix_socket, sleep; read,
write, aclose, start_tls, get_extra_info), with its exceptions (ConnectError,
ConnectTimeout, ReadError, ReadTimeout, WriteError, WriteTimeout).
``transport(**kwargs)`` gives an httpx.AsyncHTTPTransport whose pool uses it.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import typing

import httpcore
import httpx

HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops being read (flow control)


class _Protocol(asyncio.Protocol):
    """Collects received bytes; wakes one waiting reader; tracks write flow control."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.read_waiter: asyncio.Future | None = None
        self.write_waiter: asyncio.Future | None = None
        self.paused_reading = False
        self.paused_writing = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        w, self.write_waiter = self.write_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        w, self.write_waiter = self.write_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_reader(self) -> None:
        w, self.read_waiter = self.read_waiter, None
        if w is not None and not w.done():
            w.set_result(None)


_TIMED_OUT = object()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(_TIMED_OUT)


async def _wait(fut: asyncio.Future, timeout: float | None, error: type[Exception]) -> None:
    """Await ``fut`` (set by the protocol); ``error`` after ``timeout`` seconds. A timer handle, not
    asyncio.wait_for: this runs for every read that has to wait."""
    if timeout is None:
        await fut
        return
    handle = fut.get_loop().call_later(timeout, _expire, fut)
    try:
        if await fut is _TIMED_OUT:
            raise error(f"timed out after {timeout} s")
    finally:
        handle.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (TCP or unix socket, optionally TLS) as httpcore's AsyncNetworkStream."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` received bytes; b"" at end of stream. Raises ReadTimeout, ReadError."""
        p = self._protocol
        while not p.buffer:
            if p.eof:
                if p.error is not None:
                    raise httpcore.ReadError(str(p.error) or type(p.error).__name__)
                return b""
            p.read_waiter = p.loop.create_future()
            await _wait(p.read_waiter, timeout, httpcore.ReadTimeout)
        data = bytes(p.buffer[:max_bytes])
        del p.buffer[:max_bytes]
        if p.paused_reading and len(p.buffer) < HIGH_WATER // 2:
            p.paused_reading = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send ``buffer`` (waits while the transport is over its high-water mark). Raises WriteError,
        WriteTimeout."""
        p = self._protocol
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        while p.paused_writing and not self._transport.is_closing():
            p.write_waiter = p.loop.create_future()
            await _wait(p.write_waiter, timeout, httpcore.WriteTimeout)
        if p.error is not None:
            raise httpcore.WriteError(str(p.error) or type(p.error).__name__)

    async def aclose(self) -> None:
        """Close the connection (no wait for the peer)."""
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> "AsyncioStream":
        """Upgrade to TLS in place (asyncio's start_tls). Raises ConnectTimeout, ConnectError."""
        loop = self._protocol.loop
        try:
            tls = await asyncio.wait_for(loop.start_tls(self._transport, self._protocol, ssl_context,
                                                        server_hostname=server_hostname), timeout)
        except asyncio.TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake timed out after {timeout} s") from None
        except (OSError, ssl.SSLError, ConnectionError) as e:
            self._transport.close()
            raise httpcore.ConnectError(str(e)) from None
        self._protocol.transport = tls
        return AsyncioStream(tls, self._protocol)

    def get_extra_info(self, info: str) -> typing.Any:
        """``ssl_object``, ``client_addr``, ``server_addr``, ``socket``, ``is_readable`` (bytes or the
        peer's close waiting: the pool's test for a server-closed idle connection)."""
        if info == "is_readable":
            return bool(self._protocol.buffer) or self._protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AsyncNetworkBackend on asyncio Protocols (see the module docstring)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> AsyncioStream:
        """Connect (TCP_NODELAY set). Raises ConnectTimeout, ConnectError."""
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        stream = await self._connect(lambda: loop.create_connection(lambda: _Protocol(loop), host, port,
                                                                    local_addr=local), timeout)
        sock = stream.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options=None) -> AsyncioStream:
        """Connect to a unix socket. Raises ConnectTimeout, ConnectError."""
        loop = asyncio.get_running_loop()
        return await self._connect(lambda: loop.create_unix_connection(lambda: _Protocol(loop), path), timeout)

    @staticmethod
    async def _connect(make, timeout: float | None) -> AsyncioStream:
        try:
            transport, protocol = await asyncio.wait_for(make(), timeout)
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout} s") from None
        except (OSError, socket.gaierror) as e:
            raise httpcore.ConnectError(str(e)) from None
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def transport(**kwargs) -> httpx.AsyncHTTPTransport:
    """``httpx.AsyncHTTPTransport(**kwargs)`` whose connection pool uses AsyncioBackend.

    httpx takes no network backend, so it is set on the pool it built, before any connection
    exists; an httpx that no longer keeps a plain httpcore pool there keeps its own backend."""
    t = httpx.AsyncHTTPTransport(**kwargs)
    pool = getattr(t, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = AsyncioBackend()
    return t
