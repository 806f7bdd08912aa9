"""The node lifecycle controller's pure parts: condition-driven taints and eviction times."""
from controllers import nodelifecycle as nlc

T0 = 1_700_000_000.0


def _node(ready: str | None, *, taints=None, unschedulable=False):
    conds = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {"metadata": {"name": "n"}, "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": conds}}


def test_taints_follow_the_ready_condition():
    assert nlc.reconcile_taints(_node("True"), T0) is None
    got = nlc.reconcile_taints(_node("False"), T0)
    assert [(t["key"], t["effect"]) for t in got] == [(nlc.NOT_READY, "NoSchedule"), (nlc.NOT_READY, "NoExecute")]
    assert "timeAdded" in got[1] and "timeAdded" not in got[0]
    got = nlc.reconcile_taints(_node(None), T0)  # no Ready condition: unknown
    assert {t["key"] for t in got} == {nlc.UNREACHABLE}
    other = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    got = nlc.reconcile_taints(_node("True", taints=[other] + got, unschedulable=True), T0)
    assert got == [other, {"key": nlc.UNSCHEDULABLE, "effect": "NoSchedule"}]


def test_existing_taints_keep_their_time_added():
    first = nlc.reconcile_taints(_node("Unknown"), T0)
    assert nlc.reconcile_taints(_node("Unknown", taints=first), T0 + 60) is None


def _pod(*tolerations):
    return {"spec": {"tolerations": list(tolerations)}}


def test_eviction_time():
    taint = {"key": nlc.UNREACHABLE, "effect": "NoExecute", "timeAdded": "2023-11-14T22:13:20Z"}
    added = 1_700_000_000.0
    assert nlc.eviction_time(_pod(), [taint], T0 + 5) == T0 + 5  # not tolerated: now
    forever = {"key": nlc.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert nlc.eviction_time(_pod(forever), [taint], T0) is None
    timed = dict(forever, tolerationSeconds=300)
    assert nlc.eviction_time(_pod(timed), [taint], T0) == added + 300
    shorter = {"operator": "Exists", "tolerationSeconds": 20}  # tolerates everything for 20 s
    assert nlc.eviction_time(_pod(timed, shorter), [taint], T0) == added + 20
    other = {"key": "x", "effect": "NoExecute"}
    assert nlc.eviction_time(_pod(timed), [taint, other], T0 + 1) == T0 + 1


def test_pressure_conditions_taint_noschedule():
    """TaintNodesByCondition: MemoryPressure=True -> node.kubernetes.io/memory-pressure:NoSchedule."""
    from controllers.nodelifecycle import wanted_taints

    node = {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "MemoryPressure", "status": "True"},
                                      {"type": "DiskPressure", "status": "False"}]}}
    assert wanted_taints(node) == [("node.kubernetes.io/memory-pressure", "NoSchedule")]
