"""The real kubectl 1.32 and the official ``kubernetes`` Python client against the apiserver process,
plus pods/log proxied to a kubelet-like HTTP endpoint."""
from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from test_apiserver import Cluster  # same directory (pytest rootdir-relative import)

KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module", params=["etcd", "etcdlite", "etcdlite3"])
def cluster(request):
    tmp = Path(tempfile.mkdtemp(prefix=f"apiclients-{request.param}-"))
    cl = Cluster(request.param, tmp)
    try:
        yield cl
    finally:
        cl.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def kubectl(cluster, tmp_path):
    if not KUBECTL:
        pytest.skip("kubectl is not installed")
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: k, cluster: {{server: "{cluster.url}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: k, context: {{cluster: k, user: u}}}}]
current-context: k
""")

    def run(*args, input=None, check=True):
        r = subprocess.run([KUBECTL, "--kubeconfig", str(kc), "--cache-dir", str(tmp_path / "cache"), *args],
                           input=input, capture_output=True, text=True, timeout=60,
                           env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
        return r
    return run


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: IMAGE
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def test_kubectl(cluster, kubectl):
    """version, get, apply (create / unchanged / configured), scale, delete as a user runs them."""
    ns = cluster.ns()
    assert "v1.32.0-kubeling" in kubectl("version").stdout
    assert "kube-system" in kubectl("get", "namespaces").stdout
    svc_table = kubectl("get", "svc", "-n", "default").stdout  # a server-side Table
    assert "CLUSTER-IP" in svc_table and "10.96.0.1" in svc_table
    kubectl("get", "nodes")
    kubectl("get", "pods", "-A")
    manifest = DEPLOY.replace("NS", ns)
    out = kubectl("apply", "--validate=false", "-f", "-", input=manifest.replace("IMAGE", "busybox:1.35")).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    out = kubectl("apply", "--validate=false", "-f", "-", input=manifest.replace("IMAGE", "busybox:1.35")).stdout
    assert "deployment.apps/web unchanged" in out
    out = kubectl("apply", "--validate=false", "-f", "-", input=manifest.replace("IMAGE", "busybox:1.36")).stdout
    assert "deployment.apps/web configured" in out
    image = kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}"
                    " {.spec.template.spec.containers[0].ports[0].containerPort}").stdout
    assert image == "busybox:1.36 80"
    assert kubectl("get", "svc", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout.startswith("10.")
    kubectl("scale", "deploy", "web", "-n", ns, "--replicas=4")
    assert kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "4"
    r = kubectl("create", "--validate=false", "-f", "-", input=manifest.replace("IMAGE", "x"), check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    out = kubectl("delete", "-f", "-", "--timeout=20s", input=manifest.replace("IMAGE", "x")).stdout
    assert 'deployment.apps "web" deleted' in out and 'service "web" deleted' in out
    r = kubectl("get", "deploy", "web", "-n", ns, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr


def test_kubectl_pod_lifecycle(cluster, kubectl):
    """kubectl delete of a bound pod waits for the kubelet's final delete (graceful deletion)."""
    ns = cluster.ns()
    kubectl("run", "p", "-n", ns, "--image=busybox:1.35", "--restart=Never")
    assert "Pending" in kubectl("get", "pods", "-n", ns).stdout
    cluster.c.post(f"/api/v1/namespaces/{ns}/pods/p/binding", json={"target": {"name": "node-1"}})
    done = threading.Event()

    def kubelet():  # what a kubelet does once the containers stopped
        for _ in range(100):
            p = cluster.c.get(f"/api/v1/namespaces/{ns}/pods/p").json()
            if p["metadata"].get("deletionTimestamp"):
                cluster.c.request("DELETE", f"/api/v1/namespaces/{ns}/pods/p", json={"gracePeriodSeconds": 0})
                done.set()
                return
            done.wait(0.1)
    t = threading.Thread(target=kubelet)
    t.start()
    out = kubectl("delete", "pod", "p", "-n", ns, "--timeout=20s").stdout
    t.join(15)
    assert done.is_set() and 'pod "p" deleted' in out


def test_python_client(cluster):
    """The official client's typed calls: create, list with a selector, watch, delete."""
    pytest.importorskip("kubernetes")
    from kubernetes import client, watch
    ns = cluster.ns()
    cfg = client.Configuration()
    cfg.host = cluster.url
    api_client = client.ApiClient(cfg)
    try:
        v1 = client.CoreV1Api(api_client)
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}),
                           spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.35")]))
        created = v1.create_namespaced_pod(ns, pod)
        assert created.metadata.uid and created.status.phase == "Pending"
        pods = v1.list_namespaced_pod(ns, label_selector="app=py")
        assert [p.metadata.name for p in pods.items] == ["py"]
        deleted = v1.delete_namespaced_pod("py", ns)
        assert deleted.metadata.name == "py"
        w = watch.Watch()
        events = []
        for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=pods.metadata.resource_version,
                           timeout_seconds=5):
            events.append(ev)
            if ev["type"] == "DELETED":
                w.stop()
        assert [e["type"] for e in events] == ["DELETED"] and events[0]["object"].metadata.name == "py"
        with pytest.raises(client.ApiException) as e:
            v1.read_namespaced_pod("py", ns)
        assert e.value.status == 404
        apps = client.AppsV1Api(api_client)
        assert apps.list_namespaced_deployment(ns).kind == "DeploymentList"
    finally:
        api_client.close()


