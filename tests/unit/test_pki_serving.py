"""kubeling.pki.serving: HTTPS with optional client certificates, and the ASGI TLS extension hook.

A real uvicorn server in this process, real TLS handshakes from httpx and websockets clients.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

import support
from kubeling import pki
from kubeling.pki import certs, serving


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    pki.ensure(d, nodes=["node1"])
    return d


async def scope_echo(scope, receive, send):
    """ASGI app answering with what the TLS extension says (http) or echoing it over a websocket."""
    tls = (scope.get("extensions") or {}).get("tls")
    body = repr(None if tls is None else (tls["client_cert_name"], len(tls["client_cert_chain"]),
                                          tls["client_cert_chain"][:1], tls["tls_version"])).encode()
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close"})


@contextlib.asynccontextmanager
async def server(pki_dir, *, client_ca: bool = True, tls: bool = True):
    port = support.free_port()
    kwargs = serving.uvicorn_tls_kwargs(cert_file=str(pki_dir / "apiserver.crt") if tls else None,
                                        key_file=str(pki_dir / "apiserver.key") if tls else None,
                                        client_ca_file=str(pki_dir / "ca.crt") if client_ca else None)
    srv = uvicorn.Server(uvicorn.Config(scope_echo, host="127.0.0.1", port=port, log_level="error",
                                        lifespan="off", **kwargs))
    srv.install_signal_handlers = lambda: None
    task = asyncio.create_task(srv.serve())
    try:
        async with asyncio.timeout(10):
            while not srv.started:
                await asyncio.sleep(0.02)
        yield port
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


def client_ctx(pki_dir, cert: str | None = "admin", *, ca: str = "ca.crt") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki_dir / ca))
    if cert:
        ctx.load_cert_chain(str(pki_dir / f"{cert}.crt"), str(pki_dir / f"{cert}.key"))
    return ctx


async def get(port: int, ctx) -> str:
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=5) as c:
        return (await c.get(f"https://127.0.0.1:{port}/")).text


async def test_client_cert_reaches_the_app(pki_dir):
    """A verified client certificate arrives as scope["extensions"]["tls"]: subject, leaf PEM, TLS version."""
    async with server(pki_dir) as port:
        name, n, chain, version = eval(await get(port, client_ctx(pki_dir, "admin")))  # noqa: S307 - our repr
    assert name == "CN=kubernetes-admin,O=system:masters"
    assert n == 1 and chain[0] == (pki_dir / "admin.crt").read_text()
    assert version in (0x0303, 0x0304)


async def test_no_client_cert_is_allowed_and_empty(pki_dir):
    """Client certificates are optional (as kube-apiserver): without one the chain is empty."""
    async with server(pki_dir) as port:
        assert eval(await get(port, client_ctx(pki_dir, None)))[:2] == (None, 0)  # noqa: S307


async def test_cert_from_another_ca_fails_the_handshake(pki_dir, tmp_path):
    """A client certificate not signed by --client-ca-file: the handshake fails, the app never runs."""
    ca, ca_key = certs.new_ca("intruder-ca")
    spec = next(s for s in pki.cert_specs() if s.name == "admin")
    certs.write_cert_and_key(tmp_path / "evil", *certs.new_signed_cert(spec, ca, ca_key))
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(tmp_path / "evil.crt"), str(tmp_path / "evil.key"))
    async with server(pki_dir) as port:
        with pytest.raises(httpx.HTTPError):
            await get(port, ctx)


async def test_wrong_server_ca_fails(pki_dir):
    """A client trusting another CA (etcd's) refuses the server's certificate."""
    async with server(pki_dir) as port:
        with pytest.raises(httpx.ConnectError):
            await get(port, client_ctx(pki_dir, None, ca="etcd/ca.crt"))


async def test_websocket_scope_has_the_extension(pki_dir):
    """The websocket protocol (exec upgrades) gets the same extension."""
    async with server(pki_dir) as port:
        async with asyncio.timeout(10):
            async with connect(f"wss://127.0.0.1:{port}/", ssl=client_ctx(pki_dir, "nodes/node1/kubelet-client"),
                               proxy=None) as ws:
                name = eval(await ws.recv())[0]  # noqa: S307
    assert name == "CN=system:node:node1,O=system:nodes"


async def test_plain_http_by_default(pki_dir):
    """Without a certificate: no TLS kwargs, plain HTTP, no extension in the scope."""
    assert serving.uvicorn_tls_kwargs(cert_file=None, key_file=None) == {}
    async with server(pki_dir, tls=False) as port:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as c:
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "None"
    with pytest.raises(ValueError):
        serving.uvicorn_tls_kwargs(cert_file="x.crt", key_file=None)
