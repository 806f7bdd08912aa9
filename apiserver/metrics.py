"""Prometheus metrics of the apiserver under upstream's names, and its /metrics endpoint.

Why a module of its own: the request metrics are an ASGI middleware wrapped
around the whole app (so every answer is counted, 401s and 404s included),
and the storage metrics wrap the etcd client, so neither the handlers nor the
storage layer carry metric code.

Mirrors k8s.io/apiserver's ``pkg/endpoints/metrics`` (apiserver_request_total,
apiserver_request_duration_seconds, apiserver_request_sli_duration_seconds,
apiserver_current_inflight_requests, apiserver_longrunning_requests), its
``pkg/storage/etcd3/metrics`` (etcd_request_duration_seconds,
etcd_request_errors_total) and ``apiserver_storage_objects`` (1.32 name).

Long-running requests (WATCH, CONNECT: exec/attach/portforward/proxy, and
log follows) are counted and observed only when they end and are labelled by
their verb, as upstream does; they are left out of the inflight gauge and of
the SLI histogram, so a 30-minute watch never shows up as a slow request there.
"""
from __future__ import annotations

import time
import weakref
from urllib.parse import parse_qsl

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from apiserver.handlers import parse_request_info

COMPONENT = "apiserver"

# Upstream exposes no ``*_created`` series (prometheus-client adds one per counter/histogram otherwise).
prometheus_client.disable_created_metrics()

# Upstream's buckets (k8s.io/apiserver pkg/endpoints/metrics, 1.32).
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
SLI_BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
ETCD_BUCKETS = REQUEST_BUCKETS

_LABELS = ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"]

REQUEST_TOTAL = prometheus_client.Counter(
    "apiserver_request_total",
    "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, "
    "component, and HTTP response code.", _LABELS + ["code"])
REQUEST_DURATION = prometheus_client.Histogram(
    "apiserver_request_duration_seconds",
    "Response latency distribution in seconds for each verb, dry run value, group, version, resource, "
    "subresource, scope and component.", _LABELS, buckets=REQUEST_BUCKETS)
REQUEST_SLI_DURATION = prometheus_client.Histogram(
    "apiserver_request_sli_duration_seconds",
    "Response latency distribution (not counting webhook duration and priority & fairness queue wait times) "
    "in seconds for each verb, group, version, resource, subresource, scope and component; long-running "
    "requests are not observed.", [l for l in _LABELS if l != "dry_run"], buckets=SLI_BUCKETS)
INFLIGHT = prometheus_client.Gauge(
    "apiserver_current_inflight_requests",
    "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
    ["request_kind"])
LONGRUNNING = prometheus_client.Gauge(
    "apiserver_longrunning_requests",
    "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope "
    "and component. Not all requests are tracked this way.",
    ["verb", "group", "version", "resource", "subresource", "scope", "component"])
ETCD_DURATION = prometheus_client.Histogram(
    "etcd_request_duration_seconds", "Etcd request latency in seconds for each operation and object type.",
    ["operation", "type"], buckets=ETCD_BUCKETS)
ETCD_ERRORS = prometheus_client.Counter(
    "etcd_request_errors_total", "Etcd failed request counts for each operation and object type.",
    ["operation", "type"])

INFLIGHT.labels("readOnly").set(0)
INFLIGHT.labels("mutating").set(0)

_READ_ONLY = frozenset({"GET", "LIST", "WATCH"})
_LONG_RUNNING_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
# Non-resource paths reported by name; anything else is "other" so a scan of random paths cannot
# blow up the label set.
_NON_RESOURCE = ("/healthz", "/livez", "/readyz", "/metrics", "/version", "/openapi/v2", "/openapi/v3",
                 "/.well-known/openid-configuration", "/openid/v1/jwks")


