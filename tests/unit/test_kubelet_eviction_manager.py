"""The eviction manager's decisions (pure): thresholds, pressure with its transition period, ranking, admission."""
import pytest

from kubelet.eviction import EvictionManager, parse_thresholds, qos_class, rank_for_memory_pressure

MI = 1 << 20


def pod(uid, *, request=None, limit=None, priority=0):
    res = {}
    if request:
        res["requests"] = {"memory": request}
    if limit:
        res["limits"] = {"memory": limit}
    return {"metadata": {"name": uid, "uid": uid}, "spec": {"priority": priority,
                                                           "containers": [{"name": "c", "resources": res}]}}


def test_parse_thresholds():
    ts = parse_thresholds("memory.available<100Mi, memory.available<5%")
    assert ts[0].value(1000 * MI) == 100 * MI and ts[1].value(1000 * MI) == 50 * MI
    assert ts[0].text(0) == "100Mi"
    for bad, why in (("memory.available>1Gi", "SIGNAL<QUANTITY"), ("nodefs.available<10%", "unsupported"),
                     ("memory.available<abc", "quantity"), ("memory.available<0%", "percentage")):
        with pytest.raises(ValueError, match=why):
            parse_thresholds(bad)


def test_qos_classes():
    assert qos_class(pod("a")) == "BestEffort"
    assert qos_class(pod("b", request="64Mi")) == "Burstable"
    g = pod("c")
    g["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "64Mi"}}
    assert qos_class(g) == "Guaranteed"


def test_rank_usage_over_requests_then_priority_then_excess():
    pods = [pod("under", request="512Mi"), pod("over-small", request="10Mi"), pod("besteffort"),
            pod("over-big-high-prio", request="10Mi", priority=1000)]
    usage = {"under": 100 * MI, "over-small": 20 * MI, "besteffort": 300 * MI, "over-big-high-prio": 900 * MI}
    order = [p["metadata"]["uid"] for p in rank_for_memory_pressure(pods, usage)]
    assert order == ["besteffort", "over-small", "over-big-high-prio", "under"]


def test_synchronize_pressure_transition_and_admission():
    m = EvictionManager(parse_thresholds("memory.available<100Mi"), pressure_transition_period=30)
    pods = [pod("a", request="1Gi"), pod("b")]
    d = m.synchronize(now=0, available=500 * MI, capacity=2000 * MI, pods=pods, usage={"b": MI})
    assert not d.under_pressure and d.evict is None
    assert m.admit(pod("x"), now=0) is None
    d = m.synchronize(now=10, available=50 * MI, capacity=2000 * MI, pods=pods, usage={"b": MI})
    assert d.under_pressure and d.evict["metadata"]["uid"] == "b"
    assert d.message.startswith("The node was low on resource: memory. Threshold quantity: 100Mi, "
                                "available: 51200Ki.")
    assert m.admit(pod("x"), now=11) == "The node had condition: [MemoryPressure]."
    assert m.admit(pod("y", request="1Mi"), now=11) is None, "only BestEffort pods are refused"
    d = m.synchronize(now=20, available=500 * MI, capacity=2000 * MI, pods=pods, usage={})
    assert d.under_pressure and d.evict is None, "pressure stays for the transition period"
    assert not m.synchronize(now=41, available=500 * MI, capacity=2000 * MI, pods=pods, usage={}).under_pressure
