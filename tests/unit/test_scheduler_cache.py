"""The scheduler cache's incremental snapshot and upstream's early stop of
filtering (numFeasibleNodesToFind with a rotating start index)."""
import pytest

from scheduler.cache import SchedulerCache
from scheduler.framework.plugins import default_filters
from scheduler.schedule_one import NodeSearch, find_nodes_that_fit, num_feasible_nodes_to_find
from test_scheduler_plugins import info, node, pod


def bound(name, node_name, cpu="100m"):
    p = pod(name, cpu=cpu)
    p["spec"]["nodeName"] = node_name
    return p


def test_snapshot_reclones_only_changed_nodes():
    cache = SchedulerCache()
    for n in ("b", "a", "c"):
        cache.add_node(node(n))
    first = cache.snapshot()
    assert [i.name for i in first] == ["a", "b", "c"]
    cache.add_pod(bound("x", "b", cpu="1"))
    second = cache.snapshot()
    assert second[0] is first[0] and second[2] is first[2]  # untouched nodes are not copied again
    assert second[1] is not first[1] and second[1].requested.milli_cpu == 1000
    assert first[1].requested.milli_cpu == 0  # an earlier cycle's view does not move under it
    cache.remove_pod(bound("x", "b", cpu="1"))
    assert cache.snapshot()[1].requested.milli_cpu == 0


def test_snapshot_follows_node_removal_and_return():
    cache = SchedulerCache()
    for n in ("a", "b"):
        cache.add_node(node(n))
    cache.snapshot()
    cache.remove_node(node("a"))
    assert [i.name for i in cache.snapshot()] == ["b"]
    cache.add_node(node("a", cpu="8"))
    snap = cache.snapshot()
    assert [i.name for i in snap] == ["a", "b"] and snap[0].allocatable.milli_cpu == 8000


def test_node_update_refreshes_allocatable():
    cache = SchedulerCache()
    cache.add_node(node("a", cpu="1"))
    assert cache.snapshot()[0].allocatable.milli_cpu == 1000
    cache.update_node(node("a", cpu="3"))
    assert cache.snapshot()[0].allocatable.milli_cpu == 3000


@pytest.mark.parametrize("nodes, expected", [
    (50, 50), (100, 100), (200, 100), (1000, 420), (5000, 500), (10000, 500),
])
def test_num_feasible_nodes_to_find(nodes, expected):
    assert num_feasible_nodes_to_find(nodes) == expected


def test_filtering_stops_early_and_rotates():
    nodes = [info(node(f"n{i:03}")) for i in range(200)]
    search = NodeSearch()
    feasible, diagnosis = find_nodes_that_fit(pod(), nodes, default_filters(), search=search)
    assert len(feasible) == 100 and feasible[0].name == "n000" and not diagnosis
    assert search.next_start_node_index == 100
    feasible, _ = find_nodes_that_fit(pod(), nodes, default_filters(), search=search)
    assert feasible[0].name == "n100" and search.next_start_node_index == 0
    # Without a search every node is looked at.
    assert len(find_nodes_that_fit(pod(), nodes, default_filters())[0]) == 200


def test_snapshot_side_tables_follow_pods_and_images():
    """Upstream's havePodsWith(RequiredAnti)AffinityNodeInfoList and imageStates:
    kept incrementally, so InterPodAffinity and ImageLocality walk only what matters."""
    cache = SchedulerCache()
    for n in ("a", "b", "c"):
        nd = node(n)
        if n != "c":
            nd["status"]["images"] = [{"names": ["busybox:1.35"], "sizeBytes": 5_000_000}]
        cache.add_node(nd)
    snap = cache.snapshot()
    assert snap.have_pods_with_affinity == [] and snap.have_pods_with_required_anti_affinity == []
    assert snap.image_num_nodes == {"busybox:1.35": 2}
    anti = bound("x", "b")
    anti["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    cache.add_pod(anti)
    snap2 = cache.snapshot()
    assert [i.name for i in snap2.have_pods_with_affinity] == ["b"]
    assert [i.name for i in snap2.have_pods_with_required_anti_affinity] == ["b"]
    assert snap2.have_pods_with_affinity[0] is snap2[1]
    cache.remove_node(node("a"))
    snap3 = cache.snapshot()
    assert snap3.image_num_nodes == {"busybox:1.35": 1} and snap.image_num_nodes == {"busybox:1.35": 2}
    cache.remove_pod(anti)
    assert cache.snapshot().have_pods_with_required_anti_affinity == []


def test_status_update_of_a_bound_pod_swaps_the_object_only():
    cache = SchedulerCache()
    cache.add_node(node("a"))
    p = bound("x", "a", cpu="1")
    cache.add_pod(p)
    newer = {**p, "status": {"phase": "Running", "startTime": "2024-01-01T00:00:00Z"}}
    cache.update_pod(newer)
    snap = cache.snapshot()
    assert snap[0].pods["default/x"] is newer and snap[0].requested.milli_cpu == 1000
    grown = bound("x", "a", cpu="2")
    cache.update_pod(grown)
    assert cache.snapshot()[0].requested.milli_cpu == 2000
