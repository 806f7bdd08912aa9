"""The kubelet as a real process: etcd, apiserver, CRI shim over Docker, kubelet.

Needs root and a running Docker with busybox:1.35. Every name is test-only:
node "kltest-kubelet", bridge "kltestkl0", pod CIDR 10.244.253.0/24 (set on
the Node by the test, since no controller-manager runs), no safety routes
(the kubelet adds them only with --cluster-cidr/--service-cluster-ip-range,
which a running dev cluster owns). Processes are stopped by PID, containers
removed by the shim's node label, the bridge deleted, in finally.
"""
from __future__ import annotations

import ipaddress
import os
import time
import uuid

import httpx
import pytest

import support
from support import wait_for

NODE = "kltest-kubelet"
BRIDGE = "kltestkl0"
POD_CIDR = "10.244.253.0/24"
IMAGE = "busybox:1.35"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """etcd + apiserver + shim + kubelet on free ports; yields a dict of handles."""
    docker_client = support.node_or_skip("kubelet e2e tests", IMAGE)
    with support.node(tmp_path_factory.mktemp("kubelet"), name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR,
                      docker_client=docker_client, image=IMAGE,
                      kubelet_flags=["--crashloop-backoff-initial", "1", "--crashloop-backoff-max", "4",
                                     "--sync-frequency", "2"]) as n:
        yield {"http": n.http, "kubeconfig": n.kubeconfig, "procs": n.procs, "kubelet_args": n.kubelet_args,
               "kubelet": n.kubelet, "healthz": n.healthz, "docker": docker_client, "tmp": str(n.cp.tmp)}


def get_pod(http: httpx.Client, name: str) -> dict:
    r = http.get(f"/api/v1/namespaces/default/pods/{name}")
    r.raise_for_status()
    return r.json()


def create_pod(http: httpx.Client, name: str, container: dict, **spec) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
                    "containers": [dict({"image": IMAGE}, **container)], **spec}}
    r = http.post("/api/v1/namespaces/default/pods", json=pod)
    assert r.status_code == 201, r.text
    return r.json()


def cond(pod: dict, ctype: str) -> str | None:
    for c in pod.get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return c["status"]
    return None


