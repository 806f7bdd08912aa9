"""The scheduler and the controller-manager as real processes against a real
apiserver over etcd 3.4, with three "hollow" nodes (Node objects made
through the API; no kubelet). The test plays the kubelet's part where the
control plane needs it: it marks bound pods Running and Ready with an IP
from their node's pod CIDR, and finishes the graceful deletion of pods.

Covers: pod CIDRs for nodes; Deployment -> ReplicaSet -> pods bound and
spread; Service -> Endpoints; scale up and down; a template change rolls
out a new ReplicaSet; `kubectl rollout status`; an oversized pod stays
Pending with upstream's Unschedulable message; deleting the Deployment
cascades through the garbage collector; Jobs run to completion, stop at
their backoffLimit or activeDeadlineSeconds, and their pods go with them.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import support
from kubeling.client import ApiError, Client

NODES = ("hollow-1", "hollow-2", "hollow-3")


@pytest.fixture(scope="module")
def plane():
    """etcd, apiserver, scheduler, controller-manager on free loopback ports."""
    tmp = Path(tempfile.mkdtemp(prefix="kubeling-ctrl-"))
    try:
        with support.control_plane(tmp, apiserver_args=["--service-cluster-ip-range", "10.96.0.0/12"],
                                   user="admin") as cp:
            sched_port, cm_port = support.free_port(), support.free_port()
            cp.procs.spawn("scheduler", [
                sys.executable, "-m", "scheduler", "--kubeconfig", str(cp.kubeconfig), "--bind-address",
                "127.0.0.1", "--secure-port", str(sched_port)])
            cp.procs.spawn("controller-manager", [
                sys.executable, "-m", "controllers", "--kubeconfig", str(cp.kubeconfig), "--bind-address",
                "127.0.0.1", "--secure-port", str(cm_port), "--allocate-node-cidrs", "--cluster-cidr",
                "10.244.0.0/16", "--node-cidr-mask-size", "24", "--service-cluster-ip-range", "10.96.0.0/12",
                "--node-monitor-period", "1s", "--node-monitor-grace-period", "8s", "--node-startup-grace-period", "8s"])
            cp.procs.wait_ready("scheduler", url=f"http://127.0.0.1:{sched_port}/healthz")
            cp.procs.wait_ready("controller-manager", url=f"http://127.0.0.1:{cm_port}/healthz")
            cp.scheduler_metrics = f"http://127.0.0.1:{sched_port}/metrics"
            yield cp
    finally:
        if os.environ.get("KEEP_LOGS"):  # KEEP_LOGS=1 pytest -s ... keeps the components' logs
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def hollow_node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "hollow node"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}


async def eventually(fn, *, timeout: float = 20.0, what: str = "condition"):
    """Poll the coroutine function ``fn`` until it returns a truthy value; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class HollowKubelets:
    """Plays the kubelets of the hollow nodes for one namespace: bound pods
    become Running and Ready with an IP from their node's pod CIDR; pods with
    a deletionTimestamp are removed (grace period 0), as a kubelet would."""

    def __init__(self, client: Client, namespace: str):
        self.client = client
        self.namespace = namespace
        self.next_ip: dict[str, int] = {}
        self.alive = set(NODES)  # nodes whose node Lease is renewed (the heartbeat)
        self.renewed = 0.0

    async def run(self) -> None:
        while True:
            if time.monotonic() - self.renewed >= 1.0:
                await self.renew_leases()
            await self.step()
            await asyncio.sleep(0.2)

    async def renew_leases(self) -> None:
        """Renew kube-node-lease/<node> of every node in ``alive``, as each kubelet does."""
        self.renewed = time.monotonic()
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        for name in list(self.alive):
            spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}
            try:
                lease = await self.client.get("leases", name, namespace="kube-node-lease")
                lease["spec"] = spec
                await self.client.replace("leases", lease)
            except ApiError as e:
                if e.code != 404:
                    continue  # a conflict: next round
                try:
                    await self.client.create("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                        "metadata": {"name": name}, "spec": spec},
                                             namespace="kube-node-lease")
                except ApiError:
                    pass

    async def step(self) -> None:
        pods = (await self.client.list("pods", namespace=self.namespace))["items"]
        for pod in pods:
            meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
            try:
                if meta.get("deletionTimestamp"):
                    await self.client.delete("pods", meta["name"], namespace=self.namespace,
                                             grace_period_seconds=0)
                elif spec.get("nodeName") and status.get("phase", "Pending") == "Pending":
                    node = await self.client.get("nodes", spec["nodeName"])
                    net = ipaddress.ip_network(node["spec"]["podCIDR"])
                    n = self.next_ip[spec["nodeName"]] = self.next_ip.get(spec["nodeName"], 1) + 1
                    ip = str(net.network_address + n)
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    conds = [c for c in status.get("conditions") or [] if c["type"] == "PodScheduled"]
                    conds += [{"type": t, "status": "True", "lastTransitionTime": now}
                              for t in ("Initialized", "ContainersReady", "Ready")]
                    await self.client.patch("pods", meta["name"], {"status": {
                        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1",
                        "startTime": now, "conditions": conds}}, namespace=self.namespace, subresource="status")
            except (ApiError, KeyError):
                pass  # raced with a deletion or the CIDR is not there yet: next round


