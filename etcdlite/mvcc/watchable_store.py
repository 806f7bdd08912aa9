"""The watch hub: which watchers want which events, and replay of the past.

Mirrors etcd's watchableStore (server/storage/mvcc/watchable_store.go,
watcher_group.go). A watcher that starts at a past revision first receives the
history from the store's event log (upstream's "unsynced" group), then every
new revision as it is committed ("synced"). Both happen on the event loop
without an await in between, so no revision is lost or repeated.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

from etcdlite.mvcc.errors import CompactedError
from etcdlite.mvcc.kv import DELETE, PUT, Event, in_range
from etcdlite.mvcc.kvstore import KVStore

# At most this many revisions go into one catch-up batch (etcd watchBatchMaxRevs).
WATCH_BATCH_MAX_REVS = 1000

# sink(watcher, events, rev): deliver ``events`` (all with revision <= rev).
Sink = Callable[["Watcher", list[Event], int], None]

NOPUT = 0
NODELETE = 1


class Watcher:
    """One watch on ``[key, end)`` (etcd range rules), delivering through ``sink``.

    ``filters`` holds NOPUT / NODELETE (mvccpb WatchCreateRequest.FilterType).
    """

    __slots__ = ("id", "key", "end", "sink", "filters", "min_rev", "on_compacted")

    _ids = itertools.count(1)

    def __init__(self, key: bytes, end: bytes, sink: Sink, *, filters: Iterable[int] = ()) -> None:
        self.id = next(Watcher._ids)
        self.key = key
        self.end = end
        self.sink = sink
        self.filters = frozenset(filters)
        self.min_rev = 0
        # on_compacted(compact_rev): the history this watcher still needs is gone
        # (set by the stream, which then cancels it with compact_revision).
        self.on_compacted: Callable[[int], None] | None = None

    def select(self, events: list[Event]) -> list[Event]:
        """The events of one revision this watcher wants."""
        out = []
        for ev in events:
            if not in_range(ev.kv.key, self.key, self.end):
                continue
            if (ev.type == PUT and NOPUT in self.filters) or (ev.type == DELETE and NODELETE in self.filters):
                continue
            out.append(ev)
        return out


class WatcherHub:
    """Routes the store's committed events to watchers.

    Single-key watchers are found by dict lookup, range watchers by scanning a list.
    """

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self._by_key: dict[bytes, set[Watcher]] = {}
        self._ranges: set[Watcher] = set()
        store.add_commit_hook(self._notify)

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_key.values()) + len(self._ranges)

    def watch(self, key: bytes, end: bytes, sink: Sink, *, start_rev: int = 0,
              filters: Iterable[int] = ()) -> Watcher:
        """Register a watcher from ``start_rev`` (0 = the next revision) and replay
        history up to now through ``sink`` before returning.

        Raises CompactedError if ``start_rev`` is older than the compaction revision.
        """
        store = self.store
        if start_rev and start_rev < store.compact_rev:
            raise CompactedError(store.compact_rev)
        w = Watcher(key, end, sink, filters=filters)
        w.min_rev = start_rev if start_rev > 0 else store.current_rev + 1
        if w.min_rev <= store.current_rev:
            self._replay(w)
        if end:
            self._ranges.add(w)
        else:
            self._by_key.setdefault(key, set()).add(w)
        return w

    def cancel(self, w: Watcher) -> None:
        """Stop delivering to ``w`` (idempotent)."""
        if w.end:
            self._ranges.discard(w)
            return
        group = self._by_key.get(w.key)
        if group is not None:
            group.discard(w)
            if not group:
                del self._by_key[w.key]

    def resync(self) -> None:
        """Catch every watcher up after the store jumped ahead (a follower installed a snapshot).

        The jump committed no events through the hook, so each watcher behind the
        new revision goes through the unsynced path again (etcd's watchableStore
        moves them to the unsynced group on restore): its missed revisions are
        replayed from the restored history. A watcher whose next revision was
        compacted away is handed to its ``on_compacted`` and dropped (etcd
        cancels it with compact_revision); one without that hook is replayed
        from the compaction revision.
        """
        store = self.store
        for w in list(self._ranges) + [w for group in self._by_key.values() for w in group]:
            if w.min_rev > store.current_rev:
                continue
            if w.min_rev < store.compact_rev:
                if w.on_compacted is not None:
                    self.cancel(w)
                    w.on_compacted(store.compact_rev)
                    continue
                w.min_rev = store.compact_rev
            self._replay(w)

    def _replay(self, w: Watcher) -> None:
        batch: list[Event] = []
        revs = 0
        last = w.min_rev
        for rev, events in self.store.events_since(w.min_rev):
            batch.extend(w.select(events))
            revs += 1
            last = rev
            if revs >= WATCH_BATCH_MAX_REVS and batch:
                w.sink(w, batch, rev)
                batch, revs = [], 0
        if batch:
            w.sink(w, batch, last)
        w.min_rev = self.store.current_rev + 1

    def _notify(self, rev: int, events: list[Event]) -> None:
        targets: dict[Watcher, list[Event]] = {}
        if self._by_key:
            for ev in events:
                group = self._by_key.get(ev.kv.key)
                if group:
                    for w in group:
                        targets.setdefault(w, []).append(ev)
        for w in targets:
            # A single-key watcher still applies its filters.
            targets[w] = w.select(targets[w])
        for w in self._ranges:
            selected = w.select(events)
            if selected:
                targets[w] = selected
        # A watcher created with a future start_rev skips revisions before it.
        for w, selected in targets.items():
            if selected and rev >= w.min_rev:
                w.sink(w, selected, rev)
