"""Watch cache: per resource, one etcd watch feeding an in-memory store and a ring of recent events.

Mirrors k8s.io/apiserver's ``pkg/storage/cacher`` (Cacher + watchCache):
LISTs with resourceVersion "0" (or any RV the cache has reached) and every
WATCH are answered from memory, so readers do not load etcd. The cache is
filled by a List of the prefix at revision R followed by one etcd Watch from
R+1; each change is applied to the store and appended to a bounded ring.
A watch from RV r replays the ring's events after r, or fails with
TooOld (410) when r is older than the ring. A consistent read waits until
the cache has caught up with the current etcd revision.

As upstream's cachingObject, the JSON of a cached object is encoded once
and shared: by every LIST that returns it and by every watcher that is sent
an event carrying it (``encode`` / ``event_line``), instead of once per
response or per watcher.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import AsyncIterator, Callable, NamedTuple

from apiserver.storage import codec, etcd3

log = logging.getLogger(__name__)

Predicate = Callable[[dict], bool]


class WatchEvent(NamedTuple):
    """One change in the cache: ``type`` ADDED/MODIFIED/DELETED, ``obj`` the new
    (or, for DELETED, last) state, ``prev`` the state before, ``revision`` its etcd revision."""

    type: str
    key: str
    obj: dict
    prev: dict | None
    revision: int


class TooOld(Exception):
    """A watch asked for a revision older than the ring holds (-> 410 Expired)."""

    def __init__(self, requested: int, oldest: int):
        self.requested, self.oldest = requested, oldest
        super().__init__(f"too old resource version: {requested} ({oldest})")


class NotReady(Exception):
    """The cache has not completed its first list (store unreachable)."""


def filtered(ev: WatchEvent, pred: Predicate) -> tuple[str, dict] | None:
    """The event a watcher with ``pred`` sees, or None.

    An object leaving the selection is seen as DELETED, one entering it as
    ADDED, as upstream's cacheWatcher.convertToWatchEvent.
    """
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if pred(ev.obj) else None
    cur = pred(ev.obj)
    old = ev.prev is not None and pred(ev.prev)
    if cur and old:
        return ("MODIFIED", ev.obj)
    if cur:
        return ("ADDED", ev.obj)
    if old:
        return ("DELETED", ev.obj)
    return None


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class CacheWatcher:
    """One client watch on a Cacher.

    ``async for (type, obj) in watcher`` yields filtered events; ends when
    the watcher is stopped or terminated (slow consumer, cache re-list).
    ``revision`` is the last revision delivered (for BOOKMARKs).
    """

    def __init__(self, cacher: "Cacher", pred: Predicate, key_prefix: str, initial: list[tuple[str, dict]],
                 *, start_revision: int, queue_size: int = 4096):
        self.cacher = cacher
        self.pred = pred
        self.key_prefix = key_prefix
        # A plain deque and one future to wake the consumer: under fan-out this runs once per event
        # per watcher, where an asyncio.Queue get with a timeout costs several times more.
        self.queue: collections.deque = collections.deque()
        self.queue_size = queue_size
        self._waiter: asyncio.Future | None = None
        self.initial = collections.deque(initial)
        self.revision = start_revision
        self.closed = False

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _offer(self, ev: WatchEvent) -> None:
        if self.closed or ev.revision <= self.revision or not ev.key.startswith(self.key_prefix):
            return
        out = filtered(ev, self.pred)
        if out is None:
            return
        if len(self.queue) >= self.queue_size:
            log.warning("terminating slow watcher of %s", self.cacher.prefix)
            self.stop()
            return
        self.queue.append((out, ev.revision))
        self._wake()

    def stop(self) -> None:
        """End the watch (the consumer's loop finishes after the queued events)."""
        if not self.closed:
            self.closed = True
            self.cacher.watchers.discard(self)
            self.queue.append(None)
            self._wake()

    async def next(self, timeout: float | None) -> tuple[str, dict] | None:
        """The next event, or None on timeout; raises StopAsyncIteration when ended."""
        if self.initial:
            return self.initial.popleft()
        if not self.queue:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self.queue:
                return None
        item = self.queue.popleft()
        if item is None:
            self.queue.append(None)  # stay ended for any later call
            raise StopAsyncIteration
        (etype, obj), rev = item
        self.revision = rev
        return etype, obj

    async def __aiter__(self) -> AsyncIterator[tuple[str, dict]]:
        while True:
            try:
                ev = await self.next(None)
            except StopAsyncIteration:
                return
            if ev is not None:
                yield ev


class Cacher:
    """The watch cache of one resource prefix (e.g. ``/registry/pods/``).

    ``await start()`` lists and begins watching (retrying until ``stop()``);
    ``items`` maps etcd key -> object, ``revision`` is the last etcd revision
    the cache reflects. ``capacity`` bounds the ring of events kept for
    watches that start in the past.
    """

    def __init__(self, store: etcd3.Etcd3Store, prefix: str, *, capacity: int = 1024):
        self.store = store
        self.prefix = prefix
        self.items: dict[str, dict] = {}
        # id -> (object, its JSON) for current items, filled on first encode, dropped when the key changes
        self._json: dict[int, tuple[dict, bytes]] = {}
        # id -> [object, JSON or None] for event objects that are no longer (or never were) items:
        # superseded versions and deleted objects still queued to watchers; oldest first, bounded
        self._event_json: dict[int, list] = {}
        self._event_json_cap = max(capacity, 64)
        self.revision = 0
        self.ring: collections.deque[WatchEvent] = collections.deque(maxlen=capacity)
        self.oldest = 0  # a watch from rv >= oldest can be served from the ring
        self.watchers: set[CacheWatcher] = set()
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stream: etcd3.WatchStream | None = None

    def start(self) -> None:
        """Begin the list+watch loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"cacher {self.prefix}")

    async def stop(self) -> None:
        """Stop watching etcd and end every client watch."""
        for w in list(self.watchers):
            w.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                kvs, rev = await self.store.list(self.prefix)
                self._reset({kv.key: kv.obj for kv in kvs}, rev)
                backoff = 0.1
                self._stream = self.store.watch(self.prefix, rev + 1)
                async for batch in self._stream:
                    self._apply(batch, self._stream.revision)
            except asyncio.CancelledError:
                raise
            except etcd3.StorageError as e:
                log.warning("watch cache %s: %s; relisting", self.prefix, e)
            except Exception:
                log.exception("watch cache %s failed; relisting", self.prefix)
            self.ready.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _reset(self, items: dict[str, dict], revision: int) -> None:
        # Watchers cannot be carried across a re-list (events were lost): end them so clients re-watch.
        for w in list(self.watchers):
            w.stop()
        self.items = items
        self._json.clear()
        self._event_json.clear()
        self.revision = revision
        self.ring.clear()
        self.oldest = revision
        self.ready.set()
        self._notify()

    def _apply(self, batch: list[etcd3.Event], stream_revision: int) -> None:
        for ev in batch:
            prev = self.items.get(ev.key)
            self._retire(ev.key)
            if ev.type == "DELETE":
                self.items.pop(ev.key, None)
                wev = WatchEvent("DELETED", ev.key, ev.obj, None, ev.revision)
                self._remember(ev.obj, None)
            else:
                self.items[ev.key] = ev.obj
                prev = prev if prev is not None else ev.prev
                wev = WatchEvent("MODIFIED" if prev is not None else "ADDED", ev.key, ev.obj, prev, ev.revision)
            if len(self.ring) == self.ring.maxlen:
                self.oldest = self.ring[0].revision
            self.ring.append(wev)
            self.revision = max(self.revision, ev.revision)
            for w in list(self.watchers):
                w._offer(wev)
        self.revision = max(self.revision, stream_revision)
        self._notify()

    def _retire(self, key: str) -> None:
        # the current item of key is being replaced: its JSON stays shared while watchers still send it
        old = self.items.get(key)
        if old is not None:
            done = self._json.pop(id(old), None)
            self._remember(old, done[1] if done is not None and done[0] is old else None)

    def _remember(self, obj: dict, data: bytes | None) -> None:
        memo = self._event_json
        memo[id(obj)] = [obj, data]
        while len(memo) > self._event_json_cap:
            del memo[next(iter(memo))]

    def encode(self, obj: dict) -> bytes:
        """JSON bytes of ``obj``, encoded once while it is a current item or a recent event's object of
        this cache (cached objects are never mutated); any other object is simply encoded."""
        done = self._json.get(id(obj))
        if done is not None and done[0] is obj:
            return done[1]
        entry = self._event_json.get(id(obj))
        if entry is not None and entry[0] is obj:
            if entry[1] is None:
                entry[1] = codec.dumps(obj)
            return entry[1]
        data = codec.dumps(obj)
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            ns, name = meta.get("namespace"), meta.get("name")
            if self.items.get(f"{self.prefix}{ns}/{name}" if ns else f"{self.prefix}{name}") is obj:
                self._json[id(obj)] = (obj, data)
        return data

    def event_line(self, etype: str, obj: dict) -> bytes:
        """One watch event as its newline-terminated JSON line ``{"type":..,"object":..}``."""
        return b'{"type":"' + etype.encode() + b'","object":' + self.encode(obj) + b"}\n"

    def _notify(self) -> None:
        # Wake every waiter of wait_until; each re-checks the revision and waits on the next Event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the first list; raises NotReady after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise NotReady(f"watch cache of {self.prefix} is not initialized (is etcd reachable?)") from None

    async def wait_until(self, revision: int, timeout: float) -> bool:
        """Wait until the cache reflects ``revision``; False after ``timeout`` seconds."""
        if self.revision >= revision:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < revision:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    async def wait_fresh(self, *, timeout: float = 0.05) -> bool:
        """Wait briefly until the cache has caught up with etcd's current revision (consistent read).

        Returns False when it did not within ``timeout`` seconds; the caller
        then reads etcd directly, as upstream's fallback does. No progress
        notification is requested: etcd before 3.4.31 / 3.5.13 (Debian ships
        3.4.23) may send it ahead of pending events (etcd-io/etcd#15220), the
        reason upstream serves consistent lists from cache only on fixed etcd.
        """
        await self.wait_ready(timeout=5.0)
        current = await self.store.revision()
        return await self.wait_until(current, timeout)

    def list(self, key_prefix: str, pred: Predicate) -> tuple[list[tuple[str, dict]], int]:
        """(key, object) pairs under ``key_prefix`` matching ``pred``, in key order, and the cache revision."""
        keys = sorted(k for k in self.items if k.startswith(key_prefix))
        return [(k, self.items[k]) for k in keys if pred(self.items[k])], self.revision

    def watch(self, key_prefix: str, pred: Predicate, *, resource_version: int | None) -> CacheWatcher:
        """Start a watch of keys under ``key_prefix`` selected by ``pred``.

        ``resource_version`` None (RV "" or "0") first sends ADDED for every
        current object; otherwise events after that revision are sent,
        replayed from the ring when it is in the past. Raises TooOld when
        it is older than the ring.
        """
        if resource_version is None:
            objs, rev = self.list(key_prefix, pred)
            w = CacheWatcher(self, pred, key_prefix, [("ADDED", o) for _, o in objs], start_revision=rev)
        else:
            if resource_version < self.oldest:
                raise TooOld(resource_version, self.oldest)
            w = CacheWatcher(self, pred, key_prefix, [], start_revision=resource_version)
            for ev in self.ring:
                if ev.revision > resource_version:
                    w._offer(ev)
        self.watchers.add(w)
        return w
