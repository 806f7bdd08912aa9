"""PLEG diffing: relist snapshots in, lifecycle events out (generic.go generateEvents)."""
import pytest

from kubelet.pleg import (CONTAINER_CHANGED, CONTAINER_DIED, CONTAINER_REMOVED, CONTAINER_STARTED,
                          PodLifecycleEvent, compute_events, group_by_pod)
from proto.cri import api_pb2 as pb


def ev(uid, t, cid):
    return PodLifecycleEvent(uid, t, cid)


@pytest.mark.parametrize("old,new,expected", [
    pytest.param({}, {"p": {"c1": "running"}}, [ev("p", CONTAINER_STARTED, "c1")], id="new-running"),
    pytest.param({"p": {"c1": "running"}}, {"p": {"c1": "running"}}, [], id="unchanged"),
    pytest.param({"p": {"c1": "running"}}, {"p": {"c1": "exited"}}, [ev("p", CONTAINER_DIED, "c1")], id="died"),
    pytest.param({"p": {"c1": "exited"}}, {}, [ev("p", CONTAINER_REMOVED, "c1")], id="removed-after-exit"),
    pytest.param({"p": {"c1": "running"}}, {}, [ev("p", CONTAINER_DIED, "c1"), ev("p", CONTAINER_REMOVED, "c1")],
                 id="vanished-while-running"),
    pytest.param({}, {"p": {"c1": "unknown"}}, [ev("p", CONTAINER_CHANGED, "c1")], id="unknown"),
    pytest.param({}, {"p": {"c1": "exited"}}, [ev("p", CONTAINER_DIED, "c1")], id="new-exited"),
])
def test_compute_events(old, new, expected):
    assert compute_events(old, new) == expected


def test_events_are_per_pod_and_ordered():
    """Two pods change in one relist: events carry each pod's uid, sorted."""
    old = {"b": {"x": "running"}}
    new = {"a": {"y": "running"}, "b": {"x": "exited"}}
    assert compute_events(old, new) == [ev("a", CONTAINER_STARTED, "y"), ev("b", CONTAINER_DIED, "x")]


def test_group_by_pod_uses_sandbox_for_unlabelled_containers():
    """Sandboxes count as containers; a container without the uid label belongs to its sandbox's pod."""
    s = pb.PodSandbox(id="s1", state=pb.SANDBOX_READY,
                      metadata=pb.PodSandboxMetadata(name="web", namespace="default", uid="u1"))
    c1 = pb.Container(id="c1", pod_sandbox_id="s1", state=pb.CONTAINER_RUNNING)
    c2 = pb.Container(id="c2", pod_sandbox_id="zz", state=pb.CONTAINER_EXITED,
                      labels={"io.kubernetes.pod.uid": "u2"})
    pods = group_by_pod([s], [c1, c2])
    assert pods["u1"].states() == {"s1": "running", "c1": "running"}
    assert pods["u2"].states() == {"c2": "exited"}
    assert pods["u1"].name == "web"
