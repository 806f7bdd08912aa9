"""The shim's bound on Docker starts in flight: the limit holds, app containers go before sandboxes,
cancelled waiters give their turn away, 0 means unbounded."""
import asyncio

import pytest

from kubelet.dockershim.start_gate import APP, SANDBOX, StartGate


async def _run(gate, order, name, priority, hold):
    async with gate.slot(priority):
        order.append(name)
        assert gate.in_flight <= (gate.limit or gate.in_flight)
        await hold.wait()


async def test_limit_holds_and_apps_go_first():
    gate, order, hold = StartGate(2), [], asyncio.Event()
    tasks = [asyncio.create_task(_run(gate, order, f"s{i}", SANDBOX, hold)) for i in range(4)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(_run(gate, order, "a0", APP, hold)))
    await asyncio.sleep(0.01)
    assert order == ["s0", "s1"] and gate.in_flight == 2 and gate.waiting() == 3
    hold.set()
    await asyncio.gather(*tasks)
    assert order == ["s0", "s1", "a0", "s2", "s3"] and gate.in_flight == 0


async def test_cancelled_waiter_gives_its_turn_away():
    gate, order, hold = StartGate(1), [], asyncio.Event()
    first = asyncio.create_task(_run(gate, order, "s0", SANDBOX, hold))
    await asyncio.sleep(0)
    gone = asyncio.create_task(_run(gate, order, "a0", APP, hold))
    last = asyncio.create_task(_run(gate, order, "s1", SANDBOX, hold))
    await asyncio.sleep(0.01)
    gone.cancel()
    hold.set()
    await asyncio.gather(first, last)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert order == ["s0", "s1"] and gate.in_flight == 0


async def test_zero_is_unbounded():
    gate, order, hold = StartGate(0), [], asyncio.Event()
    tasks = [asyncio.create_task(_run(gate, order, f"s{i}", SANDBOX, hold)) for i in range(20)]
    await asyncio.sleep(0.01)
    assert len(order) == 20 and gate.in_flight == 20
    hold.set()
    await asyncio.gather(*tasks)
    assert gate.in_flight == 0


def test_negative_limit_is_refused():
    with pytest.raises(ValueError):
        StartGate(-1)
