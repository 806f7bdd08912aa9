"""Upstream-named metrics recorded in-process: the apiserver's request labels and middleware, the
workqueue's client-go metrics, the REST client's, and the kubelet's PLEG / pod start metrics."""
from __future__ import annotations

import asyncio

import httpx
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from apiserver import bootstrappolicy
from apiserver import metrics as api_metrics
from apiserver.authn import UserInfo
from apiserver.authz import non_resource
from apiserver.authz.rbac import RBACAuthorizer, StaticPolicy
from kubelet import metrics as kubelet_metrics
from kubelet.pleg import GenericPLEG
from kubeling.client import metrics as client_metrics
from kubeling.client.workqueue import WorkQueue
from proto.cri import api_pb2 as pb


def sample(metric: str, **labels) -> float:
    """The current value of one sample in the default registry (0 when absent)."""
    for fam in text_string_to_metric_families(prometheus_client.generate_latest().decode()):
        for s in fam.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_request_labels_follow_upstreams_verbs_and_scopes():
    def labels(method, path, query=b"", **kw):
        (verb, dry_run, group, version, resource, sub, scope, component), long = \
            api_metrics.request_labels(method, path, query, **kw)
        return verb, group, resource, sub, scope, long

    assert labels("GET", "/api/v1/namespaces/default/pods") == ("LIST", "", "pods", "", "namespace", False)
    assert labels("GET", "/api/v1/pods", b"watch=true") == ("WATCH", "", "pods", "", "cluster", True)
    assert labels("GET", "/api/v1/watch/namespaces/d/pods") == ("WATCH", "", "pods", "", "namespace", True)
    assert labels("GET", "/apis/apps/v1/namespaces/d/deployments/web") == \
        ("GET", "apps", "deployments", "", "resource", False)
    assert labels("POST", "/api/v1/namespaces/d/pods") == ("POST", "", "pods", "", "namespace", False)
    assert labels("PUT", "/api/v1/namespaces/d/pods/p/status") == ("PUT", "", "pods", "status", "resource", False)
    assert labels("PATCH", "/api/v1/nodes/n", content_type="application/apply-patch+yaml")[0] == "APPLY"
    assert labels("DELETE", "/api/v1/namespaces/d/pods")[0] == "DELETE"
    assert labels("GET", "/api/v1/namespaces/d/pods/p/exec", websocket=True)[0] == "CONNECT"
    assert labels("GET", "/api/v1/namespaces/d/pods/p/log", b"follow=true")[-1] is True
    assert labels("GET", "/api/v1/namespaces/d/pods/p/log")[-1] is False
    assert labels("GET", "/healthz") == ("GET", "", "", "/healthz", "", False)
    assert labels("GET", "/apis/apps/v1") == ("GET", "", "", "/apis/apps/v1", "", False)
    assert labels("GET", "/random/thing") == ("GET", "", "", "other", "", False)
    assert labels("GET", "/api/v1/a/b/c/d/e/f")[3] == "other"  # malformed: counted, not raised
    assert api_metrics.request_labels("POST", "/api/v1/namespaces/d/pods", b"dryRun=All")[0][1] == "All"


async def test_middleware_counts_code_and_keeps_watches_out_of_inflight():
    async def app(scope, receive, send):
        if "watch=true" in scope["query_string"].decode():
            assert api_metrics.INFLIGHT.labels("readOnly")._value.get() == inflight_before
        await send({"type": "http.response.start", "status": 409, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    inflight_before = api_metrics.INFLIGHT.labels("readOnly")._value.get()
    mw = api_metrics.RequestMetrics(app)
    sel = dict(verb="PUT", resource="secrets", scope="resource", code="409", component="apiserver")
    before = sample("apiserver_request_total", **sel)

    async def send(message):
        pass

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "PUT", "path": "/api/v1/namespaces/d/secrets/s", "query_string": b"",
             "headers": []}
    await mw(scope, receive, send)
    assert sample("apiserver_request_total", **sel) == before + 1
    w = dict(verb="WATCH", resource="secrets", scope="namespace")
    sli_before = sample("apiserver_request_sli_duration_seconds_count", **w)
    await mw({**scope, "method": "GET", "path": "/api/v1/namespaces/d/secrets", "query_string": b"watch=true"},
             receive, send)
    assert sample("apiserver_request_duration_seconds_count", **w) >= 1
    assert sample("apiserver_request_sli_duration_seconds_count", **w) == sli_before == 0


async def test_middleware_counts_a_crash_as_500():
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    sel = dict(verb="GET", resource="limitranges", scope="resource", code="500")
    before = sample("apiserver_request_total", **sel)
    scope = {"type": "http", "method": "GET", "path": "/api/v1/namespaces/d/limitranges/x", "query_string": b"",
             "headers": []}
    try:
        await api_metrics.RequestMetrics(app)(scope, None, None)
    except RuntimeError:
        pass
    assert sample("apiserver_request_total", **sel) == before + 1


async def test_named_workqueue_records_client_go_metrics():
    q = WorkQueue(name="test-metrics-queue")
    q.add("a")
    q.add("a")  # de-duplicated: not an add
    q.add("b")
    assert sample("workqueue_adds_total", name="test-metrics-queue") == 2
    assert sample("workqueue_depth", name="test-metrics-queue") == 2
    key = await q.get()
    await asyncio.sleep(0.01)
    assert sample("workqueue_unfinished_work_seconds", name="test-metrics-queue") > 0
    assert sample("workqueue_longest_running_processor_seconds", name="test-metrics-queue") > 0
    q.add_rate_limited(key)
    q.done(key)
    assert sample("workqueue_retries_total", name="test-metrics-queue") == 1
    assert sample("workqueue_queue_duration_seconds_count", name="test-metrics-queue") == 1
    assert sample("workqueue_work_duration_seconds_count", name="test-metrics-queue") == 1
    assert sample("workqueue_unfinished_work_seconds", name="test-metrics-queue") == 0
    q.shutdown()


async def test_unnamed_workqueue_records_nothing():
    q = WorkQueue()
    q.add("x")
    assert await q.get() == "x"
    q.done("x")
    assert sample("workqueue_adds_total", name="None") == 0


async def test_rest_client_metrics_count_codes_and_errors():
    def handler(request):
        return httpx.Response(404 if request.url.path == "/missing" else 200)

    t = client_metrics.InstrumentedTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=t, base_url="http://api.test:6443") as c:
        before = sample("rest_client_requests_total", code="404", method="GET", host="api.test:6443")
        await c.get("/missing")
        await c.post("/ok")
        assert sample("rest_client_requests_total", code="404", method="GET", host="api.test:6443") == before + 1
        assert sample("rest_client_requests_total", code="200", method="POST", host="api.test:6443") >= 1

    def refuse(request):
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=client_metrics.InstrumentedTransport(httpx.MockTransport(refuse)),
                                 base_url="http://down.test:1") as c:
        try:
            await c.get("/")
        except httpx.ConnectError:
            pass
    assert sample("rest_client_requests_total", code="<error>", method="GET", host="down.test:1") == 1


