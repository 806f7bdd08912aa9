"""A scripted session with the real kubectl 1.32 against a real cluster (issue 4's acceptance).

One module-scoped cluster: a 3-member etcdlite, the apiserver, the scheduler,
the controller-manager and one real node (CRI shim over Docker + kubelet,
``support.node``). The tests run in file order, each one a step a user
would take (apply, rollout status, get, describe, scale, logs, exec, top,
delete ...), asserting kubectl's exit code and output. A step relies on
the state the earlier ones left, as a user's session does.

Needs root, Docker with busybox:1.35 and /usr/bin/kubectl (skips otherwise).
Test-only names: node "kstest-node", bridge "kstestkl0", pod CIDR
10.244.248.0/24, image tag "kstest/busybox:v2" (a second tag of busybox:1.35
so that an image change can roll out without a registry; removed at the
end). Processes stop by PID, containers go by the shim's node label.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import yaml

import support
from kubeling.client import kubeconfig as kubeconfig_file
from support import wait_for

NODE = "kstest-node"
BRIDGE = "kstestkl0"
POD_CIDR = "10.244.248.0/24"
IMAGE = "busybox:1.35"
IMAGE2 = "kstest/busybox:v2"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.e2e

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: TIER}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, tier: TIER}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: IMAGE
        command: [sh, -c, "mkdir -p /www; echo hello > /www/index.html; echo started; exec httpd -f -p 80 -h /www"]
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


def manifest(image: str = IMAGE, tier: str = "one") -> str:
    return MANIFEST.replace("IMAGE", image).replace("TIER", tier)


class Session:
    """Runs /usr/bin/kubectl with the admin kubeconfig, its own HOME and --cache-dir."""

    def __init__(self, n: support.TestNode, kubeconfig: str, home: str):
        self.n, self.kubeconfig, self.home = n, kubeconfig, home
        self.http = n.http

    def argv(self, *args: str) -> list[str]:
        return [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(self.home, "cache"), *args]

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "PATH": "/usr/bin:/bin"}

    def run(self, *args: str, input: str | None = None, rc: int | None = 0,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """kubectl ``args``; asserts the exit code is ``rc`` (None: any) with diagnostics."""
        r = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True, timeout=timeout,
                           env=self.env)
        if rc is not None:
            assert r.returncode == rc, self.diag(r, args)
        return r

    def popen(self, *args: str) -> subprocess.Popen:
        """kubectl ``args`` in its own process group (stop it with support.stop_process_group)."""
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, start_new_session=True)

    def diag(self, r: subprocess.CompletedProcess, args=()) -> str:
        logs = "\n".join(f"--- {name} ---\n{self.n.procs.log(name, 2000)}"
                         for name in ("apiserver", "controller-manager", "scheduler", "kubelet"))
        return f"kubectl {' '.join(args)} -> {r.returncode}\nstdout={r.stdout!r}\nstderr={r.stderr!r}\n{logs}"

    def pods(self) -> list[dict]:
        """The web pods (JSON), not being deleted."""
        items = self.http.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=web"}).json()["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def running_pods(self) -> list[dict]:
        return [p for p in self.pods() if p.get("status", {}).get("phase") == "Running"]


class LineReader:
    """Collects a process's stdout lines in a thread so a test can wait for one, bounded."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def wait(self, what: str, pred, timeout: float = 20) -> str:
        return wait_for(what, lambda: next((ln for ln in list(self.lines) if pred(ln)), None), timeout, 0.1)


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    """The cluster and a kubectl Session over it; removes the extra image tag at the end."""
    if os.geteuid() != 0:
        pytest.skip("the kubectl session needs root (bridge, Docker)")
    if KUBECTL is None:
        pytest.skip("the kubectl session needs /usr/bin/kubectl")
    docker_client = support.docker_or_skip("the kubectl session", IMAGE)
    tmp = tmp_path_factory.mktemp("kubectl-session")
    docker_client.images.get(IMAGE).tag(IMAGE2)
    try:
        with support.node(tmp, name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR, docker_client=docker_client,
                          image=IMAGE, store="etcdlite3", kubelet_flags=["--sync-frequency", "2"],
                          apiserver_args=["--service-cluster-ip-range", "10.96.0.0/12"]) as n:
            admin = tmp / "admin.kubeconfig"
            kubeconfig_file.write(admin, server=n.api, user="admin")
            support.start_scheduler_and_controllers(n.cp, kubeconfig=admin, timeout=60)
            home = tmp / "kubectl-home"
            home.mkdir()
            # The apiserver may still be creating the default namespace.
            wait_for("namespace default", lambda: n.http.get("/api/v1/namespaces/default").status_code == 200, 30)
            yield Session(n, str(admin), str(home))
            # Leave no pod behind for the node fixture's teardown to race with.
            n.http.delete("/apis/apps/v1/namespaces/default/deployments/web")
    finally:
        try:
            docker_client.images.remove(IMAGE2, noprune=True)
        except Exception:  # noqa: BLE001 - the tag may be gone already
            pass


