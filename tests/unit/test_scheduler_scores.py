"""Score plugins (raw, normalized) and the weighted total of the default
profile, with figures from upstream's own score tests where they exist."""
import pytest

from scheduler.framework.interface import default_normalize_score
from scheduler.framework.plugins import BalancedAllocation, LeastAllocated, NodeAffinity, TaintToleration, \
    default_scores
from scheduler.schedule_one import prioritize_nodes
from test_scheduler_plugins import info, node, pod


def normalized(plugin, p, nodes):
    raw = {n.name: plugin.score(p, n) for n in nodes}
    if hasattr(plugin, "normalize_score"):
        plugin.normalize_score(p, raw)
    return raw


def test_least_allocated_and_balanced_on_differently_sized_nodes():
    # upstream: "nothing scheduled, resources requested, differently sized nodes"
    nodes = [info(node("n1", cpu="4", memory="10000")), info(node("n2", cpu="6", memory="10000"))]
    p = pod(cpu="3", memory="5000")
    assert normalized(LeastAllocated(), p, nodes) == {"n1": 37, "n2": 50}
    assert normalized(BalancedAllocation(), p, nodes) == {"n1": 87, "n2": 100}


def test_least_allocated_counts_placed_pods_with_non_zero_defaults():
    empty = info(node("a", cpu="1", memory="1Gi"))
    busy = info(node("b", cpu="1", memory="1Gi"), pod("x"))  # requests nothing: counts 100m / 200Mi
    p = pod(cpu="100m", memory="100Mi")
    scores = normalized(LeastAllocated(), p, [empty, busy])
    assert scores["a"] == (90 + (1024 - 100) * 100 // 1024) // 2
    assert scores["b"] == (80 + (1024 - 300) * 100 // 1024) // 2


def test_least_allocated_over_capacity_scores_zero():
    assert LeastAllocated().score(pod(cpu="8", memory="8Gi"), info(node(cpu="1", memory="1Gi"))) == 0


def test_balanced_allocation_ignores_non_zero_defaults():
    """BalancedAllocation uses the real requests (upstream's useRequested)."""
    n = info(node(cpu="1", memory="1Gi"), pod("x"))
    assert BalancedAllocation().score(pod(), n) == 100


def _preferred(*terms):
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": {"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}}
        for w, k, v in terms]}}


@pytest.mark.parametrize("terms, expected", [
    pytest.param([], {"n1": 0, "n2": 0, "n3": 0}, id="no-preference"),
    pytest.param([(2, "zone", "a")], {"n1": 100, "n2": 100, "n3": 0}, id="one-term"),
    pytest.param([(2, "zone", "a"), (6, "disk", "ssd")], {"n1": 25, "n2": 100, "n3": 75}, id="weights-add-up"),
    pytest.param([(0, "zone", "a")], {"n1": 0, "n2": 0, "n3": 0}, id="zero-weight-ignored"),
])
def test_node_affinity_preferred_score(terms, expected):
    nodes = [info(node("n1", labels={"zone": "a"})), info(node("n2", labels={"zone": "a", "disk": "ssd"})),
             info(node("n3", labels={"zone": "b", "disk": "ssd"}))]
    assert normalized(NodeAffinity(), pod(affinity=_preferred(*terms)), nodes) == expected


def _prefer_taint(key):
    return {"key": key, "value": "v", "effect": "PreferNoSchedule"}


@pytest.mark.parametrize("tolerations, expected", [
    pytest.param(None, {"n0": 100, "n1": 50, "n2": 0}, id="fewer-intolerable-taints-win"),
    pytest.param([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}],
                 {"n0": 100, "n1": 100, "n2": 0}, id="tolerated-taint-does-not-count"),
    pytest.param([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}],
                 {"n0": 100, "n1": 50, "n2": 0}, id="noschedule-toleration-does-not-help"),
    pytest.param([{"operator": "Exists"}], {"n0": 100, "n1": 100, "n2": 100}, id="tolerate-everything"),
])
def test_taint_toleration_prefer_no_schedule_score(tolerations, expected):
    nodes = [info(node("n0")), info(node("n1", taints=[_prefer_taint("a")])),
             info(node("n2", taints=[_prefer_taint("a"), _prefer_taint("b"),
                                     {"key": "c", "value": "v", "effect": "NoExecute"}]))]
    assert normalized(TaintToleration(), pod(tolerations=tolerations), nodes) == expected


@pytest.mark.parametrize("scores, reverse, expected", [
    pytest.param({"a": 0, "b": 0}, False, {"a": 0, "b": 0}, id="all-zero"),
    pytest.param({"a": 0, "b": 0}, True, {"a": 100, "b": 100}, id="all-zero-reversed"),
    pytest.param({"a": 1, "b": 3}, False, {"a": 33, "b": 100}, id="scaled"),
    pytest.param({"a": 1, "b": 3}, True, {"a": 67, "b": 0}, id="scaled-reversed"),
])
def test_default_normalize_score(scores, reverse, expected):
    default_normalize_score(scores, reverse=reverse)
    assert scores == expected


def test_default_profile_weights():
    """TaintToleration x3, NodeAffinity x2, PodTopologySpread x2, InterPodAffinity x2,
    LeastAllocated x1, BalancedAllocation x1, ImageLocality x1."""
    assert {type(p).__name__: p.weight for p in default_scores()} == {
        "TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2, "InterPodAffinity": 2,
        "LeastAllocated": 1, "BalancedAllocation": 1, "ImageLocality": 1}
    nodes = [info(node("tainted", labels={"zone": "a"}, taints=[_prefer_taint("a")])),
             info(node("plain", labels={"zone": "b"}))]
    p = pod(affinity=_preferred((1, "zone", "a")))
    totals = dict(prioritize_nodes(p, nodes, default_scores()))
    la = LeastAllocated().score(p, nodes[0])
    ba = BalancedAllocation().score(p, nodes[0])
    assert totals == {"tainted": 0 * 3 + 100 * 2 + la + ba, "plain": 100 * 3 + 0 * 2 + la + ba}


def _with_images(n, *images):
    n["status"]["images"] = [{"names": names, "sizeBytes": size} for names, size in images]
    return n


MB = 1024 * 1024


@pytest.mark.parametrize("image, expected", [
    pytest.param("busybox:1.35", {"a": 100 * (250 - 23) // 977, "b": 0}, id="half-the-nodes-have-it"),
    pytest.param("docker.io/library/busybox:1.35", {"a": 100 * (250 - 23) // 977, "b": 0}, id="any-of-its-names"),
    pytest.param("small", {"a": 0, "b": 0}, id="tagless-name-is-latest-and-tiny-images-score-zero"),
    pytest.param("absent:1", {"a": 0, "b": 0}, id="nobody-has-it"),
])
def test_image_locality(image, expected):
    from scheduler.framework.interface import CycleState
    from scheduler.framework.plugins import ImageLocality
    nodes = [info(_with_images(node("a"), (["busybox:1.35", "docker.io/library/busybox:1.35"], 500 * MB),
                               (["small:latest"], 10 * MB))),
             info(node("b"))]
    p = pod()
    p["spec"]["containers"][0]["image"] = image
    plugin = ImageLocality()
    state = CycleState()
    plugin.pre_score(p, nodes, state)
    assert {n.name: plugin.score(p, n, state) for n in nodes} == expected
