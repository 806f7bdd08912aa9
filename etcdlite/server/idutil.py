"""Unique IDs for requests and leases (etcd pkg/idutil.Generator).

An ID is the low 16 bits of the member ID, then 40 bits of the start time in
milliseconds and an 8-bit counter that together keep incrementing, so IDs of
different members and of restarts do not collide.
"""
from __future__ import annotations

import time
from typing import Optional

_SUFFIX_BITS = 48
_TS_BITS = 40
_CNT_BITS = 8


class Generator:
    """``next()`` returns a new uint64 ID for member ``member_id``; ``now_ms``
    (default: the wall clock) seeds the counter."""

    def __init__(self, member_id: int, *, now_ms: Optional[int] = None) -> None:
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        self._prefix = (member_id & 0xFFFF) << _SUFFIX_BITS
        self._suffix = (now_ms & ((1 << _TS_BITS) - 1)) << _CNT_BITS

    def next(self) -> int:
        """The next ID."""
        self._suffix = (self._suffix + 1) & ((1 << _SUFFIX_BITS) - 1)
        return self._prefix | self._suffix
