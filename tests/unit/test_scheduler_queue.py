"""The scheduling queue's ordering, backoff and unschedulable handling,
driven by a hand-moved clock (upstream's PriorityQueue behaviour)."""
import asyncio

from scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def pod(name, priority=None):
    p = {"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": []}}
    if priority is not None:
        p["spec"]["priority"] = priority
    return p


async def pop_names(q, n):
    return [(await asyncio.wait_for(q.pop(), 1)).pod["metadata"]["name"] for _ in range(n)]


async def test_priority_then_fifo():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    for name, prio in (("low1", 0), ("high", 10), ("low2", 0)):
        q.add(pod(name, prio))
        clock.now += 1
    assert await pop_names(q, 3) == ["high", "low1", "low2"]


async def test_backoff_doubles_to_ten_seconds():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("p"))
    durations = []
    for _ in range(6):
        pinfo = await asyncio.wait_for(q.pop(), 1)
        durations.append(q.backoff_duration(pinfo))
        q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle, unschedulable=False)
        assert q.pending()["backoff"] == ["default/p"]
        clock.now += durations[-1] - 0.01
        q.flush_backoff_completed()
        assert q.pending()["active"] == []
        clock.now += 0.02
        q.flush_backoff_completed()
        assert q.pending()["active"] == ["default/p"]
    assert durations == [1, 2, 4, 8, 10, 10]


async def test_unschedulable_waits_for_a_cluster_event():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("p"))
    pinfo = await q.pop()
    cycle = q.scheduling_cycle
    q.add_unschedulable_if_not_present(pinfo, cycle)
    assert q.pending()["unschedulable"] == ["default/p"]
    clock.now += 60
    q.flush_backoff_completed()
    assert q.pending()["unschedulable"] == ["default/p"]
    q.move_all_to_active_or_backoff("NodeAdd")
    assert q.pending()["active"] == ["default/p"]


async def test_event_during_cycle_sends_failed_pod_to_backoff_not_unschedulable():
    """A node added while the pod was being scheduled must not be missed."""
    q = SchedulingQueue(clock=Clock())
    q.add(pod("p"))
    pinfo = await q.pop()
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff("NodeAdd")
    q.add_unschedulable_if_not_present(pinfo, cycle)
    assert q.pending()["backoff"] == ["default/p"]


async def test_move_keeps_backing_off_pods_in_backoff():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("p"))
    pinfo = await q.pop()
    q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle)
    q.move_all_to_active_or_backoff("NodeUpdate")
    assert q.pending()["backoff"] == ["default/p"]


async def test_long_unschedulable_pods_are_flushed():
    clock = Clock()
    q = SchedulingQueue(clock=clock, max_in_unschedulable=300)
    q.add(pod("p"))
    pinfo = await q.pop()
    q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle)
    clock.now += 301
    q.flush_unschedulable_left_over()
    assert q.pending()["active"] == ["default/p"]


async def test_update_of_unschedulable_pod_spec_requeues_and_delete_removes():
    q = SchedulingQueue(clock=Clock())
    old = pod("p")
    q.add(old)
    pinfo = await q.pop()
    q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle)
    new = pod("p")
    new["spec"]["nodeSelector"] = {"a": "b"}
    q.update(old, new)
    assert "default/p" not in q.pending()["unschedulable"]
    q.delete(new)
    assert "default/p" not in q


async def test_pop_waits_for_add():
    q = SchedulingQueue()
    waiter = asyncio.ensure_future(q.pop())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.add(pod("p"))
    assert (await asyncio.wait_for(waiter, 1)).pod["metadata"]["name"] == "p"


async def _unschedulable(q, name, plugins):
    q.add(pod(name))
    pinfo = await q.pop()
    pinfo.unschedulable_plugins = frozenset(plugins)
    q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle)
    return pinfo


async def test_events_move_only_pods_their_plugins_care_about():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    await _unschedulable(q, "affinity", {"NodeAffinity"})
    await _unschedulable(q, "cpu", {"NodeResourcesFit"})
    await _unschedulable(q, "anti", {"InterPodAffinity"})
    clock.now += 20  # past any backoff
    q.move_all_to_active_or_backoff("AssignedPodDelete")
    assert q.pending()["active"] == ["default/anti", "default/cpu"]
    assert q.pending()["unschedulable"] == ["default/affinity"]
    q.move_all_to_active_or_backoff("AssignedPodAdd")
    assert q.pending()["unschedulable"] == ["default/affinity"]
    q.move_all_to_active_or_backoff("NodeAdd")
    assert q.pending()["unschedulable"] == []


async def test_node_update_moves_by_what_changed():
    from scheduler.queue import node_update_plugins
    old = {"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {},
           "status": {"allocatable": {"cpu": "1"}, "conditions": [{"type": "Ready", "status": "True",
                                                                    "lastHeartbeatTime": "t1"}]}}
    heartbeat = {**old, "status": {**old["status"], "conditions": [{"type": "Ready", "status": "True",
                                                                   "lastHeartbeatTime": "t2"}]}}
    assert node_update_plugins(old, heartbeat) == frozenset()
    relabelled = {**old, "metadata": {"name": "n", "labels": {"a": "2"}}}
    assert node_update_plugins(old, relabelled) == {"NodeAffinity", "InterPodAffinity"}
    bigger = {**old, "status": {**old["status"], "allocatable": {"cpu": "2"}}}
    assert node_update_plugins(old, bigger) == {"NodeResourcesFit"}
    uncordoned = {**old, "spec": {"unschedulable": True}}
    assert node_update_plugins(uncordoned, old) == {"NodeUnschedulable"}

    clock = Clock()
    q = SchedulingQueue(clock=clock)
    await _unschedulable(q, "affinity", {"NodeAffinity"})
    await _unschedulable(q, "cpu", {"NodeResourcesFit"})
    clock.now += 20
    q.move_all_to_active_or_backoff("NodeUpdate", plugins=node_update_plugins(old, bigger))
    assert q.pending()["active"] == ["default/cpu"]


async def test_pod_without_recorded_plugins_moves_on_any_event():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    await _unschedulable(q, "p", set())
    clock.now += 20
    q.move_all_to_active_or_backoff("AssignedPodAdd")
    assert q.pending()["active"] == ["default/p"]


async def test_backoff_expiry_is_relative_to_the_failure_time():
    """A pod moved by an event while still backing off waits in backoffQ until
    1 s (first attempt) after its failure, then becomes active."""
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    await _unschedulable(q, "p", {"NodeResourcesFit"})
    clock.now += 0.5
    q.move_all_to_active_or_backoff("NodeAdd")
    assert q.pending()["backoff"] == ["default/p"]
    clock.now += 0.49
    q.flush_backoff_completed()
    assert q.pending()["backoff"] == ["default/p"]
    clock.now += 0.02
    q.flush_backoff_completed()
    assert q.pending()["active"] == ["default/p"]


async def test_equal_priority_pops_in_enqueue_order_after_requeue():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("first"))
    clock.now += 1
    q.add(pod("second"))
    pinfo = await q.pop()
    assert pinfo.pod["metadata"]["name"] == "first"
    clock.now += 1
    q.add_unschedulable_if_not_present(pinfo, q.scheduling_cycle, unschedulable=False)
    clock.now += 5
    q.flush_backoff_completed()
    assert await pop_names(q, 2) == ["second", "first"]