def test_node_registered_ready_with_lease(cluster):
    """The Node carries labels, capacity, nodeInfo and becomes Ready once it has a pod CIDR; a Lease is renewed."""
    http = cluster["http"]

    seen = {}

    def ready_node():
        seen["node"] = node = http.get(f"/api/v1/nodes/{NODE}").json()
        return node if cond(node, "Ready") == "True" else None
    try:
        node = wait_for("node Ready", ready_node, 30)
    except AssertionError as e:
        raise AssertionError(f"{e}\nnode: {seen.get('node')}\nkubelet log:\n{cluster['procs'].log('kubelet')}")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    st = node["status"]
    assert st["capacity"]["pods"] == "110" and int(st["capacity"]["cpu"]) >= 1
    assert st["capacity"]["memory"].endswith("Ki")
    assert st["nodeInfo"]["kubeletVersion"] == "v1.32.0-kubeling"
    assert st["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["reason"] == "KubeletReady"
    lease = wait_for("lease", lambda: http.get(
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}").json().get("spec"), 20)
    assert lease["holderIdentity"] == NODE and lease["renewTime"]
    assert httpx.get(cluster["healthz"] + "/healthz", trust_env=False).text == "ok"
    assert httpx.get(cluster["kubelet"] + "/healthz", trust_env=False).text == "ok"


def test_pod_runs_serves_logs_and_is_deleted(cluster):
    """A busybox httpd pod goes Running and Ready with an IP in the pod CIDR, answers
    HTTP, shows its output through /containerLogs and the apiserver, and deletion
    removes it from the API and its containers from Docker."""
    http, dock = cluster["http"], cluster["docker"]
    name = f"web-{uuid.uuid4().hex[:6]}"
    created = create_pod(http, name, {
        "name": "web", "command": ["sh", "-c"],
        "args": ["echo hello; mkdir -p /www; echo ok > /www/index.html; httpd -f -p 8080 -h /www"],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}})
    uid = created["metadata"]["uid"]

    def running_ready():
        p = get_pod(http, name)
        return p if p["status"].get("phase") == "Running" and cond(p, "Ready") == "True" else None
    try:
        pod = wait_for("pod Running and Ready", running_ready, 60)
    except AssertionError as e:
        raise AssertionError(f"{e}\nkubelet log:\n{cluster['procs'].log('kubelet')}") from None
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR)
    assert pod["status"]["hostIP"] == "127.0.0.1" and pod["status"]["qosClass"] == "BestEffort"
    cs = pod["status"]["containerStatuses"][0]
    assert cs["ready"] and cs["containerID"].startswith("docker://") and "running" in cs["state"]

    body = wait_for("httpd answer", lambda: httpx.get(f"http://{ip}:8080/", timeout=3, trust_env=False).text, 20)
    assert body.strip() == "ok"
    web = dock.containers.list(filters={"label": [f"io.kubernetes.pod.uid={uid}",
                                                  "io.kubernetes.container.name=web"]})[0]
    hosts = web.exec_run(["cat", "/etc/hosts"]).output.decode()  # the kubelet-managed file
    assert hosts.startswith("# Kubernetes-managed hosts file.") and f"{ip}\t{name}\n" in hosts, hosts

    logs = httpx.get(f"{cluster['kubelet']}/containerLogs/default/{name}/web", trust_env=False, timeout=10)
    assert logs.status_code == 200 and "hello" in logs.text
    ts = httpx.get(f"{cluster['kubelet']}/containerLogs/default/{name}/web",
                   params={"timestamps": "true", "tailLines": "1"}, trust_env=False, timeout=10).text
    assert ts.strip().endswith("hello") and ts[:4].isdigit()
    with httpx.stream("GET", f"{cluster['kubelet']}/containerLogs/default/{name}/web", params={"follow": "true"},
                      trust_env=False, timeout=10) as resp:
        first = next(resp.iter_text())  # the stream stays open while httpd runs
    assert "hello" in first
    via_api = http.get(f"/api/v1/namespaces/default/pods/{name}/log")
    assert via_api.status_code == 200 and "hello" in via_api.text
    listed = httpx.get(f"{cluster['kubelet']}/pods", trust_env=False, timeout=10).json()
    assert name in [p["metadata"]["name"] for p in listed["items"]]
    missing = httpx.get(f"{cluster['kubelet']}/containerLogs/default/{name}/nope", trust_env=False, timeout=10)
    assert missing.status_code == 404

    events = http.get("/api/v1/namespaces/default/events").json()["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("uid") == uid}
    assert {"Created", "Started"} <= reasons, reasons

    r = http.delete(f"/api/v1/namespaces/default/pods/{name}")
    assert r.status_code in (200, 202), r.text
    wait_for("pod gone from the API", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
             == 404, 30)
    wait_for("containers gone from Docker", lambda: not dock.containers.list(
        all=True, filters={"label": f"io.kubernetes.pod.uid={uid}"}), 30)


def test_crashloop_and_completion(cluster):
    """A crashing container is restarted with backoff (CrashLoopBackOff, restartCount grows);
    a restartPolicy Never pod that exits 0 ends Succeeded with its sandbox stopped."""
    http = cluster["http"]
    crash = f"crash-{uuid.uuid4().hex[:6]}"
    create_pod(http, crash, {"name": "c", "command": ["sh", "-c", "echo boom; exit 3"]})
    done = f"done-{uuid.uuid4().hex[:6]}"
    create_pod(http, done, {"name": "d", "command": ["sh", "-c", "echo fine"]}, restartPolicy="Never")

    def restarted():
        cs = (get_pod(http, crash)["status"].get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 2 else None
    cs = wait_for("crashing container restarted twice", restarted, 45)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert get_pod(http, crash)["status"]["phase"] == "Running"

    def backoff_seen():
        cs = get_pod(http, crash)["status"]["containerStatuses"][0]
        return cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
    wait_for("CrashLoopBackOff", backoff_seen, 30, interval=0.1)
    prev = httpx.get(f"{cluster['kubelet']}/containerLogs/default/{crash}/c", params={"previous": "true"},
                     trust_env=False, timeout=10)
    assert prev.status_code == 200 and "boom" in prev.text

    pod = wait_for("pod Succeeded", lambda: (p := get_pod(http, done))["status"].get("phase") == "Succeeded"
                   and p, 30)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    for name in (crash, done):
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
    for name in (crash, done):
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)


def test_liveness_failure_restarts_container(cluster):
    """An exec liveness probe that starts failing makes the kubelet kill and restart the container."""
    http = cluster["http"]
    name = f"live-{uuid.uuid4().hex[:6]}"
    create_pod(http, name, {
        "name": "l", "command": ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 600"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
                          "failureThreshold": 1}})
    try:
        def restarted():
            cs = (get_pod(http, name)["status"].get("containerStatuses") or [{}])[0]
            return cs if cs.get("restartCount", 0) >= 1 else None
        wait_for("liveness restart", restarted, 40)
        events = http.get("/api/v1/namespaces/default/events").json()["items"]
        assert any(e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == name for e in events)
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)


