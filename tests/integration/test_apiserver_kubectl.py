"""The real kubectl 1.32 against ``python -m apiserver``: apply's strategic merge patches and the
columns ``kubectl get`` prints from the server's Tables (plain, -o wide, -A, -L, --sort-by, -w, get all)."""
from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess

import httpx
import pytest

import support

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {app: web, tier: LABEL}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: IMAGE
        command: [httpd, -f]
        ports: [{containerPort: 80}]
ENV
"""


def manifest(image: str, label: str, env: str = "") -> str:
    return DEPLOY.replace("IMAGE", image).replace("LABEL", label).replace("ENV", env)


def header(out: str) -> list[str]:
    """The column names of kubectl's table header (split on runs of 2+ spaces)."""
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def rows(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()[1:] if line.strip()]


def now_ts(ago: float = 0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubectl")
    with support.control_plane(tmp) as cp:
        yield cp


@pytest.fixture(scope="module")
def kubectl(cluster):
    home = cluster.tmp / "home"
    home.mkdir(exist_ok=True)

    def run(*args, input=None, check=True, timeout=30):
        r = subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "--cache-dir", str(home / "cache"),
                            *args], input=input, capture_output=True, text=True, timeout=timeout,
                           env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r
    return run


@pytest.fixture(scope="module")
def api(cluster):
    with httpx.Client(base_url=cluster.server, timeout=10) as c:
        yield c


def test_apply_create_configure_unchanged(kubectl, api):
    assert kubectl("apply", "-f", "-", input=manifest("busybox:1.35", "a")).stdout.strip() == \
        "deployment.apps/web created"
    env = "        env: [{name: MODE, value: prod}]"
    out = kubectl("apply", "-f", "-", input=manifest("busybox:1.36", "b", env)).stdout.strip()
    assert out == "deployment.apps/web configured"
    d = api.get("/apis/apps/v1/namespaces/default/deployments/web").json()
    (c,) = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "busybox:1.36" and c["env"] == [{"name": "MODE", "value": "prod"}]
    # The container's other fields, the manifest's and the server's defaults, are kept.
    assert c["command"] == ["httpd", "-f"] and c["ports"][0]["containerPort"] == 80
    assert c["imagePullPolicy"] == "IfNotPresent" and c["terminationMessagePath"] == "/dev/termination-log"
    assert d["metadata"]["labels"] == {"app": "web", "tier": "b"}
    assert kubectl("apply", "-f", "-", input=manifest("busybox:1.36", "b", env)).stdout.strip() == \
        "deployment.apps/web unchanged"
    # An env var set outside the manifest (kubectl patch) survives apply: env merges by name.
    kubectl("patch", "deployment", "web", "-p", json.dumps({"spec": {"template": {"spec": {"containers": [
        {"name": "httpd", "env": [{"name": "FROM_PATCH", "value": "1"}]}]}}}}))
    env2 = "        env: [{name: MODE, value: test}]"
    assert kubectl("apply", "-f", "-", input=manifest("busybox:1.36", "b", env2)).stdout.strip() == \
        "deployment.apps/web configured"
    d = api.get("/apis/apps/v1/namespaces/default/deployments/web").json()
    (c,) = d["spec"]["template"]["spec"]["containers"]
    # Upstream's order: the plain patch put FROM_PATCH first (new patch items go before server-only ones).
    assert c["env"] == [{"name": "FROM_PATCH", "value": "1"}, {"name": "MODE", "value": "test"}]
    # Replacing MODE by OTHER in the manifest deletes MODE ($patch: delete) and keeps what apply did not own.
    kubectl("apply", "-f", "-", input=manifest("busybox:1.36", "b", "        env: [{name: OTHER, value: x}]"))
    d = api.get("/apis/apps/v1/namespaces/default/deployments/web").json()
    assert {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]} == \
        {"FROM_PATCH": "1", "OTHER": "x"}


