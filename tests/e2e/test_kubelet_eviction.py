"""Node-pressure eviction with a real kubelet, CRI shim and Docker (issue 6).

The node runs two pods; the kubelet is then restarted with a hard threshold
no machine can satisfy (``memory.available<100%``), as if memory had run
out. It must report MemoryPressure, evict the pods one per monitoring
interval in upstream's order (the BestEffort pod, whose usage exceeds its
zero request, before the Burstable pod that stays under its request), kill
their containers, mark them Failed/Evicted with an Evicted event, and refuse
a new BestEffort pod. Test-only names: node "kltest-evict", bridge "kltestev0",
pod CIDR 10.244.245.0/24.
"""
from __future__ import annotations


import pytest

import support
from support import wait_for

NODE = "kltest-evict"
BRIDGE = "kltestev0"
POD_CIDR = "10.244.245.0/24"
IMAGE = "busybox:1.35"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    docker_client = support.node_or_skip("kubelet eviction tests", IMAGE)
    with support.node(tmp_path_factory.mktemp("evict"), name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR,
                      docker_client=docker_client, image=IMAGE,
                      kubelet_flags=["--sync-frequency", "2", "--eviction-monitoring-interval", "1s"]) as n:
        n.docker = docker_client
        yield n


def pod_spec(name: str, **resources) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
                                     "resources": resources}]}}


def get(http, name: str) -> dict:
    return http.get(f"/api/v1/namespaces/default/pods/{name}").json()


def condition(obj: dict, ctype: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), None)


def running_containers(docker_client, name: str) -> list:
    return [c for c in docker_client.containers.list(filters={"label": f"io.kubeling.node={NODE}"})
            if c.labels.get("io.kubernetes.pod.name") == name and
            c.labels.get("io.kubernetes.container.name") != "POD"]


def test_memory_pressure_evicts_in_rank_order_and_refuses_besteffort(node):
    http = node.http
    for obj in (pod_spec("besteffort"), pod_spec("burstable", requests={"memory": "512Mi"})):
        r = http.post("/api/v1/namespaces/default/pods", json=obj)
        assert r.status_code == 201, r.text
    for name in ("besteffort", "burstable"):
        wait_for(f"{name} Running", lambda n=name: get(http, n).get("status", {}).get("phase") == "Running", 60)
        assert running_containers(node.docker, name), f"{name}'s container runs"
    node_obj = http.get(f"/api/v1/nodes/{NODE}").json()
    assert condition(node_obj, "MemoryPressure") == "False"

    # "Memory runs out": the kubelet restarts with a threshold above any possible availability.
    node.procs.stop("kubelet")
    args = [a for a in node.kubelet_args]
    node.procs.spawn("kubelet", [*args, "--eviction-hard", "memory.available<100%",
                                 "--eviction-pressure-transition-period", "1m"])
    wait_for("MemoryPressure=True", lambda: condition(http.get(f"/api/v1/nodes/{NODE}").json(),
                                                      "MemoryPressure") == "True", 40)

    def failed(name):
        st = get(http, name).get("status", {})
        return st if st.get("phase") == "Failed" and st.get("reason") == "Evicted" else None
    first = wait_for("the BestEffort pod evicted", lambda: failed("besteffort"), 40)
    assert first["message"].startswith("The node was low on resource: memory. Threshold quantity:")
    assert get(http, "burstable")["status"]["phase"] == "Running" or failed("burstable"), \
        "the Burstable pod under its request goes second"
    wait_for("the Burstable pod evicted next", lambda: failed("burstable"), 40)
    for name in ("besteffort", "burstable"):
        wait_for(f"{name}'s containers killed", lambda n=name: not running_containers(node.docker, n), 30)
    events = http.get("/api/v1/namespaces/default/events",
                      params={"fieldSelector": "involvedObject.name=besteffort,reason=Evicted"}).json()["items"]
    assert events and events[0]["type"] == "Warning"

    # Under pressure a new BestEffort pod fails at admission; a Burstable one would be admitted.
    r = http.post("/api/v1/namespaces/default/pods", json=pod_spec("late"))
    assert r.status_code == 201, r.text
    st = wait_for("the new BestEffort pod refused", lambda: failed("late"), 40)
    assert st["message"] == "The node had condition: [MemoryPressure]."
    assert not running_containers(node.docker, "late")
