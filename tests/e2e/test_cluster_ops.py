"""Operating a local cluster (issue 9's acceptance): supervision, restart, backup and restore.

One single-node cluster from `python -m deploy up`, real Docker and kubectl:
kill -9 of the kubelet and its CRI shim is repaired by supervisord and the
pods stay as they were; `kubeling cluster backup`, deleting a namespace and
`kubeling cluster restore` bring the namespace and its objects back;
`deploy down` + `deploy up` keeps a Deployment and its pods.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import support

REPO = pathlib.Path(__file__).resolve().parents[2]
KUBELING = str(pathlib.Path(sys.executable).parent / "kubeling")

pytestmark = pytest.mark.e2e

APP = """
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {color: blue}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: team}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: "busybox:1.35", command: ["sh", "-c", "exec httpd -f -p 80 -h /"]}
"""


_wait = support.wait_for


def deploy(cluster, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "deploy", *args], cwd=REPO, env=cluster["env"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"deploy {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with support.deployed_cluster(tmp_path_factory.mktemp("ops")) as c:
        yield c


def kubectl(cluster, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(["kubectl", "--kubeconfig", str(cluster["home"] / "admin.kubeconfig"), *args],
                       capture_output=True, text=True, timeout=120, input=stdin,
                       env={**cluster["env"], "HOME": str(cluster["home"])})
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def kubeling(cluster, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([KUBELING, *args], capture_output=True, text=True, timeout=300, env=cluster["env"])
    assert r.returncode == 0, f"kubeling {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def app_pods(cluster) -> dict[str, str] | None:
    """{pod name: uid} of the Running app pods, None unless there are exactly 2."""
    out = kubectl(cluster, "get", "pods", "-n", "team", "-l", "app=app", "-o", "json", check=False)
    if out.returncode:
        return None
    pods = [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]
    running = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods
               if p["status"].get("phase") == "Running"
               and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])}
    return running if len(pods) == 2 and len(running) == 2 else None


@pytest.fixture(scope="module")
def app(cluster):
    kubectl(cluster, "apply", "-f", "-", stdin=APP)
    return _wait("2 app pods Running", lambda: app_pods(cluster), 120)


def containers(node: str = "node1") -> set[str]:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.kubeling.node={node}"],
                         capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


def test_kill_9_kubelet_and_shim_are_restarted_and_pods_unchanged(cluster, app):
    from deploy.cluster import Cluster

    launcher = Cluster(cluster["home"])
    comps = {c.name: c for c in launcher.components()}
    before = containers()
    pids = {n: launcher.pid_of(comps[n]) for n in ("kubelet-node1", "cri-shim-node1")}
    assert all(pids.values())
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    for name, pid in pids.items():
        _wait(f"supervisord to restart {name}", lambda: launcher.pid_of(comps[name]) not in (0, pid)
              and comps[name].healthy(), 30)
    restarts = launcher.supervisor.restarts()
    assert restarts.get("kubelet-node1", 0) >= 1 and restarts.get("cri-shim-node1", 0) >= 1
    status = subprocess.run([KUBELING, "cluster", "status"], capture_output=True, text=True, timeout=60,
                            env=cluster["env"])
    assert status.returncode == 0 and "kubelet-node1" in status.stdout, status.stdout + status.stderr
    time.sleep(5)  # a few PLEG relists and syncs of the restarted kubelet
    assert app_pods(cluster) == app, "same pods, still Running"
    assert containers() == before, "no container was restarted or recreated"


IN_CLUSTER_SCRIPT = """
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
v1 = client.CoreV1Api()
print("listed", len(v1.list_namespaced_pod("default").items), "pods")
try:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "nope"}})
    print("create allowed")
except ApiException as e:
    print("create refused", e.status)
