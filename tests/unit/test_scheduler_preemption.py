"""FitError messages with DefaultPreemption's tail, word for word as
kube-scheduler 1.32 prints them, and the victims a preemption would evict."""
import pytest

from scheduler.framework.plugins import default_filters, default_scores
from scheduler.framework.plugins.defaultpreemption import preempt
from scheduler.schedule_one import FitError, post_filter, schedule_pod
from test_scheduler_plugins import info, node, pod


def fail(p, nodes):
    with pytest.raises(FitError) as e:
        schedule_pod(p, nodes, default_filters(), default_scores())
    result = post_filter(p, nodes, e.value, default_filters())
    return str(e.value), result


def prio(p, value, *, node_name=None):
    p["spec"]["priority"] = value
    if node_name:
        p["spec"]["nodeName"] = node_name
    return p


def test_issue_example_message():
    nodes = [info(node("a", cpu="1", labels={"disk": "ssd"})), info(node("b")), info(node("c"))]
    msg, result = fail(pod(cpu="2", node_selector={"disk": "ssd"}), nodes)
    assert result.candidate is None
    assert msg == ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
                   "affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for "
                   "incoming pod, 2 Preemption is not helpful for scheduling..")


def test_unresolvable_everywhere():
    nodes = [info(node(n, taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])) for n in "abc"]
    msg, _ = fail(pod(), nodes)
    assert msg == ("0/3 nodes are available: 3 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are "
                   "available: 3 Preemption is not helpful for scheduling..")


def test_preemption_policy_never():
    p = pod(cpu="2")
    p["spec"]["preemptionPolicy"] = "Never"
    msg, _ = fail(p, [info(node("a", cpu="1"))])
    assert msg == ("0/1 nodes are available: 1 Insufficient cpu. "
                   "preemption: not eligible due to preemptionPolicy=Never..")


def test_no_nodes():
    with pytest.raises(FitError, match="^no nodes available to schedule pods$"):
        schedule_pod(pod(), [], default_filters(), default_scores())


def test_victims_are_the_fewest_lowest_priority_pods():
    low0 = prio(pod("low0", cpu="800m"), 0, node_name="a")
    low1 = prio(pod("low1", cpu="800m"), 1, node_name="a")
    high = prio(pod("high", cpu="1"), 10)
    nodes = [info(node("a", cpu="2"), low0, low1)]
    msg, result = fail(high, nodes)
    assert msg == "0/1 nodes are available: 1 Insufficient cpu."  # preemption found a way: no tail
    assert result.candidate.node_name == "a"
    assert [v["metadata"]["name"] for v in result.candidate.victims] == ["low0"]


def test_higher_or_equal_priority_pods_are_never_victims():
    nodes = [info(node("a", cpu="1"), prio(pod("x", cpu="1"), 10, node_name="a"))]
    msg, result = fail(prio(pod("p", cpu="1"), 10), nodes)
    assert result.candidate is None
    assert msg.endswith("preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..")


def test_evicting_everything_still_not_enough_keeps_the_filter_reason():
    nodes = [info(node("a", cpu="1"), prio(pod("x", cpu="500m"), 0, node_name="a"))]
    msg, result = fail(prio(pod("p", cpu="4"), 10), nodes)
    assert result.candidate is None
    assert msg == ("0/1 nodes are available: 1 Insufficient cpu. "
                   "preemption: 0/1 nodes are available: 1 Insufficient cpu..")


def test_candidate_with_lowest_priority_victims_is_picked():
    nodes = [info(node("a", cpu="1"), prio(pod("va", cpu="1"), 5, node_name="a")),
             info(node("b", cpu="1"), prio(pod("vb", cpu="1"), 1, node_name="b"))]
    _, result = fail(prio(pod("p", cpu="1"), 10), nodes)
    assert result.candidate.node_name == "b"


