"""The revisioned key-value store: reads at a revision, write transactions, compaction.

Mirrors etcd's mvcc store (server/storage/mvcc/kvstore.go, kvstore_txn.go):
every write transaction that changes something gets the next main revision;
the changes inside it are ordered by sub-revision and share that revision.
The store also keeps the event history (one list of events per revision from
the compaction revision on) so that watchers can replay the past.

All methods are synchronous and must run on one thread (the event loop):
a write transaction is applied without any await in between, so readers
never see half of it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Protocol

from etcdlite.mvcc.errors import CompactedError, FutureRevError
from etcdlite.mvcc.index import TreeIndex
from etcdlite.mvcc.kv import DELETE, PUT, Event, KeyValue


class LeaseAttacher(Protocol):
    """What the store needs from the lessor (etcd lease.Lessor Attach/Detach)."""

    def attach(self, lease_id: int, key: bytes) -> None:
        """Record that ``key`` is bound to lease ``lease_id`` (so revoking the lease deletes it)."""

    def detach(self, lease_id: int, key: bytes) -> None:
        """Forget that ``key`` is bound to lease ``lease_id`` (on overwrite or delete)."""


class RangeResult(NamedTuple):
    """Result of a range read: ``kvs`` in key order (cut to ``limit``), ``count``
    of all keys in the range, and ``rev`` the revision read at."""

    kvs: list[KeyValue]
    count: int
    rev: int


CommitHook = Callable[[int, list[Event]], None]


class KVStore:
    """The MVCC store. A fresh store is at revision 1 (etcd reports 1 before any
    write), so the first write gets mod_revision 2.

    ``lessor`` (optional) is told about keys attached to / detached from leases.
    """

    def __init__(self, *, lessor: Optional[LeaseAttacher] = None) -> None:
        self.index = TreeIndex()
        self.current_rev = 1
        self.compact_rev = 0
        self.lessor = lessor
        # _history[i] holds the events of revision _history_base + i.
        self._history: list[list[Event]] = []
        self._history_base = 2
        self._hooks: list[CommitHook] = []

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Call ``hook(rev, events)`` after every write transaction that changed something."""
        self._hooks.append(hook)

    # -- reads ---------------------------------------------------------------

    def check_rev(self, rev: int) -> int:
        """Resolve a requested read revision (<= 0 means current); raises
        CompactedError / FutureRevError like etcd's rangeKeys."""
        if rev <= 0:
            return self.current_rev
        if rev > self.current_rev:
            raise FutureRevError()
        if rev < self.compact_rev:
            raise CompactedError(self.compact_rev)
        return rev

    def range(self, key: bytes, end: bytes = b"", *, rev: int = 0, limit: int = 0) -> RangeResult:
        """Live keys in etcd's range ``[key, end)`` at revision ``rev`` (0 = now).

        ``limit`` > 0 cuts ``kvs``; ``count`` is always the full number.
        Raises CompactedError, FutureRevError.
        """
        rev = self.check_rev(rev)
        return self._range_at(key, end, rev, limit)

    def _range_at(self, key: bytes, end: bytes, rev: int, limit: int) -> RangeResult:
        kvs: list[KeyValue] = []
        count = 0
        now = rev >= self.current_rev
        for _, ki in self.index.scan(key, end):
            kv = ki.latest() if now else ki.at(rev)
            if kv is None:
                continue
            count += 1
            if not limit or len(kvs) < limit:
                kvs.append(kv)
        return RangeResult(kvs, count, rev)

    def get(self, key: bytes) -> Optional[KeyValue]:
        """The live version of one key now, or None."""
        ki = self.index.get(key)
        return ki.latest() if ki is not None else None

    def events_since(self, start_rev: int) -> list[tuple[int, list[Event]]]:
        """``(rev, events)`` for every revision from ``start_rev`` to now, oldest first.

        Raises CompactedError if ``start_rev`` < the compaction revision.
        """
        if start_rev < self.compact_rev:
            raise CompactedError(self.compact_rev)
        first = max(start_rev, self._history_base)
        return [(r, self._history[r - self._history_base])
                for r in range(first, self.current_rev + 1)]

    # -- writes --------------------------------------------------------------

    def write(self) -> "TxnWrite":
        """Open a write transaction; call ``end()`` on it to publish its events."""
        return TxnWrite(self)

    def compact(self, rev: int) -> None:
        """Drop history before ``rev`` (etcd Compact). Raises CompactedError if
        ``rev`` <= the current compaction revision, FutureRevError if > now."""
        if rev <= self.compact_rev:
            raise CompactedError(self.compact_rev)
        if rev > self.current_rev:
            raise FutureRevError()
        self.compact_rev = rev
        self.index.compact(rev)
        drop = rev - self._history_base
        if drop > 0:
            del self._history[:drop]
            self._history_base = rev

    def _publish(self, rev: int, events: list[Event]) -> None:
        self.current_rev = rev
        self._history.append(events)
        for hook in self._hooks:
            hook(rev, events)


class TxnWrite:
    """A write transaction (etcd storeTxnWrite): puts and deletes share revision
    ``store.current_rev + 1``; reads inside it see its own earlier writes."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.rev = store.current_rev + 1
        self.events: list[Event] = []

    def range(self, key: bytes, end: bytes = b"", *, rev: int = 0, limit: int = 0) -> RangeResult:
        """Like KVStore.range, at this transaction's view when ``rev`` is 0."""
        if rev <= 0:
            read_rev = self.rev if self.events else self.store.current_rev
            return self.store._range_at(key, end, read_rev, limit)
        return self.store.range(key, end, rev=rev, limit=limit)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> Optional[KeyValue]:
        """Write ``key``; returns the previous live version (or None)."""
        store = self.store
        ki = store.index.get_or_create(key)
        prev = ki.latest()
        if prev is None:
            kv = KeyValue(key, self.rev, self.rev, 1, value, lease)
        else:
            kv = KeyValue(key, prev.create_revision, self.rev, prev.version + 1, value, lease)
        ki.append(self.rev, kv)
        self.events.append(Event(PUT, kv, prev))
        if store.lessor is not None:
            if prev is not None and prev.lease and prev.lease != lease:
                store.lessor.detach(prev.lease, key)
            if lease:
                store.lessor.attach(lease, key)
        return prev

    def delete_range(self, key: bytes, end: bytes = b"") -> list[KeyValue]:
        """Delete every live key in the range; returns their previous versions."""
        store = self.store
        deleted: list[KeyValue] = []
        for k, ki in list(store.index.scan(key, end)):
            prev = ki.latest()
            if prev is None:
                continue
            ki.append(self.rev, None)
            deleted.append(prev)
            self.events.append(Event(DELETE, KeyValue(k, 0, self.rev, 0, b"", 0), prev))
            if prev.lease and store.lessor is not None:
                store.lessor.detach(prev.lease, k)
        return deleted

    def end(self) -> int:
        """Publish the transaction; returns the store revision after it."""
        if self.events:
            self.store._publish(self.rev, self.events)
        return self.store.current_rev