class _FakeKubeletLogs(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"path={self.path}\nline2\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_pod_log_proxied_to_kubelet(cluster):
    """GET pods/NAME/log goes to http://<InternalIP>:<kubeletEndpoint.Port>/containerLogs/NS/POD/CONTAINER."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubeletLogs)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        c = cluster.c
        node = f"logs-{cluster.kind}"
        r = c.post("/api/v1/nodes", json={"metadata": {"name": node}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": srv.server_address[1]}}}})
        assert r.status_code == 201, r.text
        ns = cluster.ns()
        c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "busybox:1.35"}]}})
        r = c.get(f"/api/v1/namespaces/{ns}/pods/p/log", params={"tailLines": "2", "timestamps": "true"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith(f"path=/containerLogs/{ns}/p/c?") and "tailLines=2" in r.text
        r = c.get(f"/api/v1/namespaces/{ns}/pods/p/log", params={"container": "nope"})
        assert r.status_code == 400
    finally:
        srv.shutdown()
        srv.server_close()


# --- two apiservers over one 3-member etcdlite (issue 4: "horizontally scalable") ---

@pytest.fixture(scope="module")
def two_apiservers(tmp_path_factory):
    """apiserver A and B (separate processes), both with --etcd-servers listing all three etcdlite members."""
    import support
    with support.control_plane(tmp_path_factory.mktemp("two-apiservers"), "etcdlite3",
                               apiserver_args=["--service-cluster-ip-range", "10.96.0.0/12"]) as cp:
        b = support.start_apiserver(cp.procs, cp.extra["etcd_servers"], name="apiserver-b",
                                    apiserver_args=["--service-cluster-ip-range", "10.96.0.0/12"])
        yield cp, cp.server, b


def _core(url):
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = url
    api_client = client.ApiClient(cfg)
    return api_client, client.CoreV1Api(api_client)


def test_two_apiservers_share_the_store(two_apiservers):
    """Official client on A and B: a write through one is read, patched, replaced, deleted and watched through the other."""
    pytest.importorskip("kubernetes")
    from kubernetes import client, watch
    _, a_url, b_url = two_apiservers
    ca, a = _core(a_url)
    cb, b = _core(b_url)
    try:
        ns = "two-" + uuid.uuid4().hex[:6]
        a.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        start = b.list_namespaced_config_map(ns).metadata.resource_version
        got: list = []

        def watch_b():  # a watch on B from a resourceVersion, started before A's writes
            w = watch.Watch()
            for ev in w.stream(b.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=10):
                got.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
                if ev["type"] == "DELETED":
                    w.stop()
        t = threading.Thread(target=watch_b)
        t.start()
        cm = a.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"),
                                                                   data={"k": "a"}))
        read = support_wait(lambda: b.read_namespaced_config_map("cm", ns))
        assert read.data == {"k": "a"} and read.metadata.uid == cm.metadata.uid
        patched = b.patch_namespaced_config_map("cm", ns, {"data": {"k": "b"}})
        assert int(patched.metadata.resource_version) > int(cm.metadata.resource_version)
        assert support_wait(lambda: a.read_namespaced_config_map("cm", ns).data == {"k": "b"})
        patched.data = {"k": "c"}
        replaced = a.replace_namespaced_config_map("cm", ns, patched)
        with pytest.raises(client.ApiException) as e:  # B sees A's replace: the old resourceVersion conflicts
            b.replace_namespaced_config_map("cm", ns, patched)
        assert e.value.status == 409
        b.delete_namespaced_config_map("cm", ns)
        t.join(15)
        assert [g[0] for g in got] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"], got
        assert got[0][2] == {"k": "a"} and got[2][2] == {"k": "c"}
        with pytest.raises(client.ApiException) as e:
            a.read_namespaced_config_map("cm", ns)
        assert e.value.status == 404
        assert replaced.metadata.name == "cm"
    finally:
        ca.close()
        cb.close()


def support_wait(fn, timeout: float = 5.0):
    """``fn()`` until it is truthy and does not raise a 404 (B's cache may trail A's write by a moment)."""
    import support
    from kubernetes.client import ApiException
    return support.wait_for("read through the other apiserver", fn, timeout, 0.05,
                            errors=(ApiException, *support.POLL_ERRORS))


def test_concurrent_read_modify_write_loses_no_update(two_apiservers):
    """20 clients, half on A and half on B, read-modify-write one ConfigMap counter: losers get 409, nothing is lost."""
    import httpx
    _, a_url, b_url = two_apiservers
    ns = "rmw-" + uuid.uuid4().hex[:6]
    with httpx.Client(base_url=a_url, timeout=20) as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        assert c.post(f"/api/v1/namespaces/{ns}/configmaps",
                      json={"metadata": {"name": "counter"}, "data": {"n": "0"}}).status_code == 201
    path = f"/api/v1/namespaces/{ns}/configmaps/counter"
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker(i):
        with httpx.Client(base_url=(a_url, b_url)[i % 2], timeout=20) as c:
            barrier.wait(10)
            for _ in range(3):
                cm = c.get(path).json()
                cm["data"]["n"] = str(int(cm["data"]["n"]) + 1)
                r = c.put(path, json=cm)
                with lock:
                    results.append((r.status_code, r.json()["metadata"]["resourceVersion"]
                                    if r.status_code == 200 else r.json().get("reason")))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 60
    ok = [rv for code, rv in results if code == 200]
    assert all(code in (200, 409) for code, _ in results), results
    assert all(rv == "Conflict" for code, rv in results if code == 409)
    assert ok and len(set(ok)) == len(ok), "two successful updates share a resourceVersion"
    with httpx.Client(base_url=b_url, timeout=10) as c:
        final = support_wait(lambda: (lambda cm: cm if int(cm["data"]["n"]) >= len(ok) else None)(c.get(path).json()))
    assert int(final["data"]["n"]) == len(ok), (final["data"], len(ok))


def test_leader_kill_apiserver_fails_over(two_apiservers):
    """kill -9 the etcdlite leader: writes through the apiserver fail at most briefly, then succeed on the new leader."""
    import signal
    import time

    import httpx
    cp, a_url, b_url = two_apiservers
    cl = cp.extra["cluster"]
    ns = "kill-" + uuid.uuid4().hex[:6]
    with httpx.Client(base_url=a_url, timeout=15) as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        leader = cl.wait_leader()
        cl.kill(leader, signal.SIGKILL)
        t0 = time.monotonic()
        failures, first_ok, late = [], None, []
        for i in range(40):  # bounded: 40 creates
            r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"c{i}"}})
            if r.status_code == 201:
                first_ok = first_ok or time.monotonic() - t0
            else:
                assert r.status_code in (500, 503, 504), r.text
                (late if first_ok else failures).append((round(time.monotonic() - t0, 2), r.json().get("message")))
                time.sleep(0.1)
        # A write a follower forwarded to the dead leader before it noticed is lost and
        # times out after etcd's request timeout (5 s + 2 election timeouts = 7 s), as
        # with etcd itself; every later write goes to the new leader.
        assert first_ok is not None and first_ok < 10.0, (first_ok, failures)
        assert len(failures) <= 3 and not late, (failures, late)
        failures = len(failures)
        names = {i["metadata"]["name"] for i in c.get(f"/api/v1/namespaces/{ns}/configmaps").json()["items"]}
    assert len(names) == 40 - failures
    with httpx.Client(base_url=b_url, timeout=15) as c:  # B reads A's writes through the surviving members
        assert support_wait(lambda: len(c.get(f"/api/v1/namespaces/{ns}/configmaps").json()["items"]) == len(names))
