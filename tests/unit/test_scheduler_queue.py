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
