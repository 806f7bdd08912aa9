"""Per-key exponential backoff for restarting crashed containers and retrying pulls.

Mirrors client-go's util/flowcontrol.Backoff as the kubelet uses it: the
first failure waits ``initial`` seconds, each further failure doubles the
wait up to ``max``; an entry untouched for ``2 * max`` is forgotten, so a
container that ran fine for a while starts again from ``initial``.
CrashLoopBackOff is the state of a container whose last exit is still
inside its backoff window.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable


@dataclasses.dataclass
class _Entry:
    backoff: float
    last_update: float


class Backoff:
    """``Backoff(initial=10, max=300, clock=time.time)``; times in seconds.

    Keys are strings (the kubelet uses ``<pod uid>/<container name>``).
    ``clock`` is injectable so tests need not sleep.
    """

    def __init__(self, *, initial: float = 10.0, max: float = 300.0,
                 clock: Callable[[], float] = time.time):
        self.initial = initial
        self.max = max
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, key: str) -> float:
        """The current backoff of ``key`` in seconds (0 if none)."""
        e = self._entries.get(key)
        return e.backoff if e else 0.0

    def next(self, key: str) -> None:
        """Record one more failure of ``key``: start at ``initial`` or double (capped)."""
        now = self.clock()
        e = self._entries.get(key)
        if e is None or self._expired(e, now):
            self._entries[key] = _Entry(self.initial, now)
            return
        e.backoff = min(e.backoff * 2, self.max)
        e.last_update = now

    def in_backoff_since(self, key: str, event_time: float) -> bool:
        """True while less than the current backoff has passed since ``event_time``
        (e.g. the container's finishedAt)."""
        e = self._entries.get(key)
        if e is None:
            return False
        now = self.clock()
        if self._expired(e, now):
            return False
        return now - event_time < e.backoff

    def remaining(self, key: str, event_time: float) -> float:
        """Seconds left until ``event_time + backoff`` (>= 0)."""
        e = self._entries.get(key)
        if e is None:
            return 0.0
        return max(0.0, event_time + e.backoff - self.clock())

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def gc(self) -> None:
        """Drop entries that have expired (untouched for 2 * max)."""
        now = self.clock()
        for k in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[k]

    def _expired(self, e: _Entry, now: float) -> bool:
        return now - e.last_update > 2 * self.max