@pytest.fixture
async def env(plane):
    client = Client.from_kubeconfig(plane.kubeconfig)
    for name in NODES:
        try:
            await client.create("nodes", hollow_node(name))
        except ApiError as e:
            assert e.code == 409, e
    ns = "t-" + uuid.uuid4().hex[:6]
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    hollow = HollowKubelets(client, ns)
    await hollow.renew_leases()
    kubelets = asyncio.ensure_future(hollow.run())
    try:
        yield client, ns, hollow
    finally:
        kubelets.cancel()
        await asyncio.gather(kubelets, return_exceptions=True)
        await client.close()


def deployment(name: str, replicas: int, *, image: str = "busybox:1.35", cpu: str = "100m") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{
                                      "name": "web", "image": image,
                                      "ports": [{"name": "http", "containerPort": 8080}],
                                      "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}}}}


async def test_every_node_gets_a_distinct_pod_cidr(env):
    client, _, _ = env

    async def cidrs():
        nodes = [await client.get("nodes", n) for n in NODES]
        got = [n["spec"].get("podCIDR") for n in nodes]
        return got if all(got) else None

    got = await eventually(cidrs, what="podCIDRs")
    assert len(set(got)) == 3
    for cidr in got:
        net = ipaddress.ip_network(cidr)
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.ip_network("10.244.0.0/16"))
    node = await client.get("nodes", NODES[0])
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]