"""


def test_official_python_client_in_a_pod_with_its_service_account_token(cluster, app):
    """In-cluster config: KUBERNETES_SERVICE_HOST/PORT from the kubelet, the projected token and
    kube-root-ca.crt, HTTPS to 10.96.0.1 through kube-proxy; RBAC view on the default SA."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "default-sa-view", "namespace": "default"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(binding))
    # busybox has no Python: the pod borrows this machine's interpreter and the repository's
    # virtualenv (with the `kubernetes` package) through read-only hostPath volumes.
    mounts = {"prefix": (sys.base_prefix, sys.base_prefix), "repo": (str(REPO), str(REPO)),
              "libs": ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"), "ld": ("/usr/lib64", "/lib64")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pyclient", "namespace": "default"},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "py", "image": "busybox:1.35",
               "command": [str(REPO / ".venv" / "bin" / "python"), "-c", IN_CLUSTER_SCRIPT],
               "volumeMounts": [{"name": k, "mountPath": dst, "readOnly": True} for k, (_, dst) in mounts.items()]}],
               "volumes": [{"name": k, "hostPath": {"path": src}} for k, (src, _) in mounts.items()]}}
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(pod))
    phase = _wait("pyclient finished", lambda: json.loads(kubectl(cluster, "get", "pod", "pyclient", "-o", "json")
                                                          .stdout)["status"].get("phase") in ("Succeeded", "Failed")
                  and json.loads(kubectl(cluster, "get", "pod", "pyclient", "-o", "json").stdout)["status"]["phase"],
                  120)
    logs = kubectl(cluster, "logs", "pyclient").stdout
    assert phase == "Succeeded", logs
    assert "listed" in logs and "create refused 403" in logs, logs
    env = kubectl(cluster, "get", "pod", "pyclient", "-o", "json").stdout
    assert "kube-api-access-" in env


