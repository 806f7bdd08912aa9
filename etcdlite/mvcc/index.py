"""The key index: every key's versions by revision, and the keys in sorted order.

Mirrors etcd's treeIndex/keyIndex (server/storage/mvcc/index.go, key_index.go):
a lookup "the version of key K at revision R" and an ordered scan over
``[start, end)``. Upstream keeps revisions in the index and values in bbolt;
etcdlite keeps the KeyValue records themselves, in memory.
"""
from __future__ import annotations

import bisect
from typing import Iterator, Optional

from etcdlite.mvcc.kv import KeyValue


class KeyIndex:
    """The history of one key: ``revs`` ascending store revisions and, at the
    same positions, ``kvs`` the KeyValue written then or None for a delete
    (a tombstone)."""

    __slots__ = ("revs", "kvs")

    def __init__(self) -> None:
        self.revs: list[int] = []
        self.kvs: list[Optional[KeyValue]] = []

    def append(self, rev: int, kv: Optional[KeyValue]) -> None:
        """Record a put (``kv``) or a delete (None) at revision ``rev`` (>= the last one)."""
        self.revs.append(rev)
        self.kvs.append(kv)

    def latest(self) -> Optional[KeyValue]:
        """The live version now, None if the key is deleted."""
        return self.kvs[-1] if self.kvs else None

    def at(self, rev: int) -> Optional[KeyValue]:
        """The live version at revision ``rev``, None if absent then."""
        i = bisect.bisect_right(self.revs, rev) - 1
        return self.kvs[i] if i >= 0 else None

    def compact(self, rev: int) -> bool:
        """Forget versions no read at revision >= ``rev`` can see; True if none is left.

        Keeps the version live at ``rev`` (unless it is a tombstone) and every later one.
        """
        i = bisect.bisect_right(self.revs, rev) - 1
        if i < 0:
            return not self.revs
        keep_from = i + 1 if self.kvs[i] is None else i
        if keep_from:
            del self.revs[:keep_from]
            del self.kvs[:keep_from]
        return not self.revs


class TreeIndex:
    """All keys of the store, sorted, each with its KeyIndex.

    Sorted order is kept in a plain list with bisect inserts: O(n) per new key,
    which at etcdlite's sizes (tens of thousands of keys) costs microseconds.
    """

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._index: dict[bytes, KeyIndex] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: bytes) -> Optional[KeyIndex]:
        """The KeyIndex of ``key`` or None if the key never existed (or was compacted away)."""
        return self._index.get(key)

    def get_or_create(self, key: bytes) -> KeyIndex:
        """The KeyIndex of ``key``, created (and inserted in order) if missing."""
        ki = self._index.get(key)
        if ki is None:
            ki = self._index[key] = KeyIndex()
            bisect.insort(self._keys, key)
        return ki

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, KeyIndex]]:
        """Keys in etcd's range (see ``kv.in_range``) in ascending order with their index."""
        if not end:
            ki = self._index.get(start)
            if ki is not None:
                yield start, ki
            return
        lo = bisect.bisect_left(self._keys, start)
        hi = len(self._keys) if end == b"\x00" else bisect.bisect_left(self._keys, end)
        # Copy the slice: callers may create keys while iterating (txn writes).
        for key in self._keys[lo:hi]:
            yield key, self._index[key]

    def compact(self, rev: int) -> None:
        """Compact every KeyIndex at ``rev``; drop keys with no history left."""
        gone = [k for k, ki in self._index.items() if ki.compact(rev)]
        if gone:
            for k in gone:
                del self._index[k]
            dead = set(gone)
            self._keys = [k for k in self._keys if k not in dead]
