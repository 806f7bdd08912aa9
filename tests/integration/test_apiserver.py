"""The apiserver as a real process over a real store (etcd 3.4 and etcdlite), driven over HTTP.

Each store kind gets one ``python -m apiserver`` process for the module;
tests use their own namespaces or names so they do not interfere.
"""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

import support


class Cluster:
    """A store process and an apiserver process; ``c`` is an httpx client on the apiserver."""

    def __init__(self, kind: str, tmp: Path, *, watch_cache_size: int = 200):
        self.kind = kind
        self.tmp = tmp
        self._stack = contextlib.ExitStack()
        cp = self._stack.enter_context(support.control_plane(
            tmp, kind, apiserver_args=["--service-cluster-ip-range", "10.96.0.0/12",
                                       "--watch-cache-size", str(watch_cache_size)]))
        self.cp = cp
        self.etcd_url, self.url, self.log = cp.etcd_endpoint, cp.server, cp.apiserver_log
        self.c = httpx.Client(base_url=self.url, timeout=10.0)

    def close(self) -> None:
        self.c.close()
        self._stack.close()

    def ns(self) -> str:
        """A fresh namespace for one test."""
        name = "t-" + uuid.uuid4().hex[:8]
        r = self.c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text
        return name


# "etcdlite is a drop-in for etcd" (issue 3): every test runs against etcd 3.4,
# one etcdlite member and a 3-member etcdlite cluster (the apiserver is given
# all three client URLs).
@pytest.fixture(scope="module", params=["etcd", "etcdlite", "etcdlite3"])
def cluster(request):
    tmp = Path(tempfile.mkdtemp(prefix=f"apiserver-{request.param}-"))
    cl = Cluster(request.param, tmp)
    try:
        yield cl
    finally:
        cl.close()
        if request.node.session.testsfailed:
            print(f"logs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


def pod_body(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **spec}}


