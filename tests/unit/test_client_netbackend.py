"""kubeling/client/netbackend.py: httpx over the asyncio backend, against a real loopback server."""
import asyncio

import httpx
import pytest

from kubeling.client import netbackend


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def test_pool_uses_the_asyncio_backend():
    t = netbackend.transport()
    assert isinstance(t._pool._network_backend, netbackend.AsyncioBackend)


async def test_keepalive_reuse_stream_and_server_close():
    conns = []

    async def handler(reader, writer):
        conns.append(writer)
        try:
            while True:
                head = await read_request(reader)
                if b"GET /stream" in head:
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(3):
                        line = f"line{i}\n".encode()
                        writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                        await writer.drain()
                        await asyncio.sleep(0.05)
                    writer.write(b"0\r\n\r\n")
                elif b"GET /bye" in head:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
                    await writer.drain()
                    writer.close()  # the server drops the idle keep-alive connection
                    return
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    server, port = await serve(handler)
    async with server, httpx.AsyncClient(transport=netbackend.transport(), base_url=f"http://127.0.0.1:{port}") as c:
        assert [(await c.get("/")).text for _ in range(3)] == ["ok"] * 3
        assert len(conns) == 1  # kept alive
        async with c.stream("GET", "/stream") as r:
            assert [line async for line in r.aiter_lines()] == ["line0", "line1", "line2"]
        assert (await c.get("/bye")).text == "bye"
        await asyncio.sleep(0.1)
        assert (await c.get("/")).text == "ok"  # the closed one was noticed: a new connection, no error
        assert len(conns) == 2


async def test_read_timeout_and_connect_error():
    async def silent(reader, writer):
        await read_request(reader)
        await asyncio.sleep(2)
        writer.close()
    server, port = await serve(silent)
    async with server, httpx.AsyncClient(transport=netbackend.transport()) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{port}/", timeout=0.2)
    async with httpx.AsyncClient(transport=netbackend.transport()) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/")  # the server is gone


async def test_large_body_flow_control():
    body = b"x" * (3 * 1024 * 1024)

    async def big(reader, writer):
        await read_request(reader)
        assert await reader.readexactly(len(body)) == body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()
    server, port = await serve(big)
    async with server, httpx.AsyncClient(transport=netbackend.transport()) as c:
        assert (await c.post(f"http://127.0.0.1:{port}/", content=body)).content == body
