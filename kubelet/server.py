"""The kubelet's HTTP API: /healthz, /pods, /containerLogs, /metrics, /stats/summary, /metrics/resource.

The apiserver proxies ``GET pods/NAME/log`` here (to the node's
daemonEndpoints.kubeletEndpoint.Port), and operators read /pods and
/metrics directly. Mirrors pkg/kubelet/server/server.go
(InstallDefaultHandlers, InstallDebuggingHandlers: getContainerLogs) and
the log options of kubelet_pods.go GetContainerLogs.

Served over HTTPS when --tls-cert-file/--tls-private-key-file are given (plain HTTP
otherwise, kubeling's default); --client-ca-file verifies client certificates (the
apiserver's apiserver-kubelet-client) and ``--anonymous-auth=false`` refuses requests
without one with 401, as upstream's kubelet authenticator (x509 only; no webhook
authorization: a verified certificate is allowed everything).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Protocol

import prometheus_client
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from kubelet.exec import install_exec_handlers
from kubelet.portforward import install_portforward_handlers
from kubelet.logs import parse_timestamp, read_logs
from kubelet.stats import SummaryProvider, resource_metrics
from kubeling.pki import serving as tls_serving

log = logging.getLogger(__name__)


class HostInterface(Protocol):
    """What the server needs from the kubelet (mirrors server.HostInterface)."""

    def healthy(self) -> bool:
        """True while the kubelet is healthy (backs /healthz)."""

    def list_pods(self) -> list[dict]:
        """The pods bound to this node, as API objects (backs /pods)."""

    def find_pod(self, namespace: str, name: str) -> dict | None:
        """The pod ``namespace/name`` if it is bound to this node, else None."""

    async def container_log_file(self, pod: dict, container: str, *, previous: bool) -> tuple[str, str]:
        """(log file path, container id); raises LookupError with a message."""

    async def container_running(self, container_id: str) -> bool:
        """True while the container ``container_id`` runs (ends a followed log stream)."""


def _bool(v: str | None, name: str) -> bool:
    if v is None or v == "":
        return False
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise ValueError(f"{name}: expected true or false, got {v!r}")


def _int(v: str | None, name: str) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {v!r}") from None


def build_app(host: HostInterface) -> FastAPI:
    """The FastAPI app serving the kubelet API for ``host``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> Response:
        """GET /healthz: "ok", or 503 "unhealthy"."""
        if host.healthy():
            return PlainTextResponse("ok")
        return PlainTextResponse("unhealthy", status_code=503)

    @app.get("/pods")
    def pods() -> Response:
        """GET /pods: a v1 PodList of the pods bound to this node."""
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                             "items": host.list_pods()})

    @app.get("/metrics")
    def metrics() -> Response:
        """GET /metrics: Prometheus text exposition of this process's metrics."""
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    @app.get("/containerLogs/{namespace}/{pod_name}/{container}")
    async def container_logs(namespace: str, pod_name: str, container: str, request: Request) -> Response:
        """GET /containerLogs/{namespace}/{pod}/{container}?follow&previous&timestamps&tailLines&limitBytes:
        the container's log as text (streamed when following); 400 for a bad query, 404 for an unknown pod/container.
        """
        q = request.query_params
        try:
            follow = _bool(q.get("follow"), "follow")
            previous = _bool(q.get("previous"), "previous")
            timestamps = _bool(q.get("timestamps"), "timestamps")
            tail = _int(q.get("tailLines"), "tailLines")
            limit = _int(q.get("limitBytes"), "limitBytes")
            since = _since(q.get("sinceSeconds"), q.get("sinceTime"))
        except ValueError as e:
            return PlainTextResponse(str(e), status_code=400)
        pod = host.find_pod(namespace, pod_name)
        if pod is None:
            return PlainTextResponse(f'pod "{pod_name}" in namespace "{namespace}" not found on this node',
                                     status_code=404)
        try:
            path, cid = await host.container_log_file(pod, container, previous=previous)
        except LookupError as e:
            return PlainTextResponse(str(e.args[0] if e.args else e), status_code=404)

        async def running() -> bool:
            return await host.container_running(cid)
        try:
            stream = read_logs(path, follow=follow, tail=tail, timestamps=timestamps,
                               still_running=running, since=since)
            first = await anext(stream, b"")
        except FileNotFoundError:
            if follow:
                return PlainTextResponse(f'log file of container "{container}" not found', status_code=404)
            return PlainTextResponse("")

        async def body():
            sent = 0
            chunk = first
            while True:
                if limit is not None:
                    chunk = chunk[:max(limit - sent, 0)]
                if chunk:
                    sent += len(chunk)
                    yield chunk
                if limit is not None and sent >= limit:
                    break
                nxt = await anext(stream, None)
                if nxt is None:
                    break
                chunk = nxt
            await stream.aclose()
        return StreamingResponse(body(), media_type="text/plain")

    install_stats_handlers(app, host)
    install_exec_handlers(app, host)
    install_portforward_handlers(app, host)
    return app


