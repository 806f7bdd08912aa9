"""Each filter and score plugin on hand-built nodes and pods, and the
FitError message upstream users read in `kubectl describe pod`."""
import random

import pytest

from scheduler.cache import SchedulerCache
from scheduler.framework import Code, NodeInfo
from scheduler.framework.plugins import (BalancedAllocation, LeastAllocated, NodeAffinity, NodeName, NodeReady,
                                         NodeResourcesFit, NodeUnschedulable, TaintToleration, default_filters,
                                         default_scores)
from scheduler.schedule_one import FitError, schedule_pod, select_host


def node(name="n1", *, cpu="2", memory="4Gi", pods="110", ready="True", labels=None, taints=None,
         unschedulable=False):
    n = {"kind": "Node", "metadata": {"name": name, "labels": labels or {}},
         "spec": {}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                                "conditions": [{"type": "Ready", "status": ready}]}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def pod(name="p", *, cpu=None, memory=None, node_name=None, tolerations=None, node_selector=None,
        affinity=None, priority=None):
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    p = {"kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
         "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": req}}]}}
    for k, v in (("nodeName", node_name), ("tolerations", tolerations), ("nodeSelector", node_selector),
                 ("affinity", affinity), ("priority", priority)):
        if v is not None:
            p["spec"][k] = v
    return p


def info(n, *pods):
    i = NodeInfo(n)
    for p in pods:
        i.add_pod(p)
    return i


def test_node_unschedulable():
    f = NodeUnschedulable()
    assert f.filter(pod(), info(node())).ok
    st = f.filter(pod(), info(node(unschedulable=True)))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE and st.reasons == ("node(s) were unschedulable",)
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert f.filter(pod(tolerations=tol), info(node(unschedulable=True))).ok


def test_node_name():
    assert NodeName().filter(pod(node_name="n1"), info(node("n1"))).ok
    assert not NodeName().filter(pod(node_name="n2"), info(node("n1"))).ok
    assert NodeName().filter(pod(), info(node("n1"))).ok


@pytest.mark.parametrize("ready, ok, reason", [
    pytest.param("True", True, None, id="ready"),
    pytest.param("False", False, "node(s) had untolerated taint {node.kubernetes.io/not-ready: }", id="not-ready"),
    pytest.param("Unknown", False, "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
                 id="unknown"),
])
def test_node_ready(ready, ok, reason):
    st = NodeReady().filter(pod(), info(node(ready=ready)))
    assert st.ok is ok
    if reason:
        assert st.reasons == (reason,)


def test_node_ready_tolerated():
    tol = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    assert NodeReady().filter(pod(tolerations=tol), info(node(ready="False"))).ok


@pytest.mark.parametrize("taint, tolerations, ok", [
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, None, False, id="untolerated"),
    pytest.param({"key": "k", "value": "v", "effect": "PreferNoSchedule"}, None, True, id="prefer-ignored"),
    pytest.param({"key": "k", "value": "v", "effect": "NoExecute"},
                 [{"key": "k", "operator": "Equal", "value": "v"}], True, id="equal-any-effect"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"},
                 [{"key": "k", "value": "w"}], False, id="equal-wrong-value"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"},
                 [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}], True, id="exists"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"},
                 [{"key": "k", "operator": "Exists", "effect": "NoExecute"}], False, id="exists-wrong-effect"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"},
                 [{"operator": "Exists"}], True, id="exists-empty-key-matches-all"),
])
def test_taint_toleration(taint, tolerations, ok):
    st = TaintToleration().filter(pod(tolerations=tolerations), info(node(taints=[taint])))
    assert st.ok is ok
    if not ok:
        assert st.reasons == ("node(s) had untolerated taint {k: v}",)


def _required(*exprs, fields=()):
    term = {}
    if exprs:
        term["matchExpressions"] = list(exprs)
    if fields:
        term["matchFields"] = list(fields)
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


@pytest.mark.parametrize("kwargs, ok", [
    pytest.param({"node_selector": {"disk": "ssd"}}, True, id="selector-match"),
    pytest.param({"node_selector": {"disk": "hdd"}}, False, id="selector-mismatch"),
    pytest.param({"affinity": _required({"key": "zone", "operator": "In", "values": ["a", "b"]})}, True, id="in"),
    pytest.param({"affinity": _required({"key": "zone", "operator": "NotIn", "values": ["a"]})}, False,
                 id="notin"),
    pytest.param({"affinity": _required({"key": "gpu", "operator": "NotIn", "values": ["x"]})}, True,
                 id="notin-absent-key"),
    pytest.param({"affinity": _required({"key": "disk", "operator": "Exists"})}, True, id="exists"),
    pytest.param({"affinity": _required({"key": "disk", "operator": "DoesNotExist"})}, False, id="doesnotexist"),
    pytest.param({"affinity": _required({"key": "cores", "operator": "Gt", "values": ["4"]})}, True, id="gt"),
    pytest.param({"affinity": _required({"key": "cores", "operator": "Lt", "values": ["4"]})}, False, id="lt"),
    pytest.param({"affinity": _required({"key": "cores", "operator": "Gt", "values": ["x"]})}, False,
                 id="gt-not-a-number"),
    pytest.param({"affinity": _required(fields=[{"key": "metadata.name", "operator": "In",
                                                  "values": ["n1"]}])}, True, id="match-fields"),
    pytest.param({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}}, False, id="empty-term-matches-nothing"),
])
def test_node_affinity(kwargs, ok):
    n = node("n1", labels={"disk": "ssd", "zone": "a", "cores": "8"})
    st = NodeAffinity().filter(pod(**kwargs), info(n))
    assert st.ok is ok
    if not ok:
        assert st.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_resources_fit_counts_bound_pods():
    n = node(cpu="1", memory="1Gi", pods="2")
    f = NodeResourcesFit()
    assert f.filter(pod(cpu="600m"), info(n)).ok
    st = f.filter(pod(cpu="600m"), info(n, pod("a", cpu="500m")))
    assert st.code is Code.UNSCHEDULABLE and st.reasons == ("Insufficient cpu",)
    st = f.filter(pod(memory="2Gi"), info(n))
    assert st.reasons == ("Insufficient memory",)
    st = f.filter(pod(), info(n, pod("a"), pod("b")))
    assert st.reasons == ("Too many pods",)


