"""Pod workers: syncs of one pod never overlap, requests during a sync coalesce."""
import asyncio

from kubelet.pod_workers import PodWorkers


async def test_serialized_and_coalesced():
    running: dict[str, int] = {}
    calls: list[str] = []
    overlap = False

    async def sync(uid):
        nonlocal overlap
        running[uid] = running.get(uid, 0) + 1
        overlap = overlap or running[uid] > 1
        calls.append(uid)
        await asyncio.sleep(0.05)
        running[uid] -= 1

    w = PodWorkers(sync)
    w.update("a")
    await asyncio.sleep(0.01)
    for _ in range(5):  # all during the first sync: one more sync
        w.update("a")
    w.update("b")
    await asyncio.sleep(0.3)
    assert not overlap
    assert calls.count("a") == 2 and calls.count("b") == 1
    await w.close()


async def test_update_after_and_retry_on_error():
    calls = []

    async def sync(uid):
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            raise RuntimeError("boom")

    w = PodWorkers(sync, retry_delay=0.1)
    w.update("a")
    await asyncio.sleep(0.3)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.09
    w.update_after("a", 0.1)
    await asyncio.sleep(0.25)
    assert len(calls) == 3
    w.forget("a")
    assert "a" not in w
    await w.close()
