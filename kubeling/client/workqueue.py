"""A rate-limited work queue of object keys, as client-go's workqueue.

Controllers' event handlers only ``add`` a ``namespace/name`` key; workers
``get`` a key, reconcile it, then call ``done`` (always) and either
``forget`` (success) or ``add_rate_limited`` (error). The queue guarantees:
a key is queued at most once however often it is added (de-duplication), a
key being processed is never handed to a second worker (it is marked dirty
and re-queued when ``done``), and failing keys come back after a per-item
exponential backoff.
"""
from __future__ import annotations

import asyncio
import collections


class ShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and drained."""


class WorkQueue:
    """Mirrors client-go's ``workqueue.RateLimitingInterface``.

    Backoff for ``add_rate_limited`` is ``base_delay * 2**failures`` seconds,
    capped at ``max_delay`` (client-go's ItemExponentialFailureRateLimiter
    defaults: 5 ms and 1000 s).
    """

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 1000.0):
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._cond = asyncio.Condition()
        self._shutting_down = False
        self._wakers: set[asyncio.Task] = set()
        self.base_delay = base_delay
        self.max_delay = max_delay

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        """Queue ``key`` unless it is already queued; if it is being processed,
        it is queued again when its worker calls ``done``."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()

    def _spawn(self, coro) -> None:
        """Run ``coro`` in the background, holding a reference until it ends (the loop keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    def _notify(self) -> None:
        async def wake():
            async with self._cond:
                self._cond.notify()
        self._spawn(wake())

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; of two pending timers for it the one that fires first wins
        (client-go's delaying queue keeps the earlier ready time)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return
            pending.cancel()

        def fire():
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = loop.call_later(delay, fire)

    def when(self, key: str) -> float:
        """Next backoff delay in seconds for ``key``; counts one more failure."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return min(self.base_delay * (2 ** n), self.max_delay)

    def add_rate_limited(self, key: str) -> None:
        """Queue ``key`` again after its exponential backoff."""
        self.add_after(key, self.when(key))

    def forget(self, key: str) -> None:
        """Reset ``key``'s failure count (call after a successful reconcile)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        """How many times ``key`` has failed since it was last forgotten."""
        return self._failures.get(key, 0)

    async def get(self) -> str:
        """Wait for and take the next key; the caller must call ``done(key)``.
        Raises ShutDown once the queue is shut down."""
        async with self._cond:
            while not self._queue and not self._shutting_down:
                await self._cond.wait()
            if self._shutting_down and not self._queue:
                raise ShutDown()
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        """Mark ``key`` processed; re-queue it if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def shutdown(self) -> None:
        """Stop handing out keys; waiting ``get`` calls raise ShutDown."""
        self._shutting_down = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        async def wake_all():
            async with self._cond:
                self._cond.notify_all()
        self._spawn(wake_all())
