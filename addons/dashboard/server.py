"""The dashboard's HTTP server: the page, login, a read-only apiserver proxy and a live event stream.

Mirrors kubernetes/dashboard's backend (modules/api): the browser holds a
bearer token and sends it on every call (``Authorization: Bearer ...``); the
backend builds a client for the apiserver *with that token* for each request
(upstream's client manager does the same with the token from its JWE/header),
so the apiserver's authn/authz decide what each user sees. Without a token,
requests use the ``--kubeconfig`` identity only when ``--enable-skip-login``
is set (upstream's flag); otherwise they get 401 and the page shows its login.

Routes (besides /healthz /livez /readyz /metrics from kubeling.daemon):
  GET /                         the single-page app (static/index.html)
  GET /static/...               app.js, app.css
  GET /api/v1/settings          {"skippable": bool, "metricsInterval": seconds}
  GET /api/v1/login/status      {"user": name, "groups": [...]} of the presented identity (401 if refused)
  GET /api/proxy/<path>?<query> GET <apiserver>/<path> as the user, streamed back (logs with follow=true too)
  GET /api/stream[?namespace=NS] Server-Sent Events: per watched resource a ``sync`` event (the full
                                list) then ``watch`` events from a watch as the user; ``denied`` when
                                the apiserver refuses a resource (403); ``unreachable`` while the apiserver
                                cannot be reached (a new ``sync`` follows when it can); ``: ping`` comments
                                keep it open.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import AsyncIterator

import httpx
import prometheus_client
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from kubeling import daemon
from kubeling.api import resources as res
from kubeling.client import ApiError, Client
from kubeling.client.kubeconfig import ClusterConfig

log = logging.getLogger("addons.dashboard")

STATIC = Path(__file__).parent / "static"

# What the page shows live: (name used on the wire, resource); all namespaces.
WATCHED: tuple[str, ...] = ("namespaces", "nodes", "deployments", "replicasets", "pods", "services",
                             "endpointslices", "events")
# A watch is re-opened (after a relist) at least this often, as client-go's reflector does.
WATCH_TIMEOUT_S = 300
HEARTBEAT_S = 15.0
# Reconnect backoff after the apiserver could not be reached (seconds, doubling).
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 5.0
# Paths the proxy forwards: the API groups only (never the apiserver's debug or health paths).
PROXY_PREFIXES = ("api/", "apis/")

STREAMS = prometheus_client.Gauge("dashboard_streams", "Browser event streams open now")
PROXY_REQUESTS = prometheus_client.Counter("dashboard_proxy_requests_total",
                                           "Requests proxied to the apiserver by answer code", ["code"])


class Unauthorized(Exception):
    """The request carries no token and skip-login is off, or the apiserver refused the token."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The dashboard's configuration: ``base`` is the --kubeconfig identity and apiserver;
    ``skip_login`` is --enable-skip-login; ``metrics_interval`` the page's sampling period (s)."""

    base: ClusterConfig
    skip_login: bool = False
    metrics_interval: float = 5.0


def identity(settings: Settings, request: Request) -> ClusterConfig:
    """The apiserver identity to use for ``request``: its bearer token (with the kubeconfig's server
    and CA, never its client certificate), else the kubeconfig's own identity when skip-login is on.
    Raises Unauthorized otherwise."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return dataclasses.replace(settings.base, token=token, client_cert_file=None, client_key_file=None)
    if settings.skip_login:
        return settings.base
    raise Unauthorized("log in with a bearer token (the dashboard was started without --enable-skip-login)")


def slim(obj: dict) -> dict:
    """``obj`` without metadata.managedFields and the last-applied annotation (large, never shown)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    ann = meta.get("annotations")
    if ann and "kubectl.kubernetes.io/last-applied-configuration" in ann:
        meta["annotations"] = {k: v for k, v in ann.items()
                               if k != "kubectl.kubernetes.io/last-applied-configuration"}
    return {**obj, "metadata": meta}


