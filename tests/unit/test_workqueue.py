"""The work queue's promises: de-duplication, one worker per key, backoff."""
import asyncio

import pytest

from kubeling.client.workqueue import ShutDown, WorkQueue


async def test_duplicate_adds_queue_once():
    q = WorkQueue()
    for _ in range(3):
        q.add("default/web")
    q.add("default/db")
    assert len(q) == 2
    assert await q.get() == "default/web"
    assert await q.get() == "default/db"


async def test_key_added_while_processing_comes_back_after_done():
    """A key being reconciled is never handed to a second worker."""
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_rate_limited_backoff_grows_and_forget_resets():
    q = WorkQueue(base_delay=0.01)
    assert q.when("k") == pytest.approx(0.01)
    assert q.when("k") == pytest.approx(0.02)
    assert q.num_requeues("k") == 2
    q.forget("k")
    assert q.when("k") == pytest.approx(0.01)


async def test_add_rate_limited_delivers_later():
    q = WorkQueue(base_delay=0.05)
    q.add_rate_limited("k")
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "k"


async def test_shutdown_wakes_getters():
    q = WorkQueue()
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)


async def test_add_after_keeps_the_timer_that_fires_first():
    """A long pending timer (a 600 s deadline check) must not swallow a shorter one (a 3 s check)."""
    q = WorkQueue()
    q.add_after("a", 600)
    q.add_after("a", 0.05)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.add_after("b", 0.05)
    q.add_after("b", 600)  # later: ignored, b still comes soon
    assert await asyncio.wait_for(q.get(), 1) == "b"
