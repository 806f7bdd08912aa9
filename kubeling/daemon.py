"""What every kubeling daemon shares: logging, signal handling, and the
/healthz + /metrics HTTP endpoint upstream components serve.

Logs are one logfmt line per event (``ts=... level=info component=kubelet
logger=kubelet.kubelet msg="..." pod=default/web-1``), see kubeling.klog.

Mirrors the small common layer of kube-scheduler / kube-controller-manager /
kube-proxy (component-base): a health endpoint that says ``ok`` once the
component has synced, and Prometheus metrics from prometheus-client.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

import prometheus_client
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from kubeling import klog

# Upstream components expose no ``*_created`` series; prometheus-client adds one per counter and
# histogram unless told not to (every component imports this module before it serves /metrics).
prometheus_client.disable_created_metrics()


def setup_logging(component: str, *, verbose: bool = False, level: int | str | None = None) -> None:
    """Log one logfmt line per event on stderr (kubeling.klog's format: ts, level, component, logger,
    msg, then object keys such as ``pod=default/web-1``); the launcher redirects each process's stderr
    to ``.cluster/logs/<name>.log``. ``level`` (a logging level or its name) overrides ``verbose``."""
    if level is None:
        level = logging.DEBUG if verbose else logging.INFO
    klog.setup(component, level=level)


def health_app(healthy: Callable[[], bool]) -> FastAPI:
    """A FastAPI app with /healthz, /livez, /readyz (``ok`` or 503) and /metrics."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def check() -> Response:
        if healthy():
            return PlainTextResponse("ok")
        return PlainTextResponse("not ready", status_code=503)

    for path in ("/healthz", "/livez", "/readyz"):
        app.add_api_route(path, check, methods=["GET"])

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(prometheus_client.generate_latest(),
                        media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return app


async def serve_health(host: str, port: int, healthy: Callable[[], bool]) -> None:
    """Serve ``health_app`` on host:port until cancelled."""
    config = uvicorn.Config(health_app(healthy), host=host, port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the daemon's run() owns signals
    await server.serve()


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on a fresh event loop; SIGTERM/SIGINT set ``stop``.

    ``main`` should return soon after ``stop`` is set (graceful shutdown);
    the process exits 0 then.
    """
    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(wrapper())


async def run_until_stopped(stop: asyncio.Event, *aws: Awaitable) -> None:
    """Run the coroutines as tasks until ``stop`` is set or one of them fails,
    then cancel the rest. A task that returns normally (a one-off set-up step)
    just ends; re-raises the exception of a task that failed."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        pending = {*tasks, stopper}
        while stopper in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
    finally:
        for t in [*tasks, stopper]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
