"""Rate-limited, level-triggered scheduling of proxy syncs.

Every Service or Endpoints event asks for a sync, but rewriting iptables for
each one would be wasteful under churn: requests are coalesced so that syncs
are at least ``min_interval`` apart, while a sync still happens at least
every ``max_interval`` (repairing rules someone else removed), and a failed
sync is retried after ``retry_interval``. Mirrors upstream's
pkg/util/async/bounded_frequency_runner.go (Run, RetryAfter, Loop), on asyncio.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class BoundedFrequencyRunner:
    """Calls ``fn`` (an async function) when asked, at most once per ``min_interval``
    seconds and at least once per ``max_interval`` seconds.

    ``run()`` requests a call (cheap, from any event handler on the loop);
    ``await loop()`` does the calls until cancelled. If ``fn`` raises, the
    error is logged and a retry is scheduled ``retry_interval`` later (default
    ``min_interval``). ``clock`` (seconds, monotonic) is injectable for tests;
    ``next_run_at()`` exposes the pure scheduling decision.
    """

    def __init__(self, name: str, fn: Callable[[], Awaitable[None]], *, min_interval: float,
                 max_interval: float, retry_interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if min_interval < 0 or max_interval < min_interval:
            raise ValueError(f"{name}: need 0 <= min_interval <= max_interval")
        self.name = name
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_interval = min_interval if retry_interval is None else retry_interval
        self.clock = clock
        self._started = clock()
        self._last_run: float | None = None
        self._pending = False
        self._retry_at: float | None = None
        self._wakeup = asyncio.Event()

    def run(self) -> None:
        """Ask for a call as soon as ``min_interval`` allows."""
        self._pending = True
        self._wakeup.set()

    def retry_after(self, interval: float) -> None:
        """Ask for a call ``interval`` seconds from now (still bounded by ``min_interval``)."""
        at = self.clock() + interval
        self._retry_at = at if self._retry_at is None else min(self._retry_at, at)
        self._wakeup.set()

    def next_run_at(self) -> float:
        """Clock time of the next call given what has been asked so far (-inf: now)."""
        last = self._last_run
        due = (self._started if last is None else last) + self.max_interval
        earliest = -math.inf if last is None else last + self.min_interval
        if self._pending:
            due = min(due, earliest)
        if self._retry_at is not None:
            due = min(due, max(self._retry_at, earliest))
        return due

    def mark_ran(self, now: float) -> None:
        """Record a call starting at ``now``: clears the pending request and retry."""
        self._last_run = now
        self._pending = False
        self._retry_at = None

    async def loop(self) -> None:
        """Make the calls until cancelled."""
        while True:
            self._wakeup.clear()
            wait = self.next_run_at() - self.clock()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            self.mark_ran(self.clock())
            try:
                await self.fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed, retrying in %.1fs", self.name, self.retry_interval)
                self.retry_after(self.retry_interval)