def test_kubelet_restart_keeps_containers_and_adopts_pod(cluster):
    """SIGTERM stops the kubelet but not the pod; a new kubelet adopts the running
    containers (same container ID, no restart) instead of recreating them."""
    http, procs = cluster["http"], cluster["procs"]
    name = f"keep-{uuid.uuid4().hex[:6]}"
    create_pod(http, name, {"name": "k", "command": ["sleep", "600"]})
    try:
        pod = wait_for("pod Running", lambda: (p := get_pod(http, name))["status"].get("phase") == "Running"
                       and p, 40)
        cid = pod["status"]["containerStatuses"][0]["containerID"]
        procs.stop("kubelet")
        dock = cluster["docker"]
        assert dock.containers.get(cid.split("//", 1)[1]).status == "running"
        procs.spawn("kubelet", cluster["kubelet_args"])
        wait_for("kubelet healthz", lambda: httpx.get(cluster["healthz"] + "/healthz", trust_env=False).text
                 == "ok", 30)
        time.sleep(3)  # a few PLEG relists and syncs
        cs = get_pod(http, name)["status"]["containerStatuses"][0]
        assert cs["containerID"] == cid and cs["restartCount"] == 0 and "running" in cs["state"]
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)


def test_init_containers_run_in_order_before_app(cluster):
    """Init containers run one after the other to completion, then the app container starts."""
    http = cluster["http"]
    name = f"init-{uuid.uuid4().hex[:6]}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "initContainers": [{"name": "first", "image": IMAGE, "command": ["sh", "-c", "echo one"]},
                                       {"name": "second", "image": IMAGE, "command": ["sh", "-c", "sleep 1"]}],
                    "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "600"]}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    try:
        p = wait_for("pod Running", lambda: (p := get_pod(http, name))["status"].get("phase") == "Running" and p, 40)
        inits = {s["name"]: s for s in p["status"]["initContainerStatuses"]}
        assert all(s["state"]["terminated"]["reason"] == "Completed" and s["ready"] for s in inits.values())
        assert inits["first"]["state"]["terminated"]["finishedAt"] <= \
            inits["second"]["state"]["terminated"]["startedAt"]
        assert cond(p, "Initialized") == "True"
        logs = httpx.get(f"{cluster['kubelet']}/containerLogs/default/{name}/first", trust_env=False, timeout=10)
        assert logs.text == "one\n"
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)


def test_host_network_pod_gets_node_ip(cluster):
    """A hostNetwork pod runs in the node's network namespace and reports the node IP as its pod IP."""
    http = cluster["http"]
    name = f"hostnet-{uuid.uuid4().hex[:6]}"
    create_pod(http, name, {"name": "h", "command": ["sleep", "600"]}, hostNetwork=True)
    try:
        p = wait_for("pod Running", lambda: (p := get_pod(http, name))["status"].get("phase") == "Running" and p, 40)
        assert p["status"]["podIP"] == "127.0.0.1"
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)


