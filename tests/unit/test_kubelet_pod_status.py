"""Pod phase, conditions and container statuses from runtime state (kubelet_pods.go, status/generate.go)."""
import pytest

from kubelet.container import ContainerStatus, PodStatus, SandboxStatus
from kubelet.pod_status import (carry_transition_times, generate_api_pod_status, get_phase, qos_class,
                                strip_times)

NOW = 1_700_000_000.0


def make_pod(containers=("app",), init=(), policy="Always", **spec_extra):
    spec = {"containers": [{"name": n, "image": "busybox:1.35"} for n in containers],
            "restartPolicy": policy, **spec_extra}
    if init:
        spec["initContainers"] = [{"name": n, "image": "busybox:1.35"} for n in init]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec, "status": {}}


def running(name, cid="c", restarts=0):
    return ContainerStatus(cid + name, name, "running", created_at=NOW - 10, started_at=NOW - 9,
                           restart_count=restarts, image_ref="sha256:abc")


def exited(name, code=0, cid="x", restarts=0):
    return ContainerStatus(cid + name, name, "exited", created_at=NOW - 20, started_at=NOW - 19,
                           finished_at=NOW - 15, exit_code=code, restart_count=restarts)


def runtime(*containers, ready=True, ip="10.244.0.5"):
    return PodStatus("u1", sandboxes=[SandboxStatus("s1", ready, 0, NOW - 30, ip if ready else "")],
                     containers=list(containers))


def phase_of(pod, rt, **kw):
    return generate_api_pod_status(pod, rt, node_ip="127.0.0.1", now=NOW, **kw)["phase"]


@pytest.mark.parametrize("pod,rt,expected", [
    pytest.param(make_pod(), runtime(), "Pending", id="nothing-started"),
    pytest.param(make_pod(), runtime(running("app")), "Running", id="running"),
    pytest.param(make_pod(("a", "b")), runtime(running("a")), "Pending", id="one-of-two-waiting"),
    pytest.param(make_pod(policy="Never"), runtime(exited("app", 0)), "Succeeded", id="never-success"),
    pytest.param(make_pod(policy="Never"), runtime(exited("app", 1)), "Failed", id="never-failure"),
    pytest.param(make_pod(policy="OnFailure"), runtime(exited("app", 0)), "Succeeded", id="onfailure-success"),
    pytest.param(make_pod(policy="OnFailure"), runtime(exited("app", 2)), "Running", id="onfailure-restarting"),
    pytest.param(make_pod(policy="Always"), runtime(exited("app", 0)), "Running", id="always-restarting"),
    pytest.param(make_pod(init=("init",)), runtime(running("init")), "Pending", id="init-running"),
    pytest.param(make_pod(init=("init",), policy="Never"), runtime(exited("init", 1)), "Failed",
                 id="init-failed-never"),
    pytest.param(make_pod(init=("init",)), runtime(exited("init", 0), running("app")), "Running",
                 id="init-done-app-running"),
])
def test_phase(pod, rt, expected):
    assert phase_of(pod, rt) == expected


def test_terminal_phase_never_goes_back():
    pod = make_pod(policy="Never")
    pod["status"] = {"phase": "Succeeded"}
    assert phase_of(pod, runtime()) == "Succeeded"


def test_running_pod_status_fields():
    """A running pod gets IPs, QoS, Ready conditions and a running container status."""
    st = generate_api_pod_status(make_pod(), runtime(running("app")), node_ip="127.0.0.1", now=NOW)
    assert st["podIP"] == "10.244.0.5" and st["podIPs"] == [{"ip": "10.244.0.5"}]
    assert st["hostIP"] == "127.0.0.1" and st["qosClass"] == "BestEffort"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["containerID"] == "docker://capp"
    assert "running" in cs["state"] and cs["imageID"] == "sha256:abc"


def test_readiness_probe_gates_ready():
    pod = make_pod()
    pod["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}}
    st = generate_api_pod_status(pod, runtime(running("app")), node_ip="n", now=NOW, ready={"app": False})
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert "[app]" in ready["message"]
    st = generate_api_pod_status(pod, runtime(running("app")), node_ip="n", now=NOW, ready={"app": True})
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_crashloop_shows_waiting_with_last_state():
    """An exited container in backoff is Waiting/CrashLoopBackOff with the exit as lastState."""
    rt = runtime(exited("app", 1, restarts=3))
    st = generate_api_pod_status(make_pod(), rt, node_ip="n", now=NOW,
                                 reasons={"app": ("CrashLoopBackOff", "back-off 40s")})
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 3
    assert st["phase"] == "Running"


def test_image_pull_error_keeps_pending():
    st = generate_api_pod_status(make_pod(), runtime(), node_ip="n", now=NOW,
                                 reasons={"app": ("ErrImagePull", "not found")})
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    assert st["phase"] == "Pending"


def test_init_containers_status_and_condition():
    pod = make_pod(init=("i1", "i2"))
    st = generate_api_pod_status(pod, runtime(exited("i1", 0)), node_ip="n", now=NOW)
    init = {s["name"]: s for s in st["initContainerStatuses"]}
    assert init["i1"]["ready"] and not init["i2"]["ready"]
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    cond = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert cond["status"] == "False" and cond["message"] == "containers with incomplete status: [i2]"


def test_transition_times_are_carried():
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "old"}]
    new = carry_transition_times([{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}],
                                 old, "now")
    assert [c["lastTransitionTime"] for c in new] == ["old", "now"]
    assert strip_times({"conditions": new})["conditions"][0] == {"type": "Ready", "status": "True"}


def test_get_phase_directly_handles_unknown_state():
    assert get_phase(make_pod(), [], [{"name": "app", "state": {}}]) == "Pending"


@pytest.mark.parametrize("resources,expected", [
    pytest.param({}, "BestEffort", id="none"),
    pytest.param({"requests": {"cpu": "100m"}}, "Burstable", id="requests-only"),
    pytest.param({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed", id="limits-only"),
    pytest.param({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}},
                 "Burstable", id="requests-below-limits"),
])
def test_qos_class(resources, expected):
    pod = make_pod()
    pod["spec"]["containers"][0]["resources"] = resources
    assert qos_class(pod) == expected