def sse(event: str | None, data: dict) -> bytes:
    """One Server-Sent Events message (``event:`` line when named, one ``data:`` line of JSON)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def whoami(client: Client) -> dict:
    """``{"user", "groups"}`` from a SelfSubjectReview (``kubectl auth whoami``) as ``client``.
    ``user`` is None when the apiserver does not serve the review. Raises Unauthorized on 401."""
    try:
        review = await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                      body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except ApiError as e:
        if e.code == 401:
            raise Unauthorized(e.message) from None
        return {"user": None, "groups": []}
    info = review.get("status", {}).get("userInfo", {})
    return {"user": info.get("username"), "groups": info.get("groups") or []}


async def follow(client: Client, name: str, queue: asyncio.Queue, *, namespace: str | None = None) -> None:
    """List then watch ``name`` (in ``namespace``, all when None) as ``client`` forever, putting SSE
    messages on ``queue``.

    Mirrors client-go's reflector: a ``sync`` message with the full list, then one ``watch``
    message per event from that list's resourceVersion; a watch that times out is re-opened
    from the last resourceVersion seen, one that expires (ERROR, 410 Gone) relists. A 401/403
    puts one ``denied`` message and ends; other errors back off and relist.
    """
    resource = res.for_name(name)
    ns = namespace if resource.namespaced else None
    backoff = BACKOFF_START_S
    rv = None
    while True:
        try:
            if rv is None:
                listed = await client.list(resource, namespace=ns)
                rv = listed.get("metadata", {}).get("resourceVersion")
                await queue.put(sse("sync", {"resource": name, "items": [slim(o) for o in listed.get("items", [])]}))
                backoff = BACKOFF_START_S
            opened = asyncio.get_running_loop().time()
            async for etype, obj in client.watch(resource, namespace=ns, resource_version=rv,
                                                 timeout_seconds=WATCH_TIMEOUT_S):
                if etype == "ERROR":
                    rv = None  # usually 410 Gone: relist
                    break
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if etype != "BOOKMARK":
                    await queue.put(sse("watch", {"resource": name, "type": etype, "object": slim(obj)}))
            if asyncio.get_running_loop().time() - opened < 1.0:
                await asyncio.sleep(backoff)  # a watch closed at once: do not spin on a confused server
        except ApiError as e:
            if e.code in (401, 403):
                await queue.put(sse("denied", {"resource": name, "code": e.code, "message": e.message}))
                return
            log.info("watch %s: %s; relisting", name, e)
            rv = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        except (httpx.HTTPError, ValueError) as e:
            log.info("watch %s: %s; relisting", name, e)
            if isinstance(e, httpx.TransportError):
                await queue.put(sse("unreachable", {"resource": name, "message": str(e) or type(e).__name__}))
            rv = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)


async def event_stream(client: Client, *, namespace: str | None = None) -> AsyncIterator[bytes]:
    """The SSE body for one browser: every WATCHED resource (namespaced ones in ``namespace``
    when given) followed as ``client``, merged, with a ping comment every HEARTBEAT_S seconds
    (a closed browser is noticed at the next write)."""
    queue: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(follow(client, name, queue, namespace=namespace)) for name in WATCHED]
    STREAMS.inc()
    try:
        yield b"retry: 2000\n\n"
        while True:
            try:
                yield await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                yield b": ping\n\n"
    finally:
        STREAMS.dec()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


async def until_closing(closing: asyncio.Event, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of ``body`` until it ends or ``closing`` is set (the server is stopping: open
    streams end at once instead of holding up uvicorn's graceful shutdown). Closes ``body``."""
    stopping = asyncio.ensure_future(closing.wait())
    try:
        while True:
            chunk = asyncio.ensure_future(anext(body))
            await asyncio.wait({chunk, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not chunk.done():
                chunk.cancel()
                await asyncio.gather(chunk, return_exceptions=True)
                return
            try:
                yield chunk.result()
            except StopAsyncIteration:
                return
    finally:
        stopping.cancel()
        await body.aclose()


def create_app(settings: Settings) -> FastAPI:
    """The dashboard's FastAPI app for ``settings`` (health and metrics routes included).
    Setting ``app.state.closing`` ends every open stream (event streams, followed logs)."""
    app = daemon.health_app(lambda: True)
    app.state.closing = closing = asyncio.Event()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Unauthorized)
    async def unauthorized(_request: Request, exc: Unauthorized) -> Response:
        return JSONResponse({"message": str(exc)}, status_code=401)

    @app.get("/")
    async def index() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/v1/settings")
    async def get_settings() -> dict:
        return {"skippable": settings.skip_login, "metricsInterval": settings.metrics_interval}

    @app.get("/api/v1/login/status")
    async def login_status(request: Request) -> dict:
        async with Client(identity(settings, request), user_agent="kubeling-dashboard") as client:
            try:
                return await whoami(client)
            except httpx.HTTPError as e:
                return JSONResponse({"message": f"apiserver unreachable: {e}"}, status_code=502)

    @app.get("/api/proxy/{path:path}")
    async def proxy(path: str, request: Request) -> Response:
        if not path.startswith(PROXY_PREFIXES):
            return JSONResponse({"message": f"/{path} is not an API path"}, status_code=404)
        cfg = identity(settings, request)
        kwargs = cfg.httpx_kwargs()
        headers = {"User-Agent": "kubeling-dashboard", **kwargs.pop("headers", {})}
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), headers=headers, **kwargs)
        try:
            params = list(request.query_params.multi_items())
            upstream = await http.send(http.build_request("GET", "/" + path, params=params), stream=True)
        except httpx.HTTPError as e:
            await http.aclose()
            PROXY_REQUESTS.labels("502").inc()
            return JSONResponse({"message": f"apiserver unreachable: {e}"}, status_code=502)
        PROXY_REQUESTS.labels(str(upstream.status_code)).inc()

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_bytes():
                    yield chunk
            except httpx.HTTPError:
                pass  # the apiserver closed a follow stream: the browser sees the end
            finally:
                await upstream.aclose()
                await http.aclose()
        return StreamingResponse(until_closing(closing, body()), status_code=upstream.status_code,
                                 media_type=upstream.headers.get("content-type", "application/json"),
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/stream")
    async def stream(request: Request) -> Response:
        client = Client(identity(settings, request), user_agent="kubeling-dashboard")
        try:
            await whoami(client)  # a refused token is a 401 here, before the stream starts
        except httpx.HTTPError as e:
            await client.close()
            return JSONResponse({"message": f"apiserver unreachable: {e}"}, status_code=502)
        except Unauthorized:
            await client.close()
            raise
        namespace = request.query_params.get("namespace") or None
        return StreamingResponse(until_closing(closing, event_stream(client, namespace=namespace)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return app