def eventually(what: str, check, timeout: float = 15.0):
    """Run ``check`` (asserting) until it passes, at most ``timeout`` s; returns its result.

    For steps that read what components write in the background (events,
    EndpointSlices) a moment after the state a previous step waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} (after {timeout}s): {e}") from None
        time.sleep(0.5)


def cols(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


# ------------------------------------------------------------------ the session, in a user's order

def test_version(kc):
    r = kc.run("version")
    assert re.search(r"Client Version: v1\.32\.\d+", r.stdout), r.stdout
    assert re.search(r"Server Version: v1\.32\.", r.stdout), r.stdout
    info = json.loads(kc.run("version", "-o", "json").stdout)
    assert info["serverVersion"]["major"] == "1" and info["serverVersion"]["minor"] == "32"


def test_api_resources(kc):
    out = kc.run("api-resources").stdout
    lines = out.splitlines()
    assert cols(lines[0]) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    # name -> columns; the first row wins (pods of metrics.k8s.io come after core's).
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:
        rows.setdefault(cols(line)[0], cols(line))
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"], rows["pods"]
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    assert rows["services"][:2] == ["services", "svc"]


def test_apply_creates_with_validation(kc):
    r = kc.run("apply", "-f", "-", input=manifest())
    assert r.stdout.splitlines() == ["deployment.apps/web created", "service/web created"], r.stdout
    assert r.stderr == "", r.stderr


def test_rollout_status(kc):
    r = kc.run("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
    assert 'deployment "web" successfully rolled out' in r.stdout, r.stdout
    assert len(kc.running_pods()) == 2
    r = kc.run("wait", "--for=condition=Available", "deployment/web", "--timeout=30s", timeout=40)
    assert r.stdout.strip() == "deployment.apps/web condition met"
    r = kc.run("wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=30s", timeout=40)
    assert len(r.stdout.strip().splitlines()) == 2 and "condition met" in r.stdout


def test_get_pods_plain_wide_yaml_json(kc):
    lines = kc.run("get", "pods").stdout.splitlines()
    assert cols(lines[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    web = [cols(line) for line in lines[1:] if line.startswith("web-")]
    assert len(web) == 2 and all(c[1:4] == ["1/1", "Running", "0"] for c in web), lines
    lines = kc.run("get", "pods", "-o", "wide").stdout.splitlines()
    assert cols(lines[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                              "READINESS GATES"]
    for line in lines[1:]:
        c = cols(line)
        assert c[5].startswith("10.244.248.") and c[6] == NODE and c[7:] == ["<none>", "<none>"], line
    doc = yaml.safe_load(kc.run("get", "pods", "-o", "yaml").stdout)
    assert doc["kind"] == "List" and len(doc["items"]) == 2
    assert all(p["spec"]["nodeName"] == NODE and p["status"]["phase"] == "Running" for p in doc["items"])
    doc = json.loads(kc.run("get", "pods", "-o", "json").stdout)
    assert doc["apiVersion"] == "v1" and {p["metadata"]["ownerReferences"][0]["kind"] for p in doc["items"]} \
        == {"ReplicaSet"}
    one = json.loads(kc.run("get", "pod", doc["items"][0]["metadata"]["name"], "-o", "json").stdout)
    assert one["kind"] == "Pod" and one["status"]["podIP"].startswith("10.244.248.")


def test_get_all_namespaces_labels_sort(kc):
    lines = kc.run("get", "pods", "-A").stdout.splitlines()
    assert cols(lines[0]) == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert sum(1 for line in lines[1:] if cols(line)[0] == "default" and cols(line)[1].startswith("web-")) == 2
    lines = kc.run("get", "pods", "-L", "app", "-L", "tier").stdout.splitlines()
    assert cols(lines[0])[-2:] == ["APP", "TIER"]
    assert all(cols(line)[-2:] == ["web", "one"] for line in lines[1:]), lines
    lines = kc.run("get", "pods", "--sort-by=.metadata.name", "--no-headers").stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert len(names) == 2 and names == sorted(names)
    r = kc.run("get", "pods", "-l", "app=nothing")
    assert r.stdout == "" and "No resources found in default namespace." in r.stderr


def test_get_all(kc):
    out = kc.run("get", "all").stdout
    for needle in ("service/kubernetes", "service/web", "deployment.apps/web", "replicaset.apps/web-"):
        assert needle in out, out
    assert len(re.findall(r"^pod/web-", out, re.M)) == 2, out
    assert re.search(r"^deployment\.apps/web\s+2/2\s+2\s+2\s", out, re.M), out


def test_get_watch_sees_a_change(kc):
    proc = kc.popen("get", "deployments", "-w", "--request-timeout=30s")
    try:
        reader = LineReader(proc)
        reader.wait("the header", lambda ln: ln.startswith("NAME"))
        reader.wait("the web row", lambda ln: ln.startswith("web "))
        r = kc.http.patch("/apis/apps/v1/namespaces/default/deployments/web",
                          json={"metadata": {"annotations": {"kstest/watched": "yes"}}},
                          headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        # The annotation bumps resourceVersion: a second web row appears.
        wait_for("a second web row", lambda: sum(ln.startswith("web ") for ln in reader.lines) >= 2, 15, 0.1)
    finally:
        support.stop_process_group(proc)
    # A watch with a server timeout ends by itself, exit code 0.
    r = kc.run("get", "pods", "-w", "--request-timeout=3s", timeout=30, rc=None)
    assert r.returncode == 0 and r.stdout.startswith("NAME"), kc.diag(r)


def test_describe(kc):
    out = kc.run("describe", "deployment", "web").stdout
    assert re.search(r"^Name:\s+web$", out, re.M) and re.search(r"^Replicas:\s+2 desired \| 2 updated \| 2 total "
                                                               r"\| 2 available \| 0 unavailable", out, re.M), out
    assert re.search(r"^NewReplicaSet:\s+web-\w+ \(2/2 replicas created\)", out, re.M), out
    assert "ScalingReplicaSet" in out, out
    pod = sorted(p["metadata"]["name"] for p in kc.running_pods())[0]

    def described():
        out = kc.run("describe", "pod", pod).stdout
        assert re.search(rf"^Node:\s+{NODE}/127\.0\.0\.1$", out, re.M), out
        assert re.search(r"^Status:\s+Running$", out, re.M), out
        events = out[out.index("Events:"):]
        assert re.search(rf"Normal\s+Scheduled\s+.*default-scheduler\s+Successfully assigned default/{pod} to "
                         rf"{NODE}", events), events
        for reason, message in (("Pulled", f'Container image "{IMAGE}" already present on machine'),
                                ("Created", "Created container httpd"), ("Started", "Started container httpd")):
            assert re.search(rf"Normal\s+{reason}\s+.*kubelet\s+{re.escape(message)}", events), events
    eventually("describe pod shows the scheduler's and the kubelet's events", described)


def test_describe_node(kc):
    """describe node: Ready, the pod CIDR, the web pods, and the kubelet's node events."""
    def described():
        out = kc.run("describe", "node", NODE).stdout
        assert re.search(r"^\s+Ready\s+True\s+.*KubeletReady", out, re.M), out
        assert re.search(rf"^PodCIDR:\s+{re.escape(POD_CIDR)}$", out, re.M), out
        assert len(re.findall(r"^\s+default\s+web-", out, re.M)) == 2, out
        events = out[out.index("Events:"):]
        for reason, message in (("Starting", "Starting kubelet."),
                                ("NodeHasSufficientMemory", f"Node {NODE} status is now: NodeHasSufficientMemory"),
                                ("NodeReady", f"Node {NODE} status is now: NodeReady")):
            assert re.search(rf"Normal\s+{reason}\s+.*kubelet\s+{re.escape(message)}", events), events
    eventually("describe node shows the kubelet's events", described)