def _seed(api):
    """Pods, a service, a node and an event with statuses as the kubelet and controllers would write them."""
    for name, ns, phase, state in [("web-b", "default", "Running", {"running": {"startedAt": now_ts(30)}}),
                                   ("web-a", "default", "Pending", {"waiting": {"reason": "ContainerCreating"}}),
                                   ("other", "kube-system", "Running", {"running": {}})]:
        r = api.post(f"/api/v1/namespaces/{ns}/pods", json={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name[:3]}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
        assert r.status_code == 201, r.text
        pod = r.json()
        pod["status"] = {"phase": phase, "podIP": "10.244.0.7", "containerStatuses": [
            {"name": "c", "image": "busybox:1.35", "imageID": "", "ready": phase == "Running", "restartCount": 1,
             "state": state, "lastState": {"terminated": {"exitCode": 1, "finishedAt": now_ts(610)}}}]}
        r = api.put(f"/api/v1/namespaces/{ns}/pods/{name}/status", json=pod)
        assert r.status_code == 200, r.text
    r = api.post("/api/v1/namespaces/default/services", json={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert r.status_code == 201, r.text
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}
    r = api.post("/api/v1/nodes", json=node)
    assert r.status_code == 201, r.text
    node = r.json()
    node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                      "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                      "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "kernelVersion": "6.1",
                                   "containerRuntimeVersion": "docker://24", "machineID": "", "systemUUID": "",
                                   "bootID": "", "kubeProxyVersion": "", "operatingSystem": "linux",
                                   "architecture": "amd64"}}
    assert api.put("/api/v1/nodes/node1/status", json=node).status_code == 200
    r = api.post("/api/v1/namespaces/default/events", json={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-a.1"},
        "involvedObject": {"kind": "Pod", "name": "web-a", "namespace": "default"}, "reason": "Scheduled",
        "message": "Successfully assigned default/web-a to node1", "type": "Normal", "count": 1,
        "firstTimestamp": now_ts(900), "lastTimestamp": now_ts(610), "source": {"component": "default-scheduler"}})
    assert r.status_code == 201, r.text