def test_waits_for_terminating_victims_on_the_nominated_node():
    victim = prio(pod("v", cpu="1"), 0, node_name="a")
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    p = prio(pod("p", cpu="1"), 10)
    p["status"] = {"nominatedNodeName": "a"}
    nodes = [info(node("a", cpu="1"), victim)]
    with pytest.raises(FitError) as e:
        schedule_pod(p, nodes, default_filters(), default_scores())
    result = preempt(p, nodes, e.value.diagnosis, default_filters())
    assert result.candidate is None
    assert result.message == "preemption: not eligible due to a terminating pod on the nominated node."


def test_preempting_a_pod_whose_anti_affinity_blocks_the_incoming_one():
    blocker = prio(pod("blocker"), 0, node_name="a")
    blocker["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    bystander = prio(pod("bystander"), 0, node_name="a")
    incoming = prio(pod("p"), 10)
    incoming["metadata"]["labels"] = {"app": "web"}
    nodes = [info(node("a", labels={"kubernetes.io/hostname": "a"}), blocker, bystander)]
    msg, result = fail(incoming, nodes)
    assert msg == "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
    assert [v["metadata"]["name"] for v in result.candidate.victims] == ["blocker"]


def test_dry_run_stops_after_enough_candidates():
    from scheduler.framework.plugins.defaultpreemption import num_candidates
    assert [num_candidates(n) for n in (3, 100, 500, 2000)] == [3, 100, 100, 200]


def test_pods_nominated_by_preemption_keep_their_room():
    from scheduler.queue import SchedulingQueue
    q = SchedulingQueue()
    waiting = prio(pod("waiting", cpu="800m"), 10)
    waiting["status"] = {"nominatedNodeName": "a"}
    q.add(waiting)
    nodes = [info(node("a", cpu="1"))]
    lower = prio(pod("lower", cpu="500m"), 0)
    with pytest.raises(FitError) as e:
        schedule_pod(lower, nodes, default_filters(), default_scores(), nominated=q.nominated_pods_for_node)
    assert str(e.value) == "0/1 nodes are available: 1 Insufficient cpu."
    higher = prio(pod("higher", cpu="500m"), 20)
    assert schedule_pod(higher, nodes, default_filters(), default_scores(),
                        nominated=q.nominated_pods_for_node) == "a"
    # The nominated pod itself is not in its own way.
    assert schedule_pod(waiting, nodes, default_filters(), default_scores(),
                        nominated=q.nominated_pods_for_node) == "a"
    q.delete(waiting)
    assert q.nominated_pods_for_node("a") == []
    assert schedule_pod(lower, nodes, default_filters(), default_scores(),
                        nominated=q.nominated_pods_for_node) == "a"


def test_preemption_recounts_topology_spread_without_the_victims():
    host = "kubernetes.io/hostname"
    victim = prio(pod("victim"), 0, node_name="n1")
    victim["metadata"]["labels"] = {"app": "web"}
    incoming = prio(pod("p"), 10)
    incoming["metadata"]["labels"] = {"app": "web"}
    incoming["spec"]["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": host, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]
    nodes = [info(node("n1", labels={host: "n1"}), victim),
             info(node("n2", labels={host: "n2"}, unschedulable=True))]
    msg, result = fail(incoming, nodes)
    assert msg == ("0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, "
                   "1 node(s) were unschedulable.")
    assert result.candidate.node_name == "n1"
    assert [v["metadata"]["name"] for v in result.candidate.victims] == ["victim"]


def test_nominated_node_is_tried_first():
    nodes = [info(node("a")), info(node("b")), info(node("c", cpu="64"))]
    p = pod("p", cpu="1")
    assert schedule_pod(p, nodes, default_filters(), default_scores()) == "c"  # emptiest
    p["status"] = {"nominatedNodeName": "b"}
    assert schedule_pod(p, nodes, default_filters(), default_scores()) == "b"
    p["spec"]["nodeSelector"] = {"x": "y"}  # the nominated node no longer fits: normal search
    with pytest.raises(FitError):
        schedule_pod(p, nodes, default_filters(), default_scores())