def request_labels(method: str, path: str, query_string: bytes, *, content_type: str = "",
                   websocket: bool = False) -> tuple[tuple[str, ...], bool]:
    """The upstream metric labels of a request and whether it is long-running.

    Returns ``((verb, dry_run, group, version, resource, subresource, scope, component), long_running)``.
    ``verb`` is upstream's reported verb: GET, LIST, WATCH, POST, PUT, PATCH, APPLY (server-side apply
    patches), DELETE, CONNECT (websockets: exec/attach/portforward). ``scope`` is ``resource`` (a named
    object), ``namespace`` or ``cluster``; empty for non-resource paths, whose path is the subresource
    (as upstream reports /healthz, /readyz ...). Mirrors pkg/endpoints/metrics CanonicalVerb/cleanVerb.
    """
    query = dict(parse_qsl(query_string.decode("latin-1"))) if query_string else {}
    try:
        info = parse_request_info(method, path, query)
    except Exception:  # a malformed resource path (404 later): still counted, as "other"
        info = None
    dry_run = "All" if query.get("dryRun") == "All" else ""
    if info is None:
        verb = "CONNECT" if websocket else method
        if path in _NON_RESOURCE:
            sub = path
        elif path.startswith("/openapi/v3/"):
            sub = "/openapi/v3"
        elif path.startswith("/api") and path.count("/") <= 3:  # discovery documents
            sub = path.rstrip("/") or "/"
        else:
            sub = "other"
        return (verb, dry_run, "", "", "", sub, "", COMPONENT), verb in ("WATCH", "CONNECT")
    sub = info.subresource or ""
    scope = "resource" if info.name else ("namespace" if info.namespace else "cluster")
    if websocket or sub in ("exec", "attach", "portforward"):
        verb = "CONNECT"
    elif info.verb == "watch":
        verb = "WATCH"
    elif info.verb == "list":
        verb = "LIST"
    elif method == "PATCH" and content_type.startswith("application/apply-patch"):
        verb = "APPLY"
    else:
        verb = method
    long_running = verb in ("WATCH", "CONNECT") or sub in _LONG_RUNNING_SUBRESOURCES or (
        sub == "log" and query.get("follow") in ("true", "1"))
    return (verb, dry_run, info.group, info.version, info.resource, sub, scope, COMPONENT), long_running


class RequestMetrics:
    """ASGI middleware recording apiserver_request_total / _duration_seconds / inflight for every request.

    Wrap the whole app with it (outermost). The code is the status of the response start (101 for an
    accepted websocket, 500 when the app raised before answering). Mirrors upstream's
    WithRequestInfo + InstrumentRouteFunc + MonitorRequest.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = kind == "websocket"
        content_type = ""
        if scope.get("method") == "PATCH":
            for k, v in scope.get("headers") or ():
                if k == b"content-type":
                    content_type = v.decode("latin-1")
                    break
        method, path, qs = scope.get("method", "GET"), scope["path"], scope.get("query_string", b"")
        ck = (method, path, qs, content_type, websocket)
        found = _LABELS_CACHE.get(ck)
        if found is None:
            if len(_LABELS_CACHE) >= MAX_LABEL_SETS:
                _LABELS_CACHE.clear()
            found = _LABELS_CACHE[ck] = request_labels(method, path, qs, content_type=content_type,
                                                       websocket=websocket)
        labels, long_running = found
        code = 101 if websocket else 500
        children = _CHILDREN.get((labels, long_running))
        if children is None:
            if len(_CHILDREN) >= MAX_LABEL_SETS:  # e.g. a scan of made-up resource paths
                labels = (labels[0], labels[1], "", "", "other", "", "", COMPONENT)
                children = _CHILDREN.get((labels, long_running))
            if children is None:
                children = _children(labels, long_running)
        duration, sli, gauge, totals = children
        start = time.perf_counter()
        gauge.inc()

        async def send_wrapper(message) -> None:
            nonlocal code
            t = message["type"]
            if t == "http.response.start":
                code = message["status"]
            elif t == "websocket.close" and message.get("code") == 4003:
                code = 403
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            gauge.dec()
            if sli is not None:
                sli.observe(elapsed)
            total = totals.get(code)
            if total is None:
                total = totals[code] = REQUEST_TOTAL.labels(*labels, str(code))
            total.inc()
            duration.observe(elapsed)


# (labels, long-running) -> (duration child, SLI child or None, inflight or long-running gauge child, {code: counter child}):
# prometheus-client's labels() costs microseconds per call, a dict lookup does not. Bounded by the
# label sets a server sees (verbs x resources x scopes), as the metrics themselves are.
_CHILDREN: dict[tuple, tuple] = {}
MAX_LABEL_SETS = 4096
# (method, path, query, content type, websocket) -> request_labels(...): the same requests come again and
# again (lease renewals, status patches, informer relists); cleared when it grows past MAX_LABEL_SETS.
_LABELS_CACHE: dict[tuple, tuple] = {}


def _children(labels: tuple, long_running: bool) -> tuple:
    short = (labels[0], *labels[2:])  # without dry_run
    if long_running:
        gauge, sli = LONGRUNNING.labels(*short), None
    else:
        gauge = INFLIGHT.labels("readOnly" if labels[0] in _READ_ONLY else "mutating")
        sli = REQUEST_SLI_DURATION.labels(*short)
    children = (REQUEST_DURATION.labels(*labels), sli, gauge, {})
    _CHILDREN[(labels, long_running)] = children
    return children


class _StorageObjects:
    """Collector of apiserver_storage_objects{resource}: the objects each watch cache holds, read at
    scrape time (upstream counts keys in etcd once a minute; the cache mirrors them)."""

    def __init__(self) -> None:
        self.server = None  # weakref to the APIServer installed last (tests build many in one process)

    def collect(self):
        fam = GaugeMetricFamily("apiserver_storage_objects", "Number of stored objects at the time of last "
                                "check split by kind.", labels=["resource"])
        server = self.server() if self.server is not None else None
        if server is not None:
            for store in list(server.stores.values()):
                fam.add_metric([group_resource(store.info)], len(store.cacher.items))
        yield fam

    def describe(self):
        return [GaugeMetricFamily("apiserver_storage_objects", "", labels=["resource"])]


_STORAGE_OBJECTS = _StorageObjects()
prometheus_client.REGISTRY.register(_STORAGE_OBJECTS)


def group_resource(info) -> str:
    """``pods`` or ``deployments.apps``: upstream's schema.GroupResource string."""
    return f"{info.resource}.{info.group}" if info.group else info.resource