def test_get_columns(kubectl, api):
    _seed(api)
    out = kubectl("get", "pods").stdout
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    by_name = {r[0]: r for r in rows(out)}
    assert by_name["web-b"][1:4] == ["1/1", "Running", "1 (10m ago)"]
    assert by_name["web-a"][1:3] == ["0/1", "ContainerCreating"]
    out = kubectl("get", "pods", "-o", "wide").stdout
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                           "READINESS GATES"]
    assert rows(out)[0][5:] == ["10.244.0.7", "<none>", "<none>", "<none>"]
    out = kubectl("get", "pods", "-A").stdout
    assert header(out)[:2] == ["NAMESPACE", "NAME"]
    assert ["kube-system", "other"] in [r[:2] for r in rows(out)]
    out = kubectl("get", "pods", "-L", "app").stdout
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP"]
    assert {r[0]: r[-1] for r in rows(out)}["web-a"] == "web"
    out = kubectl("get", "pods", "--sort-by=.metadata.name").stdout
    assert [r[0] for r in rows(out)] == ["web-a", "web-b"]
    out = kubectl("get", "pods", "-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase",
                  "--sort-by=.metadata.name").stdout
    assert rows(out) == [["web-a", "Pending"], ["web-b", "Running"]]

    out = kubectl("get", "deploy", "-o", "wide").stdout
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows(out)[0][0:2] == ["web", "0/2"] and rows(out)[0][5:] == ["httpd", "busybox:1.36", "app=web"]
    out = kubectl("get", "svc", "-o", "wide").stdout
    assert header(out) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    svc = {r[0]: r for r in rows(out)}["web"]
    assert svc[0:2] == ["web", "ClusterIP"] and svc[3:5] == ["<none>", "80/TCP"] and svc[6] == "app=web"
    out = kubectl("get", "nodes", "-o", "wide").stdout
    assert header(out) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                           "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    n = rows(out)[0]
    assert n[:3] == ["node1", "Ready", "<none>"] and n[4:] == ["v1.32.0", "127.0.0.1", "<none>", "Debian", "6.1",
                                                               "docker://24"]
    out = kubectl("get", "events").stdout
    assert header(out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows(out)[0] == ["10m", "Normal", "Scheduled", "pod/web-a", "Successfully assigned default/web-a to node1"]
    out = kubectl("get", "namespaces").stdout
    assert header(out) == ["NAME", "STATUS", "AGE"]


def test_get_all(kubectl):
    out = kubectl("get", "all").stdout
    assert "pod/web-a" in out and "service/web" in out and "deployment.apps/web" in out
    assert "NAME                    READY   UP-TO-DATE   AVAILABLE   AGE" in out or \
        re.search(r"NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE", out)


def test_get_watch_prints_rows_as_they_change(kubectl, api, cluster):
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                             str(cluster.tmp / "home" / "cache"), "get", "pods", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"HOME": str(cluster.tmp / "home"), "PATH": "/usr/bin:/bin"})
    try:
        first = proc.stdout.readline()
        assert re.split(r"\s{2,}", first.strip()) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        api.post("/api/v1/namespaces/default/pods", json={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "watched"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
        seen = []

        def saw_new_pod():
            line = proc.stdout.readline()
            seen.append(line)
            return line.startswith("watched ")
        support.wait_for("kubectl -w to print the new pod", saw_new_pod, timeout=15, interval=0)
        assert re.split(r"\s{2,}", seen[-1].strip())[1:3] == ["0/1", "Pending"]
    finally:
        support.stop_process(proc, timeout=5)
        proc.stdout.close()
        proc.stderr.close()


KINDS = """apiVersion: v1
kind: ServiceAccount
metadata: {name: robot}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: busybox:1.35}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: busybox:1.35}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: busybox:1.35}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: tick, image: busybox:1.35}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
type: Opaque
data: {a: MQ==}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec: {hard: {pods: "10"}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec: {limits: [{type: Container, default: {cpu: 500m}}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.0.5]}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader}
spec: {holderIdentity: node1}
"""

HEADERS = {
    "serviceaccounts": (["NAME", "SECRETS", "AGE"], ["robot", "0"]),
    "daemonsets": (["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
                   ["agent", "0", "0", "0", "0", "0", "kubernetes.io/os=linux"]),
    "statefulsets": (["NAME", "READY", "AGE"], ["db", "0/1"]),
    "jobs": (["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], ["once", "Running", "0/1"]),
    "cronjobs": (["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
                 ["tick", "*/5 * * * *", "<none>", "False", "0", "<none>"]),
    "configmaps": (["NAME", "DATA", "AGE"], ["conf", "2"]),
    "secrets": (["NAME", "TYPE", "DATA", "AGE"], ["token", "Opaque", "1"]),
    "resourcequotas": (["NAME", "AGE", "REQUEST", "LIMIT"], ["quota"]),
    "limitranges": (["NAME", "CREATED AT"], ["limits"]),
    "roles": (["NAME", "CREATED AT"], ["reader"]),
    "rolebindings": (["NAME", "ROLE", "AGE"], ["read-pods", "Role/reader"]),
    "endpointslices": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], ["web-abc", "IPv4", "80", "10.244.0.5"]),
    "leases": (["NAME", "HOLDER", "AGE"], ["leader", "node1"]),
}


def test_get_columns_of_the_other_kinds(kubectl):
    kubectl("apply", "-f", "-", input=KINDS)
    for resource, (columns, cells) in HEADERS.items():
        out = kubectl("get", resource).stdout
        assert header(out) == columns, (resource, out)
        row = next(r for r in rows(out) if r[0] == cells[0])
        assert row[:len(cells)] == cells, (resource, out)
    out = kubectl("get", "rolebindings", "-o", "wide").stdout
    assert header(out) == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    out = kubectl("get", "jobs", "-o", "wide").stdout
    assert header(out) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