def test_config_map_and_secret_as_files_and_env_and_shared_empty_dir(cluster):
    """A configMap and a secret mounted as files and drawn into env; two containers share an
    emptyDir (one writes, the other reads); a ConfigMap update reaches the mounted file; a
    missing ConfigMap holds the pod in ContainerCreating with a FailedMount event."""
    http = cluster["http"]
    suffix = uuid.uuid4().hex[:6]
    cm, secret, name = f"cfg-{suffix}", f"creds-{suffix}", f"vols-{suffix}"
    assert http.post("/api/v1/namespaces/default/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm},
        "data": {"greeting": "hello", "color": "blue"}}).status_code == 201
    assert http.post("/api/v1/namespaces/default/secrets", json={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
        "stringData": {"password": "s3cr3t"}}).status_code == 201
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "volumes": [{"name": "cfg", "configMap": {"name": cm}},
                                {"name": "creds", "secret": {"secretName": secret}},
                                {"name": "shared", "emptyDir": {}}],
                    "containers": [
                        {"name": "writer", "image": IMAGE,
                         "command": ["sh", "-c", "echo from-writer > /shared/msg; sleep 600"],
                         "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                        {"name": "reader", "image": IMAGE, "command": ["sleep", "600"],
                         "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret,
                                                                                     "key": "password"}}}],
                         "envFrom": [{"configMapRef": {"name": cm}, "prefix": "CM_"}],
                         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                                          {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                                          {"name": "shared", "mountPath": "/data"}]}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    docker = cluster["docker"]

    def reader_exec(cmd: str) -> str:
        containers = docker.containers.list(filters={"label": [f"io.kubernetes.pod.name={name}",
                                                               "io.kubernetes.container.name=reader"]})
        assert containers, "reader container not found"
        r = containers[0].exec_run(["sh", "-c", cmd])
        return r.output.decode()

    try:
        wait_for("pod Running", lambda: get_pod(http, name)["status"].get("phase") == "Running", 40)
        assert reader_exec("cat /etc/cfg/greeting /etc/creds/password") == "hellos3cr3t"
        env = reader_exec("env")
        assert "PASSWORD=s3cr3t" in env and "CM_greeting=hello" in env and "CM_color=blue" in env
        wait_for("the writer's file in the reader", lambda: reader_exec("cat /data/msg") == "from-writer\n", 15)
        assert "Read-only" in reader_exec("touch /etc/creds/x 2>&1")
        r = http.patch(f"/api/v1/namespaces/default/configmaps/{cm}", json={"data": {"greeting": "updated"}},
                       headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        wait_for("the ConfigMap update in the mounted file",
                 lambda: reader_exec("cat /etc/cfg/greeting") == "updated", 30)
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)
    volumes_dir = os.path.join(cluster["tmp"], "node", "pods")
    assert not any(os.path.exists(os.path.join(volumes_dir, d, "volumes")) for d in
                   (os.listdir(volumes_dir) if os.path.isdir(volumes_dir) else []))

    stuck = f"nocm-{suffix}"
    assert http.post("/api/v1/namespaces/default/pods", json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": stuck, "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "volumes": [{"name": "cfg", "configMap": {"name": "does-not-exist"}}],
                 "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "600"],
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}]}}).status_code == 201
    try:
        def failed_mount():
            evs = http.get("/api/v1/namespaces/default/events",
                           params={"fieldSelector": f"involvedObject.name={stuck},reason=FailedMount"}).json()
            return evs["items"]
        evs = wait_for("a FailedMount event", failed_mount, 30)
        assert 'configmap "does-not-exist" not found' in evs[0]["message"]
        def waiting():
            statuses = get_pod(http, stuck)["status"].get("containerStatuses") or []
            return statuses and statuses[0]["state"].get("waiting", {}).get("reason") == "ContainerCreating"
        wait_for("the container waiting in ContainerCreating", waiting, 15)
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{stuck}")
        for path in (f"configmaps/{cm}", f"secrets/{secret}"):
            http.delete(f"/api/v1/namespaces/default/{path}")