class FakeRuntime:
    """list_pod_sandbox / list_containers answering a fixed running pod."""

    async def list_pod_sandbox(self):
        return [pb.PodSandbox(id="s1", state=pb.SANDBOX_READY,
                              metadata=pb.PodSandboxMetadata(name="p", namespace="d", uid="u1"),
                              labels={"io.kubernetes.pod.uid": "u1"})]

    async def list_containers(self):
        return [pb.Container(id="c1", pod_sandbox_id="s1", state=pb.CONTAINER_RUNNING,
                             labels={"io.kubernetes.pod.uid": "u1"}),
                pb.Container(id="c2", pod_sandbox_id="s1", state=pb.CONTAINER_EXITED,
                             labels={"io.kubernetes.pod.uid": "u1"})]


async def test_pleg_relist_is_timed_and_containers_counted():
    before = sample("kubelet_pleg_relist_duration_seconds_count")
    interval_before = sample("kubelet_pleg_relist_interval_seconds_count")
    pleg = GenericPLEG(FakeRuntime(), lambda ev: None)
    await pleg.relist()
    await pleg.relist()
    assert sample("kubelet_pleg_relist_duration_seconds_count") == before + 2
    assert sample("kubelet_pleg_relist_interval_seconds_count") == interval_before + 1
    assert sample("kubelet_pleg_last_seen_seconds") > 0
    assert sample("kubelet_running_containers", container_state="running") >= 1
    assert sample("kubelet_running_containers", container_state="exited") >= 1


def test_pod_start_duration_counts_first_start_only():
    t = kubelet_metrics.PodStartTracker()
    before = sample("kubelet_pod_start_duration_seconds_count")
    t.seen({"metadata": {"uid": "new"}, "status": {"phase": "Pending"}})
    t.seen({"metadata": {"uid": "old"}, "status": {"phase": "Running"}})  # kubelet restart: not a start
    t.running("new")
    t.running("new")
    t.running("old")
    assert sample("kubelet_pod_start_duration_seconds_count") == before + 1
    t.forget("new")
    t.seen({"metadata": {"uid": "new"}, "status": {}})
    t.running("new")
    assert sample("kubelet_pod_start_duration_seconds_count") == before + 2


async def test_system_monitoring_may_read_metrics_and_others_may_not():
    """Upstream's bootstrap system:monitoring role: the group system:monitoring gets /metrics; an authenticated
    user without it does not; anonymous users do not."""
    a = RBACAuthorizer(StaticPolicy(bootstrappolicy.cluster_roles() + bootstrappolicy.cluster_role_bindings()))
    prom = UserInfo("prometheus", ("system:monitoring", "system:authenticated"))
    jane = UserInfo("jane", ("system:authenticated",))
    anon = UserInfo("system:anonymous", ("system:unauthenticated",))
    assert (await a.authorize(prom, non_resource("get", "/metrics")))[0]
    assert (await a.authorize(prom, non_resource("get", "/readyz/etcd")))[0]
    assert not (await a.authorize(jane, non_resource("get", "/metrics")))[0]
    assert not (await a.authorize(anon, non_resource("get", "/metrics")))[0]
