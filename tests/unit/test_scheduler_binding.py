"""The binding cycle runs beside the scheduling loop, as upstream's goroutine per
pod: the pod is assumed in the cache at once, at most ``max_bindings_in_flight``
Binding POSTs are in flight, and a rejected binding forgets the assumed pod."""
import asyncio

from kubeling.client import ApiError
from scheduler.scheduler import Scheduler
from test_scheduler_plugins import node, pod


class FakeClient:
    """Answers Binding POSTs once ``gate`` opens (or with ``fail``); other writes succeed at once."""

    def __init__(self, *, fail: ApiError | None = None):
        self.gate = asyncio.Event()
        self.fail = fail
        self.in_flight = self.peak = 0
        self.bound: list[str] = []

    async def create(self, resource, obj, *, namespace=None, name=None, subresource=None):
        if subresource != "binding":
            return obj
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            self.bound.append(name)
            return {}
        finally:
            self.in_flight -= 1

    async def patch(self, *args, **kwargs):
        return {}


def scheduler(client, n_pods, **kwargs):
    sched = Scheduler(client, **kwargs)
    sched._on_node_add(node("n1", cpu="100", memory="100Gi", pods="110"))
    for i in range(n_pods):
        p = pod(f"p{i}", cpu="10m")
        sched.pod_informer.store[f"default/p{i}"] = p
        sched._on_pod_add(p)
    return sched


async def drive(sched, cycles):
    for _ in range(cycles):
        await sched.wait_for_binding_slot()
        await sched.schedule_one()


async def test_bindings_in_flight_are_bounded_and_pods_assumed_meanwhile():
    client = FakeClient()
    sched = scheduler(client, 10, max_bindings_in_flight=3)
    driver = asyncio.ensure_future(drive(sched, 10))
    await asyncio.sleep(0.1)
    assert client.peak == 3 and not driver.done()  # the loop waits for a free slot
    assert sum(sched.cache.is_assumed(sched.pod_informer.store[f"default/p{i}"]) for i in range(10)) == 3
    assert sched.cache.snapshot()[0].requested.milli_cpu == 30  # assumed pods count at once
    client.gate.set()
    await asyncio.wait_for(driver, 5)
    await asyncio.gather(*sched._binding_tasks)
    assert sorted(client.bound) == sorted(f"p{i}" for i in range(10)) and client.peak == 3


async def test_rejected_binding_forgets_the_assumed_pod():
    client = FakeClient(fail=ApiError(409, {"reason": "Conflict", "message": "already bound"}))
    sched = scheduler(client, 1)
    await drive(sched, 1)
    assert sched.cache.is_assumed(sched.pod_informer.store["default/p0"])
    client.gate.set()
    await asyncio.gather(*sched._binding_tasks)
    assert not sched.cache.is_assumed(sched.pod_informer.store["default/p0"])
    assert sched.cache.snapshot()[0].requested.milli_cpu == 0
    assert "default/p0" in sched.queue  # back in the queue (backoff), as upstream's handleSchedulingFailure
