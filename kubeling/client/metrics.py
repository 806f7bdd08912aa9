"""client-go's REST client metrics for every component's calls to the apiserver.

Why a module of its own: the metrics sit in an httpx transport wrapped
around the Client's connection pool, so every request (watches, streams and
plain calls alike) is counted once without touching the call sites.

Mirrors client-go's ``tools/metrics`` as registered by component-base
(``rest_client_requests_total{code,method,host}`` and
``rest_client_request_duration_seconds{verb,host}`` with its buckets). A
request that gets no answer is counted with code ``<error>``, as client-go
does. The duration ends when the response headers arrive, so a long watch is
observed as the time to start it, never as its lifetime.

Also client-go's leader election gauge, leader_election_master_status{name},
read at scrape time from the electors that registered.
"""
from __future__ import annotations

import time

import httpx
import prometheus_client
from prometheus_client.core import GaugeMetricFamily

from kubeling.client import netbackend
from kubeling.metrics import Watched

REQUESTS = prometheus_client.Counter(
    "rest_client_requests_total", "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"])
DURATION = prometheus_client.Histogram(
    "rest_client_request_duration_seconds", "Request latency in seconds. Broken down by verb, and host.",
    ["verb", "host"], buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0))


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """An httpx transport recording rest_client_* metrics around ``inner`` (the real transport).

    Re-raises whatever ``inner`` raises (httpx.TransportError ...), after counting it as ``<error>``.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii", "replace")
        start = time.perf_counter()
        code = "<error>"
        try:
            response = await self.inner.handle_async_request(request)
            code = str(response.status_code)
            return response
        finally:
            REQUESTS.labels(code, request.method, host).inc()
            DURATION.labels(request.method, host).observe(time.perf_counter() - start)

    async def aclose(self) -> None:
        await self.inner.aclose()


def transport(**kwargs) -> InstrumentedTransport:
    """An instrumented ``httpx.AsyncHTTPTransport(**kwargs)`` (e.g. ``verify=ssl_context``) on the
    asyncio network backend (netbackend.py)."""
    return InstrumentedTransport(netbackend.transport(**kwargs))


def _leader_status(electors: list):
    """leader_election_master_status{name}: 1 while a watched LeaderElector leads, else 0 (client-go's
    leaderelection metrics; ``name`` is the lock's name, e.g. kube-controller-manager)."""
    fam = GaugeMetricFamily("leader_election_master_status", "Gauge of if the reporting system is master of "
                            "the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string "
                            "used to identify the lease. Please make sure to group by name.", labels=["name"])
    status: dict[str, int] = {}
    for e in electors:
        name = getattr(e.lock, "name", "") or e.lock.describe()
        status[name] = max(status.get(name, 0), 1 if e.leading.is_set() else 0)
    for name, v in sorted(status.items()):
        fam.add_metric([name], v)
    return [fam]


_ELECTORS = Watched(_leader_status)


def watch_elector(elector) -> None:
    """Report ``elector`` (a LeaderElector) in leader_election_master_status."""
    _ELECTORS.add(elector)
