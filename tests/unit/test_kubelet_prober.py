"""Probe handlers against local servers on 127.0.0.1 (pkg/probe http/tcp semantics)."""
import asyncio

import pytest

from kubelet.prober import resolve_port, run_probe


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def http_handler(reader, writer):
    line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    code = b"200 OK" if b" /ok " in line else b"500 Internal Server Error"
    writer.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_http_and_tcp_probes():
    server, port = await serve(http_handler)
    async with server:
        ok = await run_probe({"httpGet": {"path": "/ok", "port": port}}, {}, runtime=None,
                             container_id="c", pod_ip="127.0.0.1")
        bad = await run_probe({"httpGet": {"path": "/bad", "port": "web"}},
                              {"ports": [{"name": "web", "containerPort": port}]}, runtime=None,
                              container_id="c", pod_ip="127.0.0.1")
        tcp = await run_probe({"tcpSocket": {"port": port}}, {}, runtime=None, container_id="c",
                              pod_ip="127.0.0.1")
    assert ok.ok and not bad.ok and "500" in bad.message and tcp.ok
    closed = await run_probe({"tcpSocket": {"port": port}}, {}, runtime=None, container_id="c",
                             pod_ip="127.0.0.1")
    assert not closed.ok


def test_resolve_port():
    c = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(80, c) == 80 and resolve_port("81", c) == 81 and resolve_port("http", c) == 8080
    with pytest.raises(ValueError):
        resolve_port("nope", c)