def _since(seconds: str | None, when: str | None) -> datetime.datetime | None:
    """The earliest log time asked by sinceSeconds (> 0) or sinceTime (RFC3339); ValueError when bad."""
    n = _int(seconds, "sinceSeconds")
    if n is not None:
        if n <= 0:
            raise ValueError("sinceSeconds: must be greater than 0")
        return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=n)
    if when:
        try:
            return parse_timestamp(when)
        except ValueError:
            raise ValueError(f"sinceTime: invalid RFC3339 time {when!r}") from None
    return None


def install_stats_handlers(app: FastAPI, host) -> None:
    """GET /stats/summary (Summary JSON) and /metrics/resource (Prometheus text), from the host's CRI
    runtime (``host.runtime``) and pods; 503 with the error text while the runtime does not answer.
    Mirrors server.go InstallDefaultHandlers' stats and resource metrics endpoints."""
    runtime = getattr(host, "runtime", None)
    config = getattr(host, "config", None)
    if runtime is None:
        return
    provider = SummaryProvider(runtime, node_name=getattr(config, "node_name", ""), pods=host.list_pods)

    async def summary() -> dict | Response:
        try:
            return await provider.summary()
        except Exception as e:  # runtime down or answering garbage: the caller gets a reason, not a traceback
            log.warning("stats summary failed: %s", e)
            return PlainTextResponse(f"failed to get stats: {e}", status_code=503)

    @app.get("/stats/summary")
    async def stats_summary() -> Response:
        """GET /stats/summary: the node's Summary (stats/v1alpha1): node and per-pod/container cpu, memory."""
        s = await summary()
        return s if isinstance(s, Response) else JSONResponse(s)

    @app.get("/metrics/resource")
    async def metrics_resource() -> Response:
        """GET /metrics/resource: node/pod/container cpu and working-set memory as Prometheus text."""
        s = await summary()
        if isinstance(s, Response):
            return s
        return PlainTextResponse(resource_metrics(s), media_type="text/plain; version=0.0.4")


@dataclasses.dataclass(frozen=True)
class ServingTLS:
    """The kubelet's serving TLS (file paths; kubelet's --tls-cert-file, --tls-private-key-file,
    --client-ca-file, --anonymous-auth)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    anonymous_auth: bool = True


class RequireClientCert:
    """ASGI middleware: 401 for requests whose connection carried no verified client certificate
    (upstream's kubelet with --anonymous-auth=false and only the x509 authenticator)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            tls = (scope.get("extensions") or {}).get("tls") or {}
            if not tls.get("client_cert_chain"):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await PlainTextResponse("Unauthorized", status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def serve(app: FastAPI, host: str, port: int, *, tls: ServingTLS | None = None) -> None:
    """Serve ``app`` on host:port until cancelled; HTTPS when ``tls`` is given."""
    kwargs = {}
    if tls is not None:
        kwargs = tls_serving.uvicorn_tls_kwargs(cert_file=tls.cert_file, key_file=tls.key_file,
                                                client_ca_file=tls.client_ca_file)
        if not tls.anonymous_auth:
            app = RequireClientCert(app)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", **kwargs)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the daemon's run() owns signals
    await server.serve()
