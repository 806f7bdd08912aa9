"""mvcc snapshot.dump_async: the same bytes as dump, without stalling the event loop."""
from __future__ import annotations

import asyncio
import time

from etcdlite.lease.lessor import Lessor
from etcdlite.mvcc import snapshot
from etcdlite.mvcc.kvstore import KVStore


def _fill(store, n, prefix=b"k"):
    for i in range(n):
        t = store.write()
        t.put(prefix + b"%06d" % i, b"v" * 64)
        t.end()


async def test_dump_async_is_the_state_at_the_call_and_keeps_the_loop_running():
    lessor = Lessor()
    store = KVStore(lessor=lessor)
    _fill(store, 20000)
    expected = snapshot.dump(store, lessor)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker():  # what the Raft ticker / heartbeats need: the loop keeps turning
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            t = store.write()  # writes continue meanwhile; they are not in the dump
            t.put(b"later", b"x")
            t.end()
    task = asyncio.create_task(ticker())
    data = await snapshot.dump_async(store, lessor)
    stop.set()
    await task
    assert data == expected
    assert len(gaps) >= 2 and max(gaps) < 0.25, max(gaps)
    restored = KVStore(lessor=Lessor())
    snapshot.restore(restored, data)
    assert restored.current_rev == 20001


async def test_dump_async_after_a_compaction_meanwhile_is_still_a_valid_dump():
    store = KVStore(lessor=Lessor())
    _fill(store, 50)
    _fill(store, 50)  # second versions of every key
    view_rev = store.current_rev
    task = asyncio.create_task(snapshot.dump_async(store))
    await asyncio.sleep(0)
    store.compact(60)
    data = await task
    restored = KVStore(lessor=Lessor())
    snapshot.restore(restored, data)
    assert restored.current_rev == view_rev and restored.compact_rev in (0, 60)
