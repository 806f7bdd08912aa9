"""A rate-limited work queue of object keys, as client-go's workqueue.

Controllers' event handlers only ``add`` a ``namespace/name`` key; workers
``get`` a key, reconcile it, then call ``done`` (always) and either
``forget`` (success) or ``add_rate_limited`` (error). The queue guarantees:
a key is queued at most once however often it is added (de-duplication), a
key being processed is never handed to a second worker (it is marked dirty
and re-queued when ``done``), and failing keys come back after a per-item
exponential backoff.

A queue given a ``name`` records client-go's workqueue metrics under that
name: workqueue_adds_total, workqueue_retries_total,
workqueue_queue_duration_seconds (add to get), workqueue_work_duration_seconds
(get to done) as they happen, and workqueue_depth,
workqueue_unfinished_work_seconds and
workqueue_longest_running_processor_seconds read at scrape time (client-go
updates those on a 500 ms tick; reading them when asked costs nothing between
scrapes).
"""
from __future__ import annotations

import asyncio
import collections
import time

import prometheus_client
from prometheus_client.core import GaugeMetricFamily

from kubeling.metrics import Watched

# client-go's buckets: prometheus.ExponentialBuckets(10e-9, 10, 10), 10 ns .. 10 s.
DURATION_BUCKETS = tuple(10e-9 * 10 ** i for i in range(10))
ADDS = prometheus_client.Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"])
RETRIES = prometheus_client.Counter("workqueue_retries_total", "Total number of retries handled by workqueue",
                                    ["name"])
QUEUE_DURATION = prometheus_client.Histogram(
    "workqueue_queue_duration_seconds", "How long in seconds an item stays in workqueue before being requested.",
    ["name"], buckets=DURATION_BUCKETS)
WORK_DURATION = prometheus_client.Histogram(
    "workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes.",
    ["name"], buckets=DURATION_BUCKETS)


def _queue_gauges(queues: list):
    """workqueue_depth, workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds
    over the live named queues, summed per name (tests and hollow nodes run several queues of one name)."""
    depth = GaugeMetricFamily("workqueue_depth", "Current depth of workqueue", labels=["name"])
    unfinished = GaugeMetricFamily(
        "workqueue_unfinished_work_seconds", "How many seconds of work has been done that is in progress and "
        "hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the "
        "number of stuck threads by observing the rate at which this increases.", labels=["name"])
    longest = GaugeMetricFamily(
        "workqueue_longest_running_processor_seconds", "How many seconds has the longest running processor "
        "for workqueue been running.", labels=["name"])
    now = time.monotonic()
    by_name: dict[str, list[float]] = {}
    for q in queues:
        row = by_name.setdefault(q.name, [0, 0.0, 0.0])
        row[0] += len(q._queue)
        for started in list(q._started.values()):
            row[1] += now - started
            row[2] = max(row[2], now - started)
    for name, (d, u, l) in sorted(by_name.items()):
        depth.add_metric([name], d)
        unfinished.add_metric([name], u)
        longest.add_metric([name], l)
    return [depth, unfinished, longest]


_QUEUES = Watched(_queue_gauges)


class ShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and drained."""


class WorkQueue:
    """Mirrors client-go's ``workqueue.RateLimitingInterface``.

    Backoff for ``add_rate_limited`` is ``base_delay * 2**failures`` seconds,
    capped at ``max_delay`` (client-go's ItemExponentialFailureRateLimiter
    defaults: 5 ms and 1000 s). ``name`` (client-go's QueueConfig.Name, e.g. the controller's
    name) turns on the workqueue_* metrics labelled with it.
    """

    def __init__(self, *, name: str | None = None, base_delay: float = 0.005, max_delay: float = 1000.0):
        self.name = name
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
        # key -> monotonic time it was queued / handed to a worker (named queues only)
        self._added_at: dict[str, float] = {}
        self._started: dict[str, float] = {}
        if name:
            self._adds = ADDS.labels(name)
            self._retries = RETRIES.labels(name)
            self._queue_duration = QUEUE_DURATION.labels(name)
            self._work_duration = WORK_DURATION.labels(name)
            _QUEUES.add(self)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        """Queue ``key`` unless it is already queued; if it is being processed,
        it is queued again when its worker calls ``done``."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if self.name:
            self._adds.inc()
            self._added_at[key] = time.monotonic()
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
        if self.name:
            self._retries.inc()
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
            if self.name:
                now = time.monotonic()
                added = self._added_at.pop(key, None)
                if added is not None:
                    self._queue_duration.observe(now - added)
                self._started[key] = now
            return key

    def done(self, key: str) -> None:
        """Mark ``key`` processed; re-queue it if it was added meanwhile."""
        self._processing.discard(key)
        if self.name:
            started = self._started.pop(key, None)
            if started is not None:
                self._work_duration.observe(time.monotonic() - started)
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
