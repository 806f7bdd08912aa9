"""One serialized worker per pod.

Syncs of one pod must never overlap (two concurrent syncs would start a
container twice), while different pods proceed in parallel. Each pod uid
gets its own asyncio task that runs ``sync(uid)`` whenever it was asked to
at least once since the previous sync finished; requests arriving during a
sync are coalesced into one more sync. Mirrors pkg/kubelet/pod_workers.go
(podWorkers.UpdatePod, managePodLoop), without its terminating/terminated
bookkeeping, which the kubelet's sync function does itself.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class _Worker:
    def __init__(self) -> None:
        self.pending = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None


class PodWorkers:
    """``PodWorkers(sync)`` where ``sync(uid) -> Awaitable[None]``.

    ``update(uid)`` asks for a sync now, ``update_after(uid, seconds)`` later
    (an earlier pending timer wins), ``forget(uid)`` ends the pod's worker.
    Exceptions from ``sync`` are logged and the pod is retried after
    ``retry_delay`` seconds.
    """

    def __init__(self, sync: Callable[[str], Awaitable[None]], *, retry_delay: float = 2.0):
        self.sync = sync
        self.retry_delay = retry_delay
        self._workers: dict[str, _Worker] = {}
        self._closed = False

    def __contains__(self, uid: str) -> bool:
        return uid in self._workers

    def uids(self) -> list[str]:
        """Pods that currently have a worker."""
        return list(self._workers)

    def update(self, uid: str) -> None:
        """Request a sync of ``uid`` (starts its worker if needed)."""
        if self._closed:
            return
        w = self._workers.get(uid)
        if w is None:
            w = self._workers[uid] = _Worker()
            w.task = asyncio.get_running_loop().create_task(self._loop(uid, w), name=f"pod-worker-{uid}")
        w.pending.set()

    def update_after(self, uid: str, delay: float) -> None:
        """Request a sync of ``uid`` in ``delay`` seconds."""
        if self._closed:
            return
        if delay <= 0:
            self.update(uid)
            return
        w = self._workers.get(uid)
        if w is None:
            self.update(uid)
            return
        loop = asyncio.get_running_loop()
        if w.timer is not None and w.timer.when() <= loop.time() + delay:
            return
        if w.timer is not None:
            w.timer.cancel()
        w.timer = loop.call_later(delay, self._fire, uid, w)

    def _fire(self, uid: str, w: _Worker) -> None:
        w.timer = None
        if self._workers.get(uid) is w:
            w.pending.set()

    def forget(self, uid: str) -> None:
        """Stop the worker of ``uid`` once its current sync (if any) ends."""
        w = self._workers.pop(uid, None)
        if w is None:
            return
        if w.timer is not None:
            w.timer.cancel()
        if w.task is not None and w.task is not asyncio.current_task():
            w.task.cancel()

    async def _loop(self, uid: str, w: _Worker) -> None:
        while self._workers.get(uid) is w:
            await w.pending.wait()
            w.pending.clear()
            try:
                await self.sync(uid)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed; retrying in %.0fs", uid, self.retry_delay,
                              extra={"podUID": uid})
                self.update_after(uid, self.retry_delay)

    async def close(self) -> None:
        """Cancel all workers (in-flight syncs are interrupted) and wait for them."""
        self._closed = True
        tasks = []
        for w in self._workers.values():
            if w.timer is not None:
                w.timer.cancel()
            if w.task is not None:
                w.task.cancel()
                tasks.append(w.task)
        self._workers.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