def test_post_start_and_pre_stop_hooks(cluster, tmp_path):
    """postStart runs right after the container starts, preStop runs before it is stopped on
    deletion (both write into a hostPath the test reads); a failing postStart kills the container."""
    http = cluster["http"]
    name = f"hooks-{uuid.uuid4().hex[:6]}"
    host_dir = tmp_path / "hooks"
    host_dir.mkdir()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5,
                    "volumes": [{"name": "out", "hostPath": {"path": str(host_dir), "type": "Directory"}}],
                    "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "600"],
                                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                                    "lifecycle": {
                                        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /out/post"]}},
                                        "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /out/pre"]}}}}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    try:
        wait_for("pod Running", lambda: get_pod(http, name)["status"].get("phase") == "Running", 40)
        assert (host_dir / "post").read_text() == "started\n"
        assert not (host_dir / "pre").exists()
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)
    assert (host_dir / "pre").read_text() == "stopping\n"

    bad = f"badhook-{uuid.uuid4().hex[:6]}"
    pod["metadata"]["name"] = bad
    pod["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    try:
        def failed_hook():
            evs = http.get("/api/v1/namespaces/default/events",
                           params={"fieldSelector": f"involvedObject.name={bad},reason=FailedPostStartHook"}).json()
            return evs["items"]
        evs = wait_for("a FailedPostStartHook event", failed_hook, 30)
        assert "exited with 7" in evs[0]["message"]
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{bad}")
        wait_for(f"{bad} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{bad}").status_code
                 == 404, 30)


def test_kill_9_kubelet_and_shim_under_20_pods_loses_nothing(cluster):
    """SIGKILL the kubelet and the CRI shim while 20 pods run, start them again: exactly the same
    20 pods run in the same containers (no restart, no duplicate, no orphan), status intact."""
    import signal
    http, procs, dock = cluster["http"], cluster["procs"], cluster["docker"]
    tag = uuid.uuid4().hex[:6]
    names = [f"many-{tag}-{i}" for i in range(20)]
    for name in names:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": {"batch": tag}},
               "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "600"]}]}}
        assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201

    def running_ids():
        items = http.get("/api/v1/namespaces/default/pods", params={"labelSelector": f"batch={tag}"}).json()["items"]
        if len(items) != 20 or any(p["status"].get("phase") != "Running" for p in items):
            return None
        return {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["containerID"] for p in items}

    def node_containers():
        return {c.id for c in dock.containers.list(all=True, filters={"label": f"io.kubeling.node={NODE}"})
                if c.labels.get("io.kubernetes.pod.name", "").startswith(f"many-{tag}-")}

    try:
        before = wait_for("20 pods Running", running_ids, 120)
        containers = node_containers()
        assert len(containers) == 40, f"{len(containers)} containers for 20 pods (pause + app each)"
        shim_args, kubelet_args = procs.get("shim").args, procs.get("kubelet").args
        procs.stop("kubelet", sig=signal.SIGKILL)
        procs.stop("shim", sig=signal.SIGKILL)
        assert all(c.status == "running" for c in dock.containers.list(filters={"id": list(containers)[:1]}))
        procs.spawn("shim", shim_args)
        procs.spawn("kubelet", kubelet_args)
        wait_for("kubelet healthz", lambda: httpx.get(cluster["healthz"] + "/healthz", trust_env=False,
                                                      timeout=2).text == "ok", 60, errors=(httpx.HTTPError,))
        time.sleep(5)  # several PLEG relists and pod syncs
        after = wait_for("20 pods Running again", running_ids, 60)
        assert after == before, "a container was replaced"
        assert node_containers() == containers, "containers were added or removed"
        running = {c.id for c in dock.containers.list(filters={"label": f"io.kubeling.node={NODE}"})}
        assert containers <= running
        items = http.get("/api/v1/namespaces/default/pods", params={"labelSelector": f"batch={tag}"}).json()["items"]
        assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in items)
    finally:
        http.delete("/api/v1/namespaces/default/pods", params={"labelSelector": f"batch={tag}"})
        wait_for("the 20 pods deleted", lambda: not http.get(
            "/api/v1/namespaces/default/pods", params={"labelSelector": f"batch={tag}"}).json()["items"], 90)


