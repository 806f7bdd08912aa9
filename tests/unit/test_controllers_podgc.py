"""The pod GC's decisions, with a recording fake client and listers (one piece in isolation)."""
import asyncio

from controllers.podgc import PodGCController, terminated_to_delete
from kubeling.client import ApiError


def _pod(name, *, phase="Running", node=None, created="2026-01-01T00:00:00Z", deleting=False):
    meta = {"name": name, "namespace": "ns", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


def test_terminated_over_threshold_oldest_first():
    pods = [_pod("new", phase="Succeeded", created="2026-01-03T00:00:00Z"),
            _pod("old", phase="Failed", created="2026-01-01T00:00:00Z"),
            _pod("mid", phase="Succeeded", created="2026-01-02T00:00:00Z"), _pod("run")]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 1)] == ["old", "mid"]
    assert terminated_to_delete(pods, 3) == [] and terminated_to_delete(pods, 0) == []


class _Lister:
    def __init__(self, items):
        self.items = {i["metadata"]["name"]: i for i in items}

    def get(self, name, namespace=None):
        return self.items.get(name)

    def list(self, namespace=None, match=None):
        return [i for i in self.items.values() if match is None or match(i)]


class _Informer:
    def __init__(self, items):
        self.lister = _Lister(items)


class _Client:
    def __init__(self, nodes):
        self.nodes, self.calls = nodes, []

    async def get(self, resource, name, namespace=None):
        if name not in self.nodes:
            raise ApiError(404, {"reason": "NotFound"})
        return {"metadata": {"name": name}}

    async def patch(self, resource, name, body, **kw):
        self.calls.append(("patch", name, body["status"]["conditions"][-1]["reason"]))

    async def delete(self, resource, name, namespace=None, grace_period_seconds=None):
        self.calls.append(("delete", name, grace_period_seconds))


def test_orphaned_after_quarantine_and_unscheduled_terminating():
    now = [0.0]
    pods = [_pod("orphan", node="ghost"), _pod("fine", node="n1"), _pod("stuck", deleting=True)]
    client = _Client({"n1"})
    gc = PodGCController(client, _Informer(pods), _Informer([{"metadata": {"name": "n1"}}]),
                         quarantine=40, clock=lambda: now[0])
    asyncio.run(gc.gc())
    assert client.calls == [("delete", "stuck", 0)]  # the orphan is in quarantine
    client.calls.clear()
    now[0] = 41.0
    asyncio.run(gc.gc())
    assert ("patch", "orphan", "DeletionByPodGC") in client.calls and ("delete", "orphan", 0) in client.calls
    assert all(c[1] != "fine" for c in client.calls)