def test_anonymous_requests_get_401_except_health_and_version(cluster):
    """Without credentials: 401 with a Status object, except /healthz, /livez, /readyz, /version."""
    import httpx

    ca = str(cluster["home"] / "pki" / "ca.crt")
    import ssl
    ctx = ssl.create_default_context(cafile=ca)
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert httpx.get(f"https://127.0.0.1:6443{path}", verify=ctx, timeout=10).status_code == 200, path
    for path in ("/api/v1/pods", "/api/v1/namespaces/default/secrets", "/apis"):
        r = httpx.get(f"https://127.0.0.1:6443{path}", verify=ctx, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized"
    r = httpx.get("https://127.0.0.1:6443/api/v1/pods", verify=ctx, timeout=10,
                  headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


def test_image_load_puts_a_local_image_on_the_node(cluster, tmp_path):
    """`kubeling image load TARBALL` (docker save output) makes an image runnable without a registry."""
    tag = "kltest-ops-img:1"
    tar = tmp_path / "img.tar"
    try:
        for argv in (["docker", "tag", "busybox:1.35", tag], ["docker", "save", tag, "-o", str(tar)],
                     ["docker", "rmi", tag]):
            assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0, argv
        out = kubeling(cluster, "image", "load", str(tar)).stdout
        assert tag in out
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loaded", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": tag, "imagePullPolicy": "IfNotPresent",
                                        "command": ["sleep", "3600"]}]}}
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(pod))
        _wait("the pod of the loaded image Running", lambda: json.loads(kubectl(
            cluster, "get", "pod", "loaded", "-o", "json").stdout)["status"].get("phase") == "Running", 60)
        kubectl(cluster, "delete", "pod", "loaded", "--grace-period=0", "--force")
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_every_component_serves_prometheus_metrics(cluster, app):
    """/metrics of each process `deploy up` started parses as Prometheus text with upstream's names."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from deploy.cluster import Cluster
    from kubeling import config
    from kubeling.client import kubeconfig

    launcher = Cluster(cluster["home"])
    admin = kubeconfig.load(cluster["home"] / "admin.kubeconfig")
    tls = admin.ssl_context()  # the admin client certificate: the kubelet trusts the cluster CA
    wanted = {
        "etcdlite": ("http://127.0.0.1:2381/metrics", None, ["etcd_server_has_leader",
                                                           "etcd_server_proposals_committed_total",
                                                           "etcd_disk_wal_fsync_duration_seconds"]),
        "kube-apiserver": ("https://127.0.0.1:6443/metrics", tls, ["apiserver_request_total",
                                                                   "apiserver_request_duration_seconds"]),
        "kube-controller-manager": (f"http://127.0.0.1:{config.CONTROLLER_MANAGER_PORT}/metrics", None,
                                    ["workqueue_adds_total", "workqueue_depth"]),
        "kube-scheduler": (f"http://127.0.0.1:{config.SCHEDULER_PORT}/metrics", None,
                           ["scheduler_schedule_attempts_total"]),
        "kubelet-node1": (f"https://127.0.0.1:{config.KUBELET_PORT}/metrics", tls,
                          ["kubelet_pleg_relist_duration_seconds", "kubelet_pod_start_duration_seconds"]),
        "kube-proxy-node1": (f"http://127.0.0.1:{config.PROXY_METRICS_PORT}/metrics", None,
                             ["kubeproxy_sync_proxy_rules_duration_seconds"]),
        "cluster-dns": (f"http://{config.UNDERLAY_HOST_IP}:{config.DNS_METRICS_PORT}/metrics", None,
                        ["coredns_dns_requests_total"]),
    }
    assert set(wanted) <= {c.name for c in launcher.components()}
    for comp, (url, verify, names) in wanted.items():
        r = httpx.get(url, verify=verify if verify is not None else True, timeout=10)
        assert r.status_code == 200, (comp, url, r.status_code, r.text[:200])
        families = {f.name for f in text_string_to_metric_families(r.text)}
        samples = {s.name for f in text_string_to_metric_families(r.text) for s in f.samples}
        for name in names:
            assert name in families or name in samples or name.removesuffix("_total") in families, \
                f"{comp}: {name} missing from {url}"


def test_backup_delete_namespace_restore(cluster, app, tmp_path):
    snap = tmp_path / "backup.db"
    out = kubeling(cluster, "cluster", "backup", str(snap)).stdout
    assert "Snapshot saved" in out and snap.stat().st_size > 4096
    # etcdctl reads our snapshot file as one of etcd's.
    st = subprocess.run(["etcdctl", "snapshot", "status", str(snap), "-w", "json"], capture_output=True,
                        text=True, timeout=60, env={**os.environ, "ETCDCTL_API": "3"})
    assert st.returncode == 0 and json.loads(st.stdout)["totalKey"] > 10, st.stdout + st.stderr
    kubectl(cluster, "delete", "namespace", "team", "--timeout=120s")
    assert kubectl(cluster, "get", "namespace", "team", check=False).returncode != 0
    out = kubeling(cluster, "cluster", "restore", str(snap)).stdout
    assert "restored" in out
    ns = json.loads(kubectl(cluster, "get", "namespace", "team", "-o", "json").stdout)
    assert ns["status"]["phase"] == "Active"
    cm = json.loads(kubectl(cluster, "get", "configmap", "settings", "-n", "team", "-o", "json").stdout)
    assert cm["data"] == {"color": "blue"}
    try:
        _wait("the restored Deployment's 2 pods Running", lambda: app_pods(cluster), 120)
    except AssertionError as e:
        state = kubectl(cluster, "get", "all,events", "-n", "team", "-o", "wide", check=False).stdout
        cm_log = (cluster["home"] / "logs" / "kube-controller-manager.log").read_text(errors="replace")
        raise AssertionError(f"{e}\n{state}\n{[x for x in cm_log.splitlines() if 'team' in x][-15:]}") from None
    dep = json.loads(kubectl(cluster, "get", "deployment", "app", "-n", "team", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 2


def test_down_then_up_keeps_the_deployment_and_its_pods(cluster, app):
    before = _wait("app pods", lambda: app_pods(cluster), 60)
    deploy(cluster, "down")
    assert containers() == set()
    deploy(cluster, "up")
    after = _wait("the app pods Running again after up", lambda: app_pods(cluster), 120)
    assert after == before, "the same pod objects (names and uids) come back, their containers recreated"