async def test_deployment_service_scale_rollout_and_cascading_delete(env, plane):
    client, ns, _ = env
    await client.create("deployments", deployment("web", 3), namespace=ns)
    await client.create("services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                     "spec": {"selector": {"app": "web"},
                                              "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
                        namespace=ns)

    async def pods(*, ready_only=False):
        items = (await client.list("pods", namespace=ns, label_selector="app=web"))["items"]
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        if ready_only:
            items = [p for p in items if (p.get("status") or {}).get("phase") == "Running"]
        return items

    async def rollout_done(replicas, generation_at_least=1):
        d = await client.get("deployments", "web", namespace=ns)
        st = d.get("status") or {}
        running = await pods(ready_only=True)
        ok = (st.get("observedGeneration", 0) >= max(d["metadata"].get("generation", 1), generation_at_least)
              and st.get("updatedReplicas") == replicas and st.get("availableReplicas") == replicas
              and st.get("replicas") == replicas and len(await pods()) == replicas and len(running) == replicas)
        return d if ok else None

    d = await eventually(lambda: rollout_done(3), timeout=30, what="3 available replicas")
    rss = (await client.list("replicasets", namespace=ns))["items"]
    assert len(rss) == 1
    rs = rss[0]
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"

    running = await pods()
    assert {p["spec"]["nodeName"] for p in running} == set(NODES), "LeastAllocated spreads 3 pods over 3 nodes"
    for p in running:
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == \
            ("ReplicaSet", rs["metadata"]["name"], True, True)
        assert p["metadata"]["generateName"] == f"{rs['metadata']['name']}-"
        assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])

    async def endpoint_ips(n):
        try:
            ep = await client.get("endpoints", "web", namespace=ns)
        except ApiError:
            return None
        subsets = ep.get("subsets") or []
        ips = sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])
        return (ep, ips) if len(ips) == n else None

    ep, ips = await eventually(lambda: endpoint_ips(3), what="3 endpoint addresses")
    assert ips == sorted(p["status"]["podIP"] for p in await pods())
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    addr = ep["subsets"][0]["addresses"][0]
    assert addr["targetRef"]["kind"] == "Pod" and addr["nodeName"] in NODES

    events = (await client.list("events", namespace=ns))["items"]
    assert any(e["reason"] == "Scheduled" and e["message"].startswith(f"Successfully assigned {ns}/web-")
               for e in events)

    # kubectl reads the same status and conditions we write.
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = await asyncio.to_thread(subprocess.run, [kubectl, "--kubeconfig", str(plane.kubeconfig), "-n", ns,
                                                       "rollout", "status", "deployment/web", "--timeout=20s"],
                                      capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "successfully rolled out" in out.stdout, out.stdout + out.stderr

    # Scale up and down.
    for replicas in (5, 2):
        await client.patch("deployments", "web", {"spec": {"replicas": replicas}}, namespace=ns)
        await eventually(lambda r=replicas: rollout_done(r), timeout=30, what=f"{replicas} replicas")
        await eventually(lambda r=replicas: endpoint_ips(r), what=f"{replicas} endpoint addresses")

    # A template change rolls out a new ReplicaSet and scales the old one to 0.
    await client.patch("deployments", "web", {"spec": {"template": {"spec": {"containers": [{
        "name": "web", "image": "busybox:1.36", "ports": [{"name": "http", "containerPort": 8080}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}, namespace=ns)

    async def rolled():
        d = await rollout_done(2, generation_at_least=4)
        if not d:
            return None
        rss = {r["metadata"]["name"]: r for r in (await client.list("replicasets", namespace=ns))["items"]}
        if len(rss) != 2 or rss[rs["metadata"]["name"]]["spec"]["replicas"] != 0:
            return None
        return d, rss

    d, rss = await eventually(rolled, timeout=40, what="the rollout of the new template")
    new_rs = next(r for name, r in rss.items() if name != rs["metadata"]["name"])
    assert new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert all(p["spec"]["containers"][0]["image"] == "busybox:1.36" for p in await pods())

    # kubectl delete sends propagationPolicy Background; the GC removes ReplicaSets, then pods.
    await client.delete("deployments", "web", namespace=ns, propagation_policy="Background")

    async def all_gone():
        left = (await client.list("replicasets", namespace=ns))["items"] + \
            (await client.list("pods", namespace=ns))["items"]
        return not left

    await eventually(all_gone, timeout=30, what="ReplicaSets and pods collected")
    await client.delete("services", "web", namespace=ns)

    async def endpoints_gone():
        try:
            await client.get("endpoints", "web", namespace=ns)
            return False
        except ApiError as e:
            return e.code == 404

    await eventually(endpoints_gone, what="Endpoints deleted with the Service")


async def test_pod_too_big_for_any_node_stays_pending(env):
    client, ns, _ = env
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                    "resources": {"requests": {"cpu": "100"}}}]}}
    await client.create("pods", pod, namespace=ns)

    async def unschedulable():
        p = await client.get("pods", "huge", namespace=ns)
        cond = next((c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"),
                    None)
        return cond if cond and cond["status"] == "False" else None

    cond = await eventually(unschedulable, what="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
                              "available: 3 No preemption victims found for incoming pod..")
    p = await client.get("pods", "huge", namespace=ns)
    assert not p["spec"].get("nodeName")

    async def failed_event():
        events = (await client.list("events", namespace=ns))["items"]
        return [e for e in events if e["reason"] == "FailedScheduling"]

    [event] = await eventually(failed_event, what="a FailedScheduling event")
    assert event["type"] == "Warning" and event["message"] == cond["message"]
    await client.delete("pods", "huge", namespace=ns, grace_period_seconds=0)


def job(name: str, *, completions: int | None = 1, parallelism: int = 1, backoff_limit: int = 6,
        deadline: int | None = None) -> dict:
    spec = {"parallelism": parallelism, "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "work", "image": "busybox:1.35", "command": ["sh", "-c", "true"]}]}}}
    if completions is not None:
        spec["completions"] = completions
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


async def _job_pods(client: Client, ns: str, name: str) -> list[dict]:
    return (await client.list("pods", namespace=ns, label_selector=f"batch.kubernetes.io/job-name={name}"))["items"]


async def _finish(client: Client, ns: str, pod: dict, *, exit_code: int) -> None:
    """What a kubelet reports when the pod's only container exited with ``exit_code``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    await client.patch("pods", pod["metadata"]["name"], {"status": {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "work", "image": "busybox:1.35", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": exit_code, "finishedAt": now,
                                                        "reason": "Completed" if exit_code == 0 else "Error"}}}]}},
        namespace=ns, subresource="status")


def _conditions(j: dict) -> dict:
    return {c["type"]: c for c in (j.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


async def test_job_runs_completions_with_parallelism_then_completes(env):
    client, ns, _ = env
    await client.create("jobs", job("batch", completions=3, parallelism=2), namespace=ns)
    finished: set[str] = set()
    most_active = 0

    async def step():
        nonlocal most_active
        j = await client.get("jobs", "batch", namespace=ns)
        if "Complete" in _conditions(j):
            return j
        pods = await _job_pods(client, ns, "batch")
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        most_active = max(most_active, sum(1 for p in pods if p["status"].get("phase") in ("Pending", "Running")))
        for p in running[:1]:  # one pod finishes per round
            await _finish(client, ns, p, exit_code=0)
            finished.add(p["metadata"]["name"])
        return None

    j = await eventually(step, timeout=30, what="the Job to complete")
    status = j["status"]
    assert status["succeeded"] == 3 and status["active"] == 0 and status.get("failed", 0) == 0, status
    assert {"SuccessCriteriaMet", "Complete"} <= set(_conditions(j)), status
    assert _conditions(j)["Complete"]["reason"] == "CompletionsReached"
    assert status["completionTime"] >= status["startTime"]
    assert most_active <= 2 and len(finished) == 3
    pods = await _job_pods(client, ns, "batch")
    assert len(pods) == 3 and all(p["metadata"]["ownerReferences"][0]["uid"] == j["metadata"]["uid"] for p in pods)
    events = (await client.list("events", namespace=ns,
                                field_selector="involvedObject.name=batch,involvedObject.kind=Job"))["items"]
    assert {"SuccessfulCreate", "Completed"} <= {e["reason"] for e in events}
    # Deleting the Job (kubectl's default, background propagation) takes its pods with it.
    await client.delete("jobs", "batch", namespace=ns, propagation_policy="Background")
    await eventually(lambda: _gone(client, ns, "batch"), timeout=20, what="the Job's pods to be collected")


async def _gone(client: Client, ns: str, name: str) -> bool:
    return not await _job_pods(client, ns, name)


async def test_job_with_failing_pods_stops_at_backoff_limit(env):
    """backoffLimit 1: the first failure is retried after the 10 s pod back-off, the second fails the Job."""
    client, ns, _ = env
    await client.create("jobs", job("flaky", backoff_limit=1), namespace=ns)

    async def step():
        j = await client.get("jobs", "flaky", namespace=ns)
        if "Failed" in _conditions(j):
            return j
        for p in await _job_pods(client, ns, "flaky"):
            if (p.get("status") or {}).get("phase") == "Running":
                await _finish(client, ns, p, exit_code=1)
        return None

    j = await eventually(step, timeout=40, what="the Job to fail")
    conds = _conditions(j)
    assert {"FailureTarget", "Failed"} <= set(conds)
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conds["Failed"]["message"] == "Job has reached the specified backoff limit"
    assert j["status"]["failed"] == 2 and j["status"]["active"] == 0
    await asyncio.sleep(1.5)  # no further pod after the Job failed
    pods = await _job_pods(client, ns, "flaky")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    events = (await client.list("events", namespace=ns, field_selector="involvedObject.name=flaky"))["items"]
    assert "BackoffLimitExceeded" in {e["reason"] for e in events}


async def test_job_past_active_deadline_fails_and_deletes_its_pods(env):
    client, ns, _ = env
    await client.create("jobs", job("slow", parallelism=2, completions=2, deadline=2), namespace=ns)

    async def failed():
        j = await client.get("jobs", "slow", namespace=ns)
        return j if "Failed" in _conditions(j) else None

    j = await eventually(failed, timeout=20, what="the Job to pass its deadline")
    assert _conditions(j)["Failed"]["reason"] == "DeadlineExceeded"
    assert _conditions(j)["Failed"]["message"] == "Job was active longer than specified deadline"
    await eventually(lambda: _gone(client, ns, "slow"), timeout=20, what="the Job's active pods to be deleted")


async def test_silent_node_is_tainted_and_its_pods_move(env):
    """A node whose Lease stops being renewed turns Unknown after the grace period (8 s here),
    gets the unreachable NoSchedule and NoExecute taints, and its pods (tolerating that for
    2 s) are evicted and recreated by their ReplicaSet on a live node."""
    client, ns, hollow = env
    doomed, spare = f"doomed-{ns}", NODES[0]
    node = hollow_node(doomed)
    node["metadata"]["labels"]["pool"] = ns
    await client.create("nodes", node)
    hollow.alive.add(doomed)
    await hollow.renew_leases()
    try:
        d = deployment("mover", 2)
        d["spec"]["template"]["spec"].update(nodeSelector={"pool": ns}, tolerations=[
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 2}])
        await client.create("deployments", d, namespace=ns)

        async def running_on(node_name):
            pods = (await client.list("pods", namespace=ns, label_selector="app=mover"))["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            ok = len(live) == 2 and all(p["spec"].get("nodeName") == node_name
                                        and p["status"].get("phase") == "Running" for p in live)
            return live if ok else None

        first = await eventually(lambda: running_on(doomed), timeout=30, what="2 pods Running on the node")
        tol = {(t["key"], t.get("tolerationSeconds")) for t in first[0]["spec"]["tolerations"]}
        assert ("node.kubernetes.io/unreachable", 2) in tol and ("node.kubernetes.io/not-ready", 300) in tol
        await client.patch("nodes", spare, {"metadata": {"labels": {"pool": ns}}})
        hollow.alive.discard(doomed)  # the node's kubelet dies

        async def unknown():
            n = await client.get("nodes", doomed)
            ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
            return n if ready["status"] == "Unknown" else None

        n = await eventually(unknown, timeout=30, what="the silent node to become Unknown")
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NodeStatusUnknown" and ready["message"] == "Kubelet stopped posting node status."

        async def tainted():
            taints = (await client.get("nodes", doomed))["spec"].get("taints") or []
            return {(t["key"], t["effect"]) for t in taints} or None
        taints = await eventually(tainted, timeout=10, what="taints")
        assert taints == {("node.kubernetes.io/unreachable", "NoSchedule"),
                          ("node.kubernetes.io/unreachable", "NoExecute")}
        moved = await eventually(lambda: running_on(spare), timeout=40, what="the pods to move to the live node")
        assert not {p["metadata"]["name"] for p in moved} & {p["metadata"]["name"] for p in first}
        events = (await client.list("events", namespace=ns, field_selector="reason=TaintManagerEviction"))["items"]
        assert {e["involvedObject"]["name"] for e in events} == {p["metadata"]["name"] for p in first}
    finally:
        hollow.alive.discard(doomed)
        await client.patch("nodes", spare, {"metadata": {"labels": {"pool": None}}})
        await client.delete("deployments", "mover", namespace=ns)
        try:
            await client.delete("nodes", doomed)
        except ApiError:
            pass


async def test_replication_controller_keeps_its_replicas(env):
    client, ns, _ = env
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
          "spec": {"replicas": 2, "selector": {"app": "legacy"},
                   "template": {"metadata": {"labels": {"app": "legacy"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}}
    await client.create("replicationcontrollers", rc, namespace=ns)

    async def ready(n):
        got = await client.get("replicationcontrollers", "legacy", namespace=ns)
        st = got.get("status") or {}
        return got if st.get("readyReplicas") == n and st.get("replicas") == n else None

    await eventually(lambda: ready(2), timeout=30, what="2 ready replicas")
    await client.patch("replicationcontrollers", "legacy", {"spec": {"replicas": 3}}, namespace=ns)
    got = await eventually(lambda: ready(3), timeout=30, what="3 ready replicas")
    assert got["status"]["observedGeneration"] == got["metadata"]["generation"]
    pods = (await client.list("pods", namespace=ns, label_selector="app=legacy"))["items"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicationController"}
    await client.delete("replicationcontrollers", "legacy", namespace=ns, propagation_policy="Background")

    async def collected():
        return not (await client.list("pods", namespace=ns, label_selector="app=legacy"))["items"]
    await eventually(collected, timeout=20, what="the pods to be collected")


async def test_every_namespace_gets_a_default_service_account(env):
    client, ns, _ = env

    async def default_sa():
        try:
            return await client.get("serviceaccounts", "default", namespace=ns)
        except ApiError:
            return None
    await eventually(default_sa, timeout=15, what="serviceaccount default")
    await client.delete("serviceaccounts", "default", namespace=ns)
    await eventually(default_sa, timeout=15, what="serviceaccount default to be recreated")


async def test_finished_job_is_deleted_after_its_ttl(env):
    client, ns, _ = env
    j = job("brief")
    j["spec"]["ttlSecondsAfterFinished"] = 1
    await client.create("jobs", j, namespace=ns)

    async def step():
        try:
            await client.get("jobs", "brief", namespace=ns)
        except ApiError as e:
            return e.code == 404
        for p in await _job_pods(client, ns, "brief"):
            if (p.get("status") or {}).get("phase") == "Running":
                await _finish(client, ns, p, exit_code=0)
        return False
    await eventually(step, timeout=30, what="the finished Job to be deleted after its TTL")
    await eventually(lambda: _gone(client, ns, "brief"), timeout=20, what="its pods to go with it")


async def test_cronjob_runs_a_missed_schedule_and_records_success(env):
    """A CronJob whose last run was two minutes ago (status set as after a controller outage) runs
    the most recent missed minute at once; its Job completes and lastSuccessfulTime follows."""
    client, ns, _ = env
    template = job("tick")["spec"]
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
          "spec": {"schedule": "* * * * *", "jobTemplate": {"metadata": {"labels": {"cron": "tick"}},
                                                            "spec": template}}}
    created = await client.create("cronjobs", cj, namespace=ns)
    created["status"] = {"lastScheduleTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))}
    await client.replace_status("cronjobs", created)

    async def a_job():
        jobs = (await client.list("jobs", namespace=ns, label_selector="cron=tick"))["items"]
        return jobs[0] if jobs else None
    j = await eventually(a_job, timeout=20, what="the CronJob's Job")
    minute = int(time.time() // 60)
    assert j["metadata"]["name"] in (f"tick-{minute}", f"tick-{minute - 1}")
    assert j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in j["metadata"]["annotations"]
    name = j["metadata"]["name"]

    async def succeeded():
        got = await client.get("cronjobs", "tick", namespace=ns)
        st = got.get("status") or {}
        if st.get("lastSuccessfulTime") and not st.get("active"):
            return got
        for p in await _job_pods(client, ns, name):
            if (p.get("status") or {}).get("phase") == "Running":
                await _finish(client, ns, p, exit_code=0)
        return None
    got = await eventually(succeeded, timeout=30, what="the CronJob to record a successful run")
    assert got["status"]["lastScheduleTime"].endswith(":00Z")
    await client.patch("cronjobs", "tick", {"spec": {"suspend": True}}, namespace=ns)


async def test_rolling_update_keeps_availability_within_max_unavailable(env):
    """6 replicas, maxUnavailable 1, maxSurge 1: while image A is replaced by B, the ready pods
    never drop below 5 and the ReplicaSets never ask for more than 7 pods together (sampled every
    0.1 s through the API). Surge bounds the ReplicaSets' spec.replicas, as upstream's
    NewRSNewReplicas counts them: a pod its ReplicaSet was just scaled away from may live on a
    moment longer while the ReplicaSet controller deletes it."""
    client, ns, _ = env
    d = deployment("roll", 6, cpu="10m")
    d["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    await client.create("deployments", d, namespace=ns)

    async def sample():
        items = (await client.list("pods", namespace=ns, label_selector="app=roll"))["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        return live, ready

    async def all_ready(image):
        live, ready = await sample()
        return len(live) == 6 and len(ready) == 6 and all(
            p["spec"]["containers"][0]["image"] == image for p in live)

    await eventually(lambda: all_ready("busybox:1.35"), timeout=30, what="6 ready pods of image A")
    await client.patch("deployments", "roll", {"spec": {"template": {"spec": {"containers": [{
        "name": "web", "image": "busybox:1.36"}]}}}}, namespace=ns)
    lowest, highest = 6, 6
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live, ready = await sample()
        rss = (await client.list("replicasets", namespace=ns, label_selector="app=roll"))["items"]
        asked = sum((rs.get("spec") or {}).get("replicas", 0) for rs in rss)
        lowest, highest = min(lowest, len(ready)), max(highest, asked)
        if len(live) == 6 and len(ready) == 6 and all(p["spec"]["containers"][0]["image"] == "busybox:1.36"
                                                      for p in live):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the rollout did not finish in 60 s")
    assert lowest >= 5, f"ready pods dropped to {lowest} (replicas 6 - maxUnavailable 1 = 5)"
    assert highest <= 7, f"the ReplicaSets asked for {highest} pods at once (replicas 6 + maxSurge 1 = 7)"


async def test_delete_deployment_orphan_and_foreground(env):
    """Orphan leaves the ReplicaSet and pods (released: no ownerReference); Foreground removes the
    dependents first and the Deployment last."""
    client, ns, _ = env
    for name in ("orphaned", "fg"):
        await client.create("deployments", deployment(name, 2, cpu="10m"), namespace=ns)

    async def rs_ready(name):
        rss = (await client.list("replicasets", namespace=ns, label_selector=f"app={name}"))["items"]
        return rss if rss and (rss[0].get("status") or {}).get("readyReplicas") == 2 else None
    for name in ("orphaned", "fg"):
        await eventually(lambda n=name: rs_ready(n), timeout=30, what=f"{name}'s ReplicaSet ready")

    await client.delete("deployments", "orphaned", namespace=ns, propagation_policy="Orphan")

    async def released():
        try:
            await client.get("deployments", "orphaned", namespace=ns)
            return None
        except ApiError as e:
            if e.code != 404:
                raise
        rss = (await client.list("replicasets", namespace=ns, label_selector="app=orphaned"))["items"]
        return rss if len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences") else None
    await eventually(released, timeout=20, what="the Deployment gone and its ReplicaSet released")
    await asyncio.sleep(2)  # the GC must not collect what was orphaned
    pods = (await client.list("pods", namespace=ns, label_selector="app=orphaned"))["items"]
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 2

    await client.delete("deployments", "fg", namespace=ns, propagation_policy="Foreground")
    d = await client.get("deployments", "fg", namespace=ns)  # still there, waiting for its dependents
    assert "foregroundDeletion" in d["metadata"].get("finalizers", [])

    async def all_gone():
        left = (await client.list("replicasets", namespace=ns, label_selector="app=fg"))["items"] + \
            (await client.list("pods", namespace=ns, label_selector="app=fg"))["items"]
        try:
            await client.get("deployments", "fg", namespace=ns)
            return False
        except ApiError as e:
            return e.code == 404 and not left
    await eventually(all_gone, timeout=30, what="the Deployment, its ReplicaSet and pods gone")


async def test_daemonset_one_pod_per_node_rolls_and_follows_taints(env):
    """A DaemonSet runs one pod on each of the 3 nodes (placed by the scheduler through the
    metadata.name affinity), rolls a new image node by node, and leaves a node it no longer
    tolerates."""
    client, ns, _ = env
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"metadata": {"labels": {"app": "agent"}},
                                "spec": {"containers": [{"name": "a", "image": "busybox:1.35"}]}}}}
    await client.create("daemonsets", ds, namespace=ns)

    async def placed(image, nodes=NODES):
        pods = [p for p in (await client.list("pods", namespace=ns, label_selector="app=agent"))["items"]
                if not p["metadata"].get("deletionTimestamp")]
        d = await client.get("daemonsets", "agent", namespace=ns)
        st = d.get("status") or {}
        ok = (sorted(p["spec"].get("nodeName") or "" for p in pods) == sorted(nodes)
              and all(p["status"].get("phase") == "Running" and p["spec"]["containers"][0]["image"] == image
                      for p in pods)
              and st.get("numberReady") == len(nodes) and st.get("updatedNumberScheduled") == len(nodes)
              and st.get("desiredNumberScheduled") == len(nodes))
        return (pods, st) if ok else None

    pods, st = await eventually(lambda: placed("busybox:1.35"), timeout=30, what="one Running pod per node")
    assert st["numberMisscheduled"] == 0 and st["numberUnavailable"] == 0
    await client.patch("daemonsets", "agent", {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "busybox:1.36"}]}}}}, namespace=ns)
    await eventually(lambda: placed("busybox:1.36"), timeout=40, what="the new image on every node")
    tainted = NODES[2]
    await client.patch("nodes", tainted, {"spec": {"taints": [{"key": "dedicated", "value": ns,
                                                               "effect": "NoSchedule"}]}})
    try:
        await eventually(lambda: placed("busybox:1.36", NODES[:2]), timeout=30,
                         what="the daemon pod gone from the tainted node")
    finally:
        await client.patch("nodes", tainted, {"spec": {"taints": None}})
    await client.delete("daemonsets", "agent", namespace=ns, propagation_policy="Background")


async def test_statefulset_ordered_names_rolling_update_and_scale_down(env):
    """web-0, web-1, web-2 come up in order (each after the previous is Ready) with stable
    hostnames; a new image replaces them from the highest ordinal down; scaling to 1 removes
    web-2 then web-1."""
    client, ns, _ = env
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "d", "image": "busybox:1.35"}]}}}}
    await client.create("statefulsets", sts, namespace=ns)
    created_at: dict[str, str] = {}

    async def members(image, names):
        pods = [p for p in (await client.list("pods", namespace=ns, label_selector="app=db"))["items"]
                if not p["metadata"].get("deletionTimestamp")]
        for p in pods:
            created_at.setdefault(p["metadata"]["name"], p["metadata"]["creationTimestamp"])
        d = await client.get("statefulsets", "db", namespace=ns)
        st = d.get("status") or {}
        ok = (sorted(p["metadata"]["name"] for p in pods) == names
              and all(p["status"].get("phase") == "Running" and p["spec"]["containers"][0]["image"] == image
                      for p in pods)
              and st.get("readyReplicas") == len(names) and st.get("updatedReplicas") == len(names)
              and st.get("currentRevision") == st.get("updateRevision"))
        return (pods, st) if ok else None

    pods, st = await eventually(lambda: members("busybox:1.35", ["db-0", "db-1", "db-2"]), timeout=40,
                                what="db-0..2 Running")
    assert created_at["db-0"] <= created_at["db-1"] <= created_at["db-2"]
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert by_name["db-1"]["spec"]["hostname"] == "db-1" and by_name["db-1"]["spec"]["subdomain"] == "db"
    assert by_name["db-2"]["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "2"
    first_revision = st["updateRevision"]
    assert first_revision.startswith("db-")
    await client.patch("statefulsets", "db", {"spec": {"template": {"spec": {"containers": [
        {"name": "d", "image": "busybox:1.36"}]}}}}, namespace=ns)
    pods, st = await eventually(lambda: members("busybox:1.36", ["db-0", "db-1", "db-2"]), timeout=60,
                                what="the rolling update")
    assert st["updateRevision"] != first_revision
    events = (await client.list("events", namespace=ns, field_selector="involvedObject.name=db"))["items"]
    assert {e["message"].split()[2] for e in events if "rolling update" in e["message"]} == {"db-0", "db-1", "db-2"}
    new = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in pods}
    assert new["db-2"] <= new["db-1"] <= new["db-0"], new  # highest ordinal first
    await client.patch("statefulsets", "db", {"spec": {"replicas": 1}}, namespace=ns)
    await eventually(lambda: members("busybox:1.36", ["db-0"]), timeout=40, what="scale down to db-0")
    await client.delete("statefulsets", "db", namespace=ns, propagation_policy="Background")
