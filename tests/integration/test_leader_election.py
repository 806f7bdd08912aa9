"""Leader election between two real schedulers and two real controller-managers
over a real apiserver + etcdlite: only the leader acts; SIGKILL of the leader
hands over to the standby within 20 s; SIGTERM releases the Lease so the
standby takes over at once; a paused leader that lost its Lease exits 1."""
from __future__ import annotations

import signal
import sys
import time

import httpx
import pytest

import support

SHORT = ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
         "--leader-elect-retry-period", "1s"]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leader")
    with support.control_plane(tmp, store="etcdlite") as cp:
        cp.http = httpx.Client(base_url=cp.server, timeout=10, trust_env=False)
        try:
            yield cp
        finally:
            cp.http.close()


def node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}}


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}


def lease(cp, name: str) -> dict:
    r = cp.http.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")
    return r.json() if r.status_code == 200 else {}


def start(cp, name: str, module: str, *extra: str) -> str:
    port = support.free_port()
    argv = [sys.executable, "-m", module, "--kubeconfig", str(cp.kubeconfig), "--bind-address", "127.0.0.1",
            "--secure-port", str(port), *extra]
    cp.procs.spawn(name, argv)
    cp.procs.wait_ready(name, url=f"http://127.0.0.1:{port}/healthz")
    return f"http://127.0.0.1:{port}/healthz"


def acquired(cp, name: str) -> bool:
    return "successfully acquired lease" in cp.procs.log(name, 200_000)


def bound_count(cp, name: str) -> int:
    """Bindings the scheduler logged (logfmt lines with msg="bound NS/POD to NODE")."""
    return cp.procs.log(name, 1_000_000).count('msg="bound ')


def bound_pods(cp, ns: str, names: list[str]) -> bool:
    items = cp.http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
    nodes = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in items}
    return all(nodes.get(n) for n in names)


def test_two_schedulers_only_leader_binds_and_standby_takes_over_after_sigkill(plane):
    cp = plane
    assert cp.http.post("/api/v1/nodes", json=node("le-node")).status_code == 201
    assert cp.http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "le"}}).status_code == 201
    start(cp, "sched-a", "scheduler", *SHORT)
    support.wait_for("sched-a leads", lambda: acquired(cp, "sched-a"), 10)
    spec = lease(cp, "kube-scheduler")["spec"]
    holder_a = spec["holderIdentity"]
    assert spec["leaseDurationSeconds"] == 4 and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] and spec["renewTime"]
    health_b = start(cp, "sched-b", "scheduler", *SHORT)

    first = [f"p{i}" for i in range(5)]
    for n in first:
        assert cp.http.post("/api/v1/namespaces/le/pods", json=pod(n)).status_code == 201
    support.wait_for("first pods bound", lambda: bound_pods(cp, "le", first), 20)
    time.sleep(1.5)  # the standby has had several retry periods to misbehave
    assert bound_count(cp, "sched-a") == 5 and bound_count(cp, "sched-b") == 0
    assert not acquired(cp, "sched-b")
    assert httpx.get(health_b, timeout=5).status_code == 200  # the standby stays healthy
    renewed = lease(cp, "kube-scheduler")["spec"]
    assert renewed["holderIdentity"] == holder_a and renewed["renewTime"] > spec["renewTime"]

    cp.procs.get("sched-a").send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    cp.procs.get("sched-a").wait(10)
    second = [f"q{i}" for i in range(3)]
    for n in second:
        assert cp.http.post("/api/v1/namespaces/le/pods", json=pod(n)).status_code == 201
    support.wait_for("standby binds after takeover", lambda: bound_pods(cp, "le", second), 20)
    took = time.monotonic() - t0
    assert took < 20, took
    assert acquired(cp, "sched-b") and bound_count(cp, "sched-b") == 3
    spec = lease(cp, "kube-scheduler")["spec"]
    assert spec["holderIdentity"] != holder_a and spec["leaseTransitions"] == 1
    events = cp.http.get("/api/v1/namespaces/kube-system/events").json()["items"]
    msgs = [e["message"] for e in events if e["reason"] == "LeaderElection"
            and e["involvedObject"].get("name") == "kube-scheduler"]
    assert f"{holder_a} became leader" in msgs and f"{spec['holderIdentity']} became leader" in msgs
    print(f"scheduler takeover after SIGKILL: {took:.1f}s")


def test_controller_managers_default_lease_release_on_sigterm_and_lost_leader_exits_1(plane):
    cp = plane
    t0 = time.monotonic()
    start(cp, "cm-a", "controllers", "--controllers", "namespace")  # upstream default timings
    support.wait_for("cm-a leads", lambda: acquired(cp, "cm-a"), 10)
    assert time.monotonic() - t0 < 10  # a free lease is taken at once
    spec = lease(cp, "kube-controller-manager")["spec"]
    assert spec["leaseDurationSeconds"] == 15
    start(cp, "cm-b", "controllers", "--controllers", "namespace", *SHORT)
    time.sleep(2.5)
    assert not acquired(cp, "cm-b")

    # Graceful stop: the lease is released (no holder, 1 s) and the standby takes it at once.
    t0 = time.monotonic()
    assert support.stop_process(cp.procs.get("cm-a")) == 0
    support.wait_for("cm-b leads", lambda: acquired(cp, "cm-b"), 10)
    assert time.monotonic() - t0 < 8  # not the 15 s lease of cm-a
    assert "released lease" in cp.procs.log("cm-a")
    spec_b = lease(cp, "kube-controller-manager")["spec"]
    assert spec_b["leaseTransitions"] == 1 and spec_b["leaseDurationSeconds"] == 4

    # A leader paused past its lease loses it to a standby, and exits 1 when it resumes.
    start(cp, "cm-c", "controllers", "--controllers", "namespace", *SHORT)
    b = cp.procs.get("cm-b")
    b.send_signal(signal.SIGSTOP)
    try:
        support.wait_for("cm-c leads", lambda: acquired(cp, "cm-c"), 15)
    finally:
        b.send_signal(signal.SIGCONT)
    assert b.wait(15) == 1
    assert "leaderelection lost" in cp.procs.log("cm-b")
    assert lease(cp, "kube-controller-manager")["spec"]["leaseTransitions"] == 2