def instrument_storage(etcd, infos) -> None:
    """Wrap ``etcd``'s (an Etcd3Store) request methods to record etcd_request_duration_seconds
    {operation, type} and etcd_request_errors_total; ``type`` is the group-resource whose key prefix
    the key falls under (``unknown`` otherwise). Idempotent."""
    if getattr(etcd, "_metrics_instrumented", False):
        return
    types: dict[str, str] = {}
    for info in infos:
        types[info.storage_prefix] = group_resource(info)

    def type_of(key: str) -> str:
        parts = key.split("/", 4)  # "", "registry", a, b, rest
        if len(parts) >= 4:
            t = types.get(f"{parts[2]}/{parts[3]}") or types.get(parts[2])
            if t:
                return t
        elif len(parts) == 3:
            return types.get(parts[2], "unknown")
        return "unknown"

    for method, operation in (("get", "get"), ("list", "list"), ("keys", "list"), ("create", "create"),
                              ("update", "update"), ("delete", "delete")):
        orig = getattr(etcd, method, None)
        if orig is None:
            continue

        def wrap(orig=orig, operation=operation):
            async def timed(key, *args, **kwargs):
                start = time.perf_counter()
                t = type_of(key)
                try:
                    return await orig(key, *args, **kwargs)
                except Exception as e:
                    # Expected outcomes (conflicts, not found) are answers, not failed requests.
                    if type(e).__name__ in ("Unavailable", "StorageError"):
                        ETCD_ERRORS.labels(operation, t).inc()
                    raise
                finally:
                    ETCD_DURATION.labels(operation, t).observe(time.perf_counter() - start)
            timed.__doc__ = orig.__doc__
            return timed
        setattr(etcd, method, wrap())
    etcd._metrics_instrumented = True


def install(app, server) -> None:
    """Serve GET /metrics (Prometheus text) on ``app`` and start recording ``server``'s storage metrics.

    Call before the app's catch-all route. /metrics sits behind the authentication filter like any
    non-resource path (upstream: ``system:monitoring`` may read it).
    """
    _STORAGE_OBJECTS.server = weakref.ref(server)
    instrument_storage(server.etcd, [s.info for s in server.stores.values()])

    async def metrics(request: Request) -> Response:
        """GET /metrics: every registered metric in Prometheus text format 0.0.4."""
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"])