def read_events(c: httpx.Client, path: str, params: dict, count: int, *, timeout: float = 10.0) -> list[dict]:
    """The first ``count`` watch events of ``path`` (the server closes after timeoutSeconds)."""
    events = []
    with c.stream("GET", path, params={**params, "watch": "true"}, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                if len(events) >= count:
                    break
    return events


# ---------------------------------------------------------------- tests


def test_version_discovery_health(cluster):
    c = cluster.c
    v = c.get("/version").json()
    assert (v["major"], v["minor"], v["gitVersion"]) == ("1", "32", "v1.32.0-kubeling")
    for p in ("/healthz", "/livez", "/readyz"):
        assert c.get(p).text == "ok"
    assert c.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"] for g in c.get("/apis").json()["groups"]}
    assert {"apps", "coordination.k8s.io"} <= groups
    core = {r["name"]: r for r in c.get("/api/v1").json()["resources"]}
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["categories"] == ["all"]
    assert {"pods/status", "pods/binding", "pods/log", "nodes/status", "services/status"} <= set(core)
    appsv1 = {r["name"]: r for r in c.get("/apis/apps/v1").json()["resources"]}
    assert appsv1["deployments/scale"]["kind"] == "Scale" and appsv1["deployments/scale"]["group"] == "autoscaling"
    assert c.get("/apis/coordination.k8s.io/v1").json()["resources"][0]["name"] == "leases"
    r = c.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["kind"] == "Status"


def test_bootstrap_objects(cluster):
    c = cluster.c
    names = {n["metadata"]["name"] for n in c.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = c.get("/api/v1/namespaces/default/services/kubernetes").json()
    assert svc["spec"]["clusterIP"] == "10.96.0.1"


def test_create_get_list_update_conflict_patch_delete(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/configmaps"
    r = c.post(base, json={"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert r.status_code == 201, r.text
    cm = r.json()
    meta = cm["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    r = c.post(base, json={"metadata": {"name": "cm"}})
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"
    assert r.json()["message"] == 'configmaps "cm" already exists'
    assert c.get(f"{base}/cm").json()["data"] == {"a": "1"}
    lst = c.get(base).json()
    assert lst["kind"] == "ConfigMapList" and lst["apiVersion"] == "v1"
    assert int(lst["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    assert [i["metadata"]["name"] for i in lst["items"]] == ["cm"] and lst["items"][0]["kind"] == "ConfigMap"
    # update with the current RV, then a stale one
    cm["data"] = {"a": "2"}
    r = c.put(f"{base}/cm", json=cm)
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] != meta["resourceVersion"]
    r = c.put(f"{base}/cm", json=cm)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    assert r.json()["message"] == ('Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
                                   'please apply your changes to the latest version and try again')
    # patches
    r = c.patch(f"{base}/cm", content=json.dumps({"data": {"b": "3"}}),
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["data"] == {"a": "2", "b": "3"}
    r = c.patch(f"{base}/cm", content=json.dumps([{"op": "remove", "path": "/data/a"}]),
                headers={"Content-Type": "application/json-patch+json"})
    assert r.json()["data"] == {"b": "3"}
    r = c.patch(f"{base}/cm", content=json.dumps({"metadata": {"labels": {"x": "y"}}}),
                headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.json()["metadata"]["labels"] == {"x": "y"}
    r = c.patch(f"{base}/cm", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    # malformed JSON is a 400, never a 500
    r = c.post(base, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    # delete: a Status Success for non-pods; then 404
    r = c.request("DELETE", f"{base}/cm", json={"propagationPolicy": "Background"})
    assert r.status_code == 200 and r.json()["status"] == "Success"
    r = c.get(f"{base}/cm")
    assert r.status_code == 404 and r.json()["message"] == 'configmaps "cm" not found'
    assert r.json()["details"] == {"name": "cm", "kind": "configmaps"}


def test_missing_namespace_and_validation(cluster):
    c = cluster.c
    r = c.post("/api/v1/namespaces/nope/pods", json=pod_body("p"))
    assert r.status_code == 404 and r.json()["message"] == 'namespaces "nope" not found'
    ns = cluster.ns()
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": {}})
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert r.json()["details"]["causes"][0]["field"] == "spec.containers"
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod_body("Bad_Name"))
    assert r.status_code == 422 and "metadata.name" in r.json()["message"]
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}},
                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    r = c.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=d)
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    r = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "a in (b"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    r = c.get(f"/api/v1/namespaces/{ns}/pods", params={"fieldSelector": "spec.bogus=x"})
    assert r.status_code == 400 and "field label not supported" in r.json()["message"]


def test_generate_name_and_selectors(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/pods"
    names = []
    for i in range(3):
        body = pod_body("")
        body["metadata"] = {"generateName": "web-", "labels": {"app": "web", "i": str(i)}}
        if i == 0:
            body["spec"]["nodeName"] = "n1"
        r = c.post(base, json=body)
        assert r.status_code == 201, r.text
        names.append(r.json()["metadata"]["name"])
    assert all(n.startswith("web-") and len(n) == 9 for n in names) and len(set(names)) == 3
    sel = lambda **p: sorted(i["metadata"]["name"] for i in c.get(base, params=p).json()["items"])  # noqa: E731
    assert sel(labelSelector="i in (0,1)") == sorted(names[:2])
    assert sel(labelSelector="app=web,i!=0") == sorted(names[1:])
    assert sel(fieldSelector="spec.nodeName=n1") == [names[0]]
    assert sel(fieldSelector="spec.nodeName=") == sorted(names[1:])
    assert sel(fieldSelector="status.phase=Pending", labelSelector="i=2") == [names[2]]
    assert sel(fieldSelector=f"metadata.name={names[1]}") == [names[1]]
    allns = c.get("/api/v1/pods", params={"labelSelector": "app=web"}).json()
    assert set(names) <= {i["metadata"]["name"] for i in allns["items"]}
    # paging
    page = c.get(base, params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = c.get(base, params={"limit": 2, "continue": page["metadata"]["continue"]}).json()
    assert len(rest["items"]) == 1 and "continue" not in rest["metadata"]


def test_watch_from_resource_version(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/pods"
    rv = c.get(base).json()["metadata"]["resourceVersion"]
    c.post(base, json=pod_body("w"))
    c.patch(f"{base}/w", content=b'{"metadata":{"labels":{"x":"1"}}}',
            headers={"Content-Type": "application/merge-patch+json"})
    c.delete(f"{base}/w")
    events = read_events(c, base, {"resourceVersion": rv, "timeoutSeconds": "5"}, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(e["object"]["metadata"]["name"] == "w" and e["object"]["kind"] == "Pod" for e in events)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)


def test_watch_live_with_selector_and_timeout(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/pods"
    rv = c.get(base).json()["metadata"]["resourceVersion"]
    got: list = []

    def watch():
        got.extend(read_events(c, base, {"resourceVersion": rv, "fieldSelector": "metadata.name=b",
                                          "timeoutSeconds": "3"}, 1))
    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    c.post(base, json=pod_body("a"))
    c.post(base, json=pod_body("b"))
    t.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [("ADDED", "b")]
    # timeoutSeconds ends an idle watch
    t0 = time.monotonic()
    with c.stream("GET", base, params={"watch": "1", "resourceVersion": "0", "timeoutSeconds": "1",
                                       "labelSelector": "none=1"}) as r:
        assert r.read() == b""
    assert time.monotonic() - t0 < 5


def test_watch_too_old_is_410(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/configmaps"
    first = c.post(base, json={"metadata": {"name": "x"}, "data": {"n": "0"}}).json()["metadata"]["resourceVersion"]
    for i in range(220):  # more than the watch cache's 200 events
        r = c.patch(f"{base}/x", content=json.dumps({"data": {"n": str(i + 1)}}),
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
    events = read_events(c, base, {"resourceVersion": first}, 1)
    assert events[0]["type"] == "ERROR"
    st = events[0]["object"]
    assert st["kind"] == "Status" and st["code"] == 410 and "too old resource version" in st["message"]


def test_cluster_ip_allocation(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/services"
    results: list = []

    def create(i):
        r = httpx.post(cluster.url + base, json={"metadata": {"name": f"s{i}"}, "spec": {"ports": [{"port": 80}]}})
        results.append(r)
    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    ips = [r.json()["spec"]["clusterIP"] for r in results]
    assert len(set(ips)) == 12 and "10.96.0.1" not in ips
    svc = results[0].json()
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]] and svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["targetPort"] == 80 and svc["spec"]["ports"][0]["protocol"] == "TCP"
    taken = svc["spec"]["clusterIP"]
    r = c.post(base, json={"metadata": {"name": "dup"}, "spec": {"clusterIP": taken, "ports": [{"port": 80}]}})
    assert r.status_code == 422 and "provided IP is already allocated" in r.json()["message"]
    r = c.post(base, json={"metadata": {"name": "out"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}})
    assert r.status_code == 422 and "not in the valid range" in r.json()["message"]
    r = c.post(base, json={"metadata": {"name": "headless"}, "spec": {"clusterIP": "None"}})
    assert r.status_code == 201 and r.json()["spec"]["clusterIPs"] == ["None"]
    # delete releases the address
    name = svc["metadata"]["name"]
    assert c.delete(f"{base}/{name}").status_code == 200
    r = c.post(base, json={"metadata": {"name": "reuse"}, "spec": {"clusterIP": taken, "ports": [{"port": 80}]}})
    assert r.status_code == 201, r.text
    r = c.put(f"{base}/reuse", json={**r.json(), "spec": {**r.json()["spec"], "clusterIP": "10.96.0.77",
                                                          "clusterIPs": ["10.96.0.77"]}})
    assert r.status_code == 422 and "spec.clusterIPs[0]" in r.json()["message"]


def test_graceful_pod_deletion_and_binding(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/pods"
    created = c.post(base, json=pod_body("g")).json()
    assert created["status"]["phase"] == "Pending" and created["spec"]["restartPolicy"] == "Always"
    r = c.post(f"{base}/g/binding", json={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "g"},
                                          "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    assert r.status_code == 201, r.text
    bound = c.get(f"{base}/g").json()
    assert bound["spec"]["nodeName"] == "node-1"
    assert [c_["type"] for c_ in bound["status"]["conditions"]] == ["PodScheduled"]
    r = c.post(f"{base}/g/binding", json={"target": {"name": "node-2"}})
    assert r.status_code == 409 and "already assigned" in r.json()["message"]
    # status update by the kubelet
    r = c.patch(f"{base}/g/status", content=json.dumps({"status": {"phase": "Running"}, "spec": {"nodeName": "x"}}),
                headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.json()["status"]["phase"] == "Running" and r.json()["spec"]["nodeName"] == "node-1"
    # graceful delete: the pod stays with deletionTimestamp
    r = c.request("DELETE", f"{base}/g", json={"propagationPolicy": "Background"})
    assert r.status_code == 200
    assert r.json()["metadata"]["deletionTimestamp"] and r.json()["metadata"]["deletionGracePeriodSeconds"] == 30
    assert c.get(f"{base}/g").status_code == 200
    # the kubelet's final delete
    r = c.request("DELETE", f"{base}/g", json={"gracePeriodSeconds": 0})
    assert r.status_code == 200 and r.json()["kind"] == "Pod"
    assert c.get(f"{base}/g").status_code == 404
    # an unbound pod goes at once
    c.post(base, json=pod_body("u"))
    assert c.delete(f"{base}/u").status_code == 200
    assert c.get(f"{base}/u").status_code == 404


def test_finalizers(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/api/v1/namespaces/{ns}/configmaps"
    c.post(base, json={"metadata": {"name": "f", "finalizers": ["example.com/keep"]}})
    r = c.delete(f"{base}/f")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    assert c.get(f"{base}/f").status_code == 200
    r = c.patch(f"{base}/f", content=b'{"metadata":{"finalizers":null}}',
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    assert c.get(f"{base}/f").status_code == 404


def test_deployment_scale_and_generation(cluster):
    c = cluster.c
    ns = cluster.ns()
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
                  "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}}
    r = c.post(base, json=d)
    assert r.status_code == 201 and r.json()["metadata"]["generation"] == 1 and r.json()["spec"]["replicas"] == 1
    r = c.patch(f"{base}/d/scale", content=b'{"spec":{"replicas":3}}',
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["kind"] == "Scale" and r.json()["spec"]["replicas"] == 3
    got = c.get(f"{base}/d").json()
    assert got["spec"]["replicas"] == 3 and got["metadata"]["generation"] == 2
    r = c.put(f"{base}/d/status", json={**got, "status": {"observedGeneration": 2, "replicas": 3}})
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 2
    assert r.json()["status"]["replicas"] == 3
    assert c.get(f"{base}/d/scale").json()["status"]["selector"] == "app=d"


def test_sigterm_ends_watches_and_exits(cluster, tmp_path):
    """A separate apiserver on the same store stops within seconds of SIGTERM even with a watch open."""
    port = support.free_port()
    with support.ProcessGroup(tmp_path) as procs:
        proc = procs.spawn("api", [sys.executable, "-m", "apiserver", "--etcd-servers", cluster.etcd_url,
                                   "--secure-port", str(port)])
        procs.wait_ready("api", url=f"http://127.0.0.1:{port}/readyz", timeout=20)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            with c.stream("GET", "/api/v1/pods", params={"watch": "true", "resourceVersion": "0"}) as r:
                proc.send_signal(signal.SIGTERM)
                for _ in r.iter_lines():
                    pass  # ADDED events, then the end of the stream
        assert proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown


def test_namespace_deletion(cluster):
    """Deleting a namespace marks it Terminating, refuses new content, removes its objects, then itself."""
    c = cluster.c
    ns = cluster.ns()
    c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "a"}})
    r = c.delete(f"/api/v1/namespaces/{ns}")
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
    deadline = time.monotonic() + 10
    while c.get(f"/api/v1/namespaces/{ns}").status_code != 404:
        assert time.monotonic() < deadline, "namespace not removed"
        time.sleep(0.05)
    assert c.get(f"/api/v1/namespaces/{ns}/configmaps/a").status_code == 404
    r = c.delete("/api/v1/namespaces/default")
    assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