def test_readiness_probe_moves_pod_in_and_out_of_endpoints(cluster, tmp_path):
    """Two containers share the pod's network: a sidecar reaches the server over localhost. A
    failing readiness probe makes the pod NotReady and the endpoints controller moves its
    address to notReadyAddresses; passing again moves it back."""
    import sys
    http, procs = cluster["http"], cluster["procs"]
    tag = uuid.uuid4().hex[:6]
    name, svc = f"ready-{tag}", f"svc-{tag}"
    cm_port = support.free_port()
    procs.spawn("endpoints-controller", [sys.executable, "-m", "controllers", "--kubeconfig",
                                         str(cluster["kubeconfig"]), "--bind-address", "127.0.0.1",
                                         "--secure-port", str(cm_port), "--controllers", "endpoints",
                                         "--leader-elect=false"])
    procs.wait_ready("endpoints-controller", url=f"http://127.0.0.1:{cm_port}/healthz", timeout=30)
    flag = tmp_path / "flag"
    flag.mkdir()
    (flag / "ready").write_text("yes")
    assert http.post("/api/v1/namespaces/default/services", json={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": svc},
        "spec": {"selector": {"app": tag}, "ports": [{"port": 80, "targetPort": 8080}]}}).status_code == 201
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": tag}},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "volumes": [{"name": "flag", "hostPath": {"path": str(flag)}}],
                    "containers": [
                        {"name": "web", "image": IMAGE, "command": ["sh", "-c", "mkdir -p /www && echo hi > "
                                                                    "/www/index.html && httpd -f -p 8080 -h /www"],
                         "ports": [{"containerPort": 8080}],
                         "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
                         "readinessProbe": {"exec": {"command": ["cat", "/flag/ready"]}, "periodSeconds": 1,
                                            "failureThreshold": 1}},
                        {"name": "sidecar", "image": IMAGE,
                         "command": ["sh", "-c", "while true; do wget -q -O - http://localhost:8080/ > "
                                                 "/tmp/got 2>&1; sleep 1; done"]}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201

    def addresses():
        r = http.get(f"/api/v1/namespaces/default/endpoints/{svc}")
        if r.status_code != 200:
            return None
        subsets = r.json().get("subsets") or []
        return ([a["ip"] for s in subsets for a in s.get("addresses") or []],
                [a["ip"] for s in subsets for a in s.get("notReadyAddresses") or []])
    try:
        wait_for("pod Ready", lambda: cond(get_pod(http, name), "Ready") == "True", 40)
        ip = get_pod(http, name)["status"]["podIP"]
        wait_for("the address ready in the endpoints", lambda: addresses() == ([ip], []), 20)
        sidecar = [c for c in cluster["docker"].containers.list(filters={"label": [
            f"io.kubernetes.pod.name={name}", "io.kubernetes.container.name=sidecar"]})][0]
        wait_for("the sidecar reaching the server over localhost",
                 lambda: sidecar.exec_run(["cat", "/tmp/got"]).output == b"hi\n", 20)
        (flag / "ready").unlink()
        wait_for("pod NotReady", lambda: cond(get_pod(http, name), "Ready") == "False", 20)
        wait_for("the address not ready in the endpoints", lambda: addresses() == ([], [ip]), 20)
        (flag / "ready").write_text("yes")
        wait_for("the address ready again", lambda: addresses() == ([ip], []), 20)
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")
        http.delete(f"/api/v1/namespaces/default/services/{svc}")
        procs.stop("endpoints-controller")
        wait_for(f"{name} deleted", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").status_code
                 == 404, 30)