def test_least_allocated_prefers_emptier_node():
    s = LeastAllocated()
    empty = info(node("a"))
    busy = info(node("b"), pod("x", cpu="1", memory="2Gi"))
    assert s.score(pod(cpu="100m"), empty) > s.score(pod(cpu="100m"), busy)
    # A pod without requests is scored with the 100m / 200Mi defaults.
    assert s.score(pod(), empty) == ((2000 - 100) * 100 // 2000 + (4 * 2 ** 30 - 200 * 2 ** 20) * 100
                                     // (4 * 2 ** 30)) // 2


def test_balanced_allocation():
    s = BalancedAllocation()
    n = node(cpu="1", memory="1Gi")
    assert s.score(pod(cpu="500m", memory="512Mi"), info(n)) == 100
    assert s.score(pod(cpu="1", memory="1Mi"), info(n)) < 60


def test_fit_error_message_is_upstreams():
    nodes = [info(node("a", cpu="1")), info(node("b", unschedulable=True)), info(node("c", cpu="1"))]
    with pytest.raises(FitError) as e:
        schedule_pod(pod(cpu="2"), nodes, default_filters(), default_scores())
    assert str(e.value) == "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
    with pytest.raises(FitError, match="^no nodes available to schedule pods$"):
        schedule_pod(pod(), [], default_filters(), default_scores())


def test_schedule_picks_least_allocated_and_breaks_ties_at_random():
    a, b = info(node("a")), info(node("b"), pod("x", cpu="1"))
    assert schedule_pod(pod(cpu="100m"), [a, b], default_filters(), default_scores()) == "a"
    rng = random.Random(1)
    picks = {select_host([("a", 5), ("b", 5), ("c", 1)], rng) for _ in range(50)}
    assert picks == {"a", "b"}


def test_cache_assume_counts_before_binding_and_forget_undoes():
    cache = SchedulerCache()
    cache.add_node(node("n1", cpu="1"))
    p = pod("p", cpu="800m", node_name="n1")
    cache.assume_pod(p)
    [snap] = cache.snapshot()
    assert snap.requested.milli_cpu == 800 and cache.is_assumed(p)
    assert not NodeResourcesFit().filter(pod("q", cpu="500m"), snap).ok
    cache.forget_pod(p)
    assert cache.snapshot()[0].requested.milli_cpu == 0
    cache.assume_pod(p)
    cache.add_pod(p)  # the informer confirms the binding
    assert not cache.is_assumed(p) and cache.snapshot()[0].requested.milli_cpu == 800
    cache.remove_pod(p)
    assert cache.snapshot()[0].requested.milli_cpu == 0


def _eph(p, amount):
    p["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] = amount
    return p


@pytest.mark.parametrize("incoming, placed, reasons", [
    pytest.param(pod(cpu="1", memory="1Gi"), [], (), id="fits-empty-node"),
    pytest.param(pod(cpu="1500m"), [pod("a", cpu="600m")], ("Insufficient cpu",), id="cpu"),
    pytest.param(pod(memory="3Gi"), [pod("a", memory="2Gi")], ("Insufficient memory",), id="memory"),
    pytest.param(_eph(pod(), "6Gi"), [_eph(pod("a"), "5Gi")], ("Insufficient ephemeral-storage",),
                 id="ephemeral-storage"),
    pytest.param(pod(cpu="3", memory="5Gi"), [], ("Insufficient cpu", "Insufficient memory"),
                 id="several-reasons-in-upstream-order"),
    pytest.param(pod(), [pod("a"), pod("b"), pod("c")], ("Too many pods",), id="pods"),
    pytest.param(pod(), [pod("a", cpu="2", memory="4Gi")], (), id="no-requests-always-fit-resources"),
])
def test_node_resources_fit_table(incoming, placed, reasons):
    n = node(cpu="2", memory="4Gi", pods="3")
    n["status"]["allocatable"]["ephemeral-storage"] = "10Gi"
    st = NodeResourcesFit().filter(incoming, info(n, *placed))
    assert st.reasons == reasons
    assert st.ok is (not reasons)
    if reasons:
        assert st.code is Code.UNSCHEDULABLE  # evicting pods could help: preemption may try


def test_pre_filter_skip_leaves_plugins_out_of_the_cycle():
    """NodeAffinity, NodePorts, PodTopologySpread and InterPodAffinity have nothing
    to check for a plain pod: their PreFilter answers Skip, as upstream's."""
    from scheduler.framework.interface import CycleState, run_pre_filters
    filters = default_filters()
    state = CycleState()
    assert run_pre_filters(pod(), [info(node())], filters, state).ok
    assert [f.name for f in state.active_filters[1]] == [
        "NodeUnschedulable", "NodeName", "NodeReady", "TaintToleration", "NodeResourcesFit"]
    state = CycleState()
    assert run_pre_filters(pod(node_selector={"a": "b"}), [info(node())], filters, state).ok
    assert "NodeAffinity" in [f.name for f in state.active_filters[1]]
