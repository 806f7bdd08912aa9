"""Node status contents and the pod status manager's write-only-on-change / 409 retry."""
from kubelet.nodestatus import machine_info, node_status
from kubelet.status_manager import StatusManager
from kubeling.client import ApiError


def test_node_status_ready_and_transition_time(tmp_path):
    info = machine_info(str(tmp_path))
    st = node_status(info=info, node_ip="127.0.0.1", hostname="n1", port=10250, runtime_version="docker://20.10",
                     ready=False, not_ready_message="network not ready", old=None, now=1_700_000_000)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "KubeletNotReady"
    assert st["capacity"]["pods"] == "110" and st["capacity"]["memory"].endswith("Ki")
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert st["nodeInfo"]["containerRuntimeVersion"] == "docker://20.10"
    later = node_status(info=info, node_ip="127.0.0.1", hostname="n1", port=10250, runtime_version="docker://20.10",
                        ready=True, not_ready_message="", old=st, now=1_700_000_100)
    ready2 = next(c for c in later["conditions"] if c["type"] == "Ready")
    mem = next(c for c in later["conditions"] if c["type"] == "MemoryPressure")
    assert ready2["status"] == "True" and ready2["reason"] == "KubeletReady"
    assert ready2["lastTransitionTime"] != ready["lastTransitionTime"]
    assert mem["lastTransitionTime"] == "2023-11-14T22:13:20Z"  # unchanged status keeps its time
    assert mem["lastHeartbeatTime"] == "2023-11-14T22:15:00Z"


class FakeClient:
    """Records status PUTs; the first ``conflicts`` PUTs answer 409."""

    def __init__(self, conflicts=0):
        self.conflicts = conflicts
        self.puts = []
        self.gets = 0

    async def replace_status(self, resource, obj):
        self.puts.append(obj["status"])
        if self.conflicts:
            self.conflicts -= 1
            raise ApiError(409, {"reason": "Conflict", "message": "stale"})
        return obj

    async def get(self, resource, name, namespace=None):
        self.gets += 1
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u1", "resourceVersion": "9"}}


POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "1"}, "status": {}}


def status(phase, t="t1"):
    return {"phase": phase, "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}


async def test_writes_only_on_change():
    c = FakeClient()
    sm = StatusManager(c)
    assert await sm.set_pod_status(POD, status("Running"))
    assert not await sm.set_pod_status(POD, status("Running", t="t2"))  # only a timestamp differs
    assert await sm.set_pod_status(POD, status("Succeeded"))
    assert [s["phase"] for s in c.puts] == ["Running", "Succeeded"]


async def test_conflict_retried_on_fresh_object():
    c = FakeClient(conflicts=1)
    sm = StatusManager(c)
    assert await sm.set_pod_status(POD, status("Running"))
    assert len(c.puts) == 2 and c.gets == 1


def test_node_condition_events():
    """Pressure conditions report their first status; Ready only its transitions (nodestatus setters)."""
    from kubelet.nodestatus import condition_events

    def st(**conds):
        return {"conditions": [{"type": t, "status": v} for t, v in conds.items()]}
    first = st(MemoryPressure="False", DiskPressure="False", PIDPressure="False", Ready="False")
    assert condition_events(None, first) == ["NodeHasSufficientMemory", "NodeHasNoDiskPressure",
                                             "NodeHasSufficientPID"]
    ready = st(MemoryPressure="False", DiskPressure="False", PIDPressure="False", Ready="True")
    assert condition_events(first, ready) == ["NodeReady"]
    assert condition_events(ready, ready) == []
    assert condition_events(ready, st(MemoryPressure="True", DiskPressure="False", PIDPressure="False",
                                      Ready="False")) == ["NodeHasInsufficientMemory", "NodeNotReady"]