def test_describe_service_and_endpointslices(kc):
    """kubectl 1.32 describes a Service's endpoints from its EndpointSlices."""
    ips = sorted(p["status"]["podIP"] for p in kc.running_pods())

    def described():
        out = kc.run("describe", "service", "web").stdout
        m = re.search(r"^Endpoints:\s+(.*)$", out, re.M)
        assert m and sorted(m.group(1).split(",")) == sorted(f"{ip}:80" for ip in ips), out
    eventually("describe service lists the pods' endpoints", described)
    lines = kc.run("get", "endpointslices", "-l", "kubernetes.io/service-name=web").stdout.splitlines()
    assert cols(lines[0]) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    [row] = [cols(line) for line in lines[1:]]
    assert row[0].startswith("web-") and row[1:3] == ["IPv4", "80"] and sorted(row[3].split(",")) == ips, lines


def test_get_events_both_apis(kc):
    """core/v1 and events.k8s.io/v1 list the same events with OBJECT and MESSAGE filled."""
    for resource in ("events", "events.events.k8s.io"):
        lines = kc.run("get", resource).stdout.splitlines()
        assert cols(lines[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], lines
        rows = [cols(line) for line in lines[1:]]
        assert any(r[2] == "ScalingReplicaSet" and r[3] == "deployment/web" and
                   r[4].startswith("Scaled up replica set web-") for r in rows), (resource, lines)
        assert any(r[2] == "Scheduled" and r[3].startswith("pod/web-") and
                   r[4].startswith("Successfully assigned default/web-") for r in rows), (resource, lines)
    # SOURCE (wide) is component[, host]: controllers have no host, the kubelet has its node's.
    out = kc.run("get", "events", "-o", "wide").stdout
    assert re.search(r"ScalingReplicaSet\s+deployment/web\s+deployment-controller\s+Scaled up", out), out
    assert re.search(rf"Started\s+pod/web-\S+\s+spec\.containers\{{httpd\}}\s+kubelet, {NODE}\s+Started", out) or \
        re.search(rf"Started\s+pod/web-\S+\s+kubelet, {NODE}\s+Started", out), out


def test_apply_configured_then_unchanged(kc):
    r = kc.run("apply", "-f", "-", input=manifest(IMAGE2, "two"))
    assert r.stdout.splitlines() == ["deployment.apps/web configured", "service/web unchanged"], r.stdout
    r = kc.run("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
    assert 'deployment "web" successfully rolled out' in r.stdout, r.stdout
    pods = kc.pods()
    assert len(pods) == 2 and all(p["spec"]["containers"][0]["image"] == IMAGE2 and
                                  p["metadata"]["labels"]["tier"] == "two" for p in pods), pods
    r = kc.run("apply", "-f", "-", input=manifest(IMAGE2, "two"))
    assert r.stdout.splitlines() == ["deployment.apps/web unchanged", "service/web unchanged"], r.stdout
    out = kc.run("get", "deploy", "web", "-o", "wide").stdout.splitlines()
    assert cols(out[1])[:4] == ["web", "2/2", "2", "2"] and IMAGE2 in out[1], out


def _replicasets(kc) -> dict[str, int]:
    """ReplicaSet name -> spec.replicas of the web Deployment's ReplicaSets."""
    items = kc.http.get("/apis/apps/v1/namespaces/default/replicasets").json()["items"]
    return {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in items}


def test_stuck_rollout_then_undo(kc):
    """A template whose container keeps crashing makes no progress: after progressDeadlineSeconds
    rollout status fails with ProgressDeadlineExceeded; undo brings back revision 2's ReplicaSet
    (no fourth one) and the rollout completes."""
    before = _replicasets(kc)
    assert len(before) == 2 and sorted(before.values()) == [0, 2], before
    current = next(name for name, n in before.items() if n == 2)
    patch = {"spec": {"progressDeadlineSeconds": 3, "template": {"spec": {"containers": [
        {"name": "httpd", "command": ["sh", "-c", "echo crashing; exit 1"]}]}}}}
    r = kc.run("patch", "deployment", "web", "-p", json.dumps(patch))
    assert r.stdout.strip() == "deployment.apps/web patched"
    r = kc.run("rollout", "status", "deployment/web", "--timeout=45s", rc=1, timeout=60)
    assert r.stderr.strip() == 'error: deployment "web" exceeded its progress deadline', kc.diag(r)
    cond = next(c for c in kc.http.get("/apis/apps/v1/namespaces/default/deployments/web").json()["status"]
                ["conditions"] if c["type"] == "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded"), cond
    lines = kc.run("rollout", "history", "deployment/web").stdout.splitlines()
    assert lines[0] == "deployment.apps/web " and cols(lines[1]) == ["REVISION", "CHANGE-CAUSE"]
    assert [cols(line)[0] for line in lines[2:] if line.strip()] == ["1", "2", "3"], lines
    assert kc.run("rollout", "undo", "deployment/web").stdout.strip() == "deployment.apps/web rolled back"
    r = kc.run("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
    assert 'deployment "web" successfully rolled out' in r.stdout, r.stdout
    after = _replicasets(kc)
    assert len(after) == 3 and after[current] == 2 and sum(after.values()) == 2, (before, after)
    assert {p["spec"]["containers"][0]["image"] for p in kc.pods()} == {IMAGE2}
    # Back to the manifest's deadline (apply leaves fields it never set alone).
    kc.run("patch", "deployment", "web", "-p", '{"spec":{"progressDeadlineSeconds":600}}')


def test_scale(kc):
    r = kc.run("scale", "deployment", "web", "--replicas=3")
    assert r.stdout.strip() == "deployment.apps/web scaled"
    wait_for("3 Running web pods", lambda: len(kc.running_pods()) == 3, 60, 0.5)
    r = kc.run("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
    assert "successfully rolled out" in r.stdout
    out = kc.run("get", "deploy", "web", "--no-headers").stdout
    assert cols(out)[1:4] == ["3/3", "3", "3"], out


def _a_pod(kc) -> str:
    return sorted(p["metadata"]["name"] for p in kc.running_pods())[0]


def test_logs_and_follow(kc):
    pod = _a_pod(kc)
    assert kc.run("logs", pod).stdout == "started\n"
    assert kc.run("logs", "deployment/web").stdout == "started\n"
    proc = kc.popen("logs", "-f", pod)
    try:
        reader = LineReader(proc)
        reader.wait("the first line", lambda ln: ln == "started\n")
        # A line written after kubectl started following: exec writes it to the container's stdout.
        kc.run("exec", pod, "--", "sh", "-c", "echo after-start > /proc/1/fd/1")
        try:
            reader.wait("the new line", lambda ln: ln == "after-start\n", 15)
        except AssertionError as e:
            r = kc.run("logs", pod, rc=None)
            raise AssertionError(f"{e}\nlines={reader.lines}\nlogs now: {r.stdout!r}\n{kc.diag(r)}") from None
    finally:
        support.stop_process_group(proc)


def test_exec(kc):
    pod = _a_pod(kc)
    r = kc.run("exec", pod, "--", "sh", "-c", "exit 3", rc=3)
    assert r.stdout == ""
    r = kc.run("exec", pod, "--", "echo", "hello", "from", "exec")
    assert r.stdout == "hello from exec\n"
    r = kc.run("exec", pod, "-c", "httpd", "--", "wget", "-qO-", "http://127.0.0.1/")
    assert r.stdout == "hello\n"


def test_top_pods(kc):
    pods = {p["metadata"]["name"] for p in kc.running_pods()}

    def top():
        r = kc.run("top", "pods", rc=None)
        if r.returncode != 0:
            return None
        rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
        return r if pods <= rows.keys() else None
    r = wait_for("kubectl top pods to list every web pod", top, 40, 1)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    for line in lines[1:]:
        _, cpu, mem = line.split()
        assert re.fullmatch(r"\d+m", cpu) and re.fullmatch(r"\d+Mi", mem), line


def test_explain(kc):
    out = kc.run("explain", "pods.spec.containers").stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M) and re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert re.search(r"^FIELD:\s+containers <\[\]Container>", out, re.M), out
    assert re.search(r"^\s+image\s+<string>", out, re.M) and "livenessProbe" in out, out


def test_create_from_generators(kc):
    """``kubectl create configmap`` sends protobuf (kubectl's typed clients), which the server decodes
    (apiserver/protobuf.py); ``create -f`` (JSON) works as well."""
    assert kc.run("create", "configmap", "gen", "--from-literal=a=b").stdout.strip() == "configmap/gen created"
    assert kc.run("get", "configmap", "gen", "-o", "jsonpath={.data.a}").stdout == "b"
    assert kc.run("delete", "configmap", "gen").stdout.strip() == 'configmap "gen" deleted'
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gen}\ndata: {a: b}\n"
    assert kc.run("create", "-f", "-", input=cm).stdout.strip() == "configmap/gen created"
    assert kc.run("get", "configmap", "gen", "-o", "jsonpath={.data.a}").stdout == "b"
    assert kc.run("delete", "configmap", "gen").stdout.strip() == 'configmap "gen" deleted'


def test_delete_pod_is_replaced(kc):
    pod = _a_pod(kc)
    started = time.monotonic()
    r = kc.run("delete", "pod", pod, "--timeout=45s", timeout=60)
    assert r.stdout.strip() == f'pod "{pod}" deleted'
    # kubectl returned only once the pod was gone.
    assert kc.http.get(f"/api/v1/namespaces/default/pods/{pod}").status_code == 404
    assert time.monotonic() - started < 45
    wait_for("3 Running web pods again", lambda: len(kc.running_pods()) == 3 and
             pod not in {p["metadata"]["name"] for p in kc.running_pods()}, 60, 0.5)


def test_delete_f(kc):
    r = kc.run("delete", "-f", "-", "--timeout=60s", input=manifest(IMAGE2, "two"), timeout=75)
    assert r.stdout.splitlines() == ['deployment.apps "web" deleted', 'service "web" deleted'], r.stdout
    r = kc.run("get", "deployment", "web", rc=1)
    assert 'deployments.apps "web" not found' in r.stderr
    wait_for("the web pods gone", lambda: not kc.http.get(
        "/api/v1/namespaces/default/pods", params={"labelSelector": "app=web"}).json()["items"], 60, 0.5)
    r = kc.run("get", "pods")
    assert r.stdout == "" and "No resources found" in r.stderr
