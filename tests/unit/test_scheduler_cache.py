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
