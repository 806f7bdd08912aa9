"""The real kubectl 1.32 and the official ``kubernetes`` Python client against the apiserver process,
plus pods/log proxied to a kubelet-like HTTP endpoint."""
from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
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
    kubernetes = pytest.importorskip("kubernetes")
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
