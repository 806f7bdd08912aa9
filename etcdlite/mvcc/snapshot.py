"""Serializing the MVCC state (keys with their history, leases) to bytes and back.

Mirrors what etcd's snapshot of the bbolt backend carries (server/storage/mvcc
+ lease buckets): the Raft snapshot's ``data`` and the file of
``Maintenance.Snapshot``. Our own format, never pickled (the bytes arrive from
peers):

    b"ELSN" | u32 version(1) | u64 current_rev | u64 compact_rev
    | u32 lease count | (u64 id, u64 ttl)*
    | u32 key count | per key: u32 key len | key | u32 versions
        | per version: u64 rev | u8 live | if live: u32 len | mvccpb.KeyValue
"""
from __future__ import annotations

import struct
from typing import Any, Coroutine, Optional

from etcdlite.mvcc.index import KeyIndex, TreeIndex
from etcdlite.mvcc.kv import DELETE, PUT, Event, KeyValue
from proto.mvccpb import kv_pb2

MAGIC = b"ELSN"
_HEAD = struct.Struct("<4sIQQ")
_U32 = struct.Struct("<I")
_U64x2 = struct.Struct("<QQ")
_VER = struct.Struct("<QB")


class SnapshotFormatError(Exception):
    """The bytes are not an etcdlite MVCC snapshot (or are truncated)."""


class View:
    """What a dump needs of a store, captured on the event loop in O(keys) pointer copies.

    Writes after the capture only append versions above ``current_rev`` (which
    the dump skips) or insert keys (not in the copied key list), so the
    serialization can run in a worker thread while the loop keeps applying.
    Only a compaction changes history in place: ``still_valid()`` (called back
    on the loop) tells whether one happened meanwhile.
    """

    __slots__ = ("store", "current_rev", "compact_rev", "keys", "leases")

    def __init__(self, store, lessor=None) -> None:
        self.store = store
        self.current_rev, self.compact_rev = store.current_rev, store.compact_rev
        self.keys = list(store.index._keys)
        self.leases = ([(le.id, le.ttl) for le in sorted(lessor.leases.values(), key=lambda le: le.id)]
                       if lessor is not None else [])

    def still_valid(self) -> bool:
        """No compaction ran since the capture (call on the event loop, after the thread)."""
        return self.store.compact_rev == self.compact_rev

    def to_bytes(self) -> bytes:
        """The snapshot bytes of the state at ``current_rev`` (safe in a worker thread)."""
        top = self.current_rev
        out = [_HEAD.pack(MAGIC, 1, top, self.compact_rev), _U32.pack(len(self.leases))]
        out.extend(_U64x2.pack(lid, ttl) for lid, ttl in self.leases)
        index = self.store.index._index
        body: list[bytes] = []
        count = 0
        for key in self.keys:
            ki = index.get(key)
            if ki is None:
                continue
            versions = [(rev, kv) for rev, kv in zip(list(ki.revs), list(ki.kvs)) if rev <= top]
            if not versions:
                continue
            count += 1
            body.append(_U32.pack(len(key)) + key + _U32.pack(len(versions)))
            for rev, kv in versions:
                if kv is None:
                    body.append(_VER.pack(rev, 0))
                else:
                    b = kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                                        mod_revision=kv.mod_revision, version=kv.version,
                                        value=kv.value, lease=kv.lease).SerializeToString()
                    body.append(_VER.pack(rev, 1) + _U32.pack(len(b)) + b)
        out.append(_U32.pack(count))
        out.extend(body)
        return b"".join(out)


def dump(store, lessor=None) -> bytes:
    """The whole state of ``store`` (a KVStore) and ``lessor`` (a Lessor) as bytes (blocks the caller)."""
    return View(store, lessor).to_bytes()


def dump_async(store, lessor=None) -> Coroutine[Any, Any, bytes]:
    """``dump`` without stalling the event loop: capture a View now (on the loop),
    serialize it in a worker thread when the returned coroutine runs.

    The bytes are the state at the moment of the call (later writes are not in
    them), so a caller may start the coroutine later (as a task) and still get
    the state it called at. If a compaction ran meanwhile the dump is redone on
    the loop (rare). Raises SnapshotFormatError if the compaction went past the
    captured revision.
    """
    return _dump_view(View(store, lessor))


async def _dump_view(view: View) -> bytes:
    import asyncio
    data = await asyncio.to_thread(view.to_bytes)
    if view.still_valid():
        return data
    store = view.store
    # A compaction above the captured revision may have removed what it needs.
    if store.compact_rev > view.current_rev:
        raise SnapshotFormatError(f"compacted to {store.compact_rev} while dumping revision {view.current_rev}")
    view.compact_rev = store.compact_rev
    return view.to_bytes()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SnapshotFormatError("MVCC snapshot is truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(b)

    def unpack(self, st: struct.Struct):
        return st.unpack(self.take(st.size))


def restore(store, data: bytes, lessor=None) -> None:
    """Replace the contents of ``store`` (and ``lessor``'s leases) with ``data``.

    Watch history is rebuilt from the key versions (events of one revision in
    key order). Raises SnapshotFormatError for foreign or truncated bytes.
    """
    r = _Reader(data)
    magic, version, current_rev, compact_rev = r.unpack(_HEAD)
    if magic != MAGIC or version != 1:
        raise SnapshotFormatError("not an etcdlite MVCC snapshot")
    leases = [r.unpack(_U64x2) for _ in range(r.unpack(_U32)[0])]
    index = TreeIndex()
    by_rev: dict[int, list[Event]] = {}
    (nkeys,) = r.unpack(_U32)
    for _ in range(nkeys):
        key = r.take(r.unpack(_U32)[0])
        ki = KeyIndex()
        prev: Optional[KeyValue] = None
        for _ in range(r.unpack(_U32)[0]):
            rev, live = r.unpack(_VER)
            kv = None
            if live:
                m = kv_pb2.KeyValue.FromString(r.take(r.unpack(_U32)[0]))
                kv = KeyValue(m.key, m.create_revision, m.mod_revision, m.version, m.value, m.lease)
                ev = Event(PUT, kv, prev)
            else:
                ev = Event(DELETE, KeyValue(key, 0, rev, 0, b"", 0), prev)
            by_rev.setdefault(rev, []).append(ev)
            ki.append(rev, kv)
            prev = kv
        index._index[key] = ki
        index._keys.append(key)
    store.index = index
    store.current_rev = current_rev
    store.compact_rev = compact_rev
    base = max(2, compact_rev)
    store._history_base = base
    store._history = [by_rev.get(rev, []) for rev in range(base, current_rev + 1)]
    if lessor is not None:
        from etcdlite.lease.lessor import Lease
        lessor.leases = {}
        for lease_id, ttl in leases:
            lessor.leases[lease_id] = Lease(lease_id, ttl)
        for key, ki in index._index.items():
            kv = ki.latest()
            if kv is not None and kv.lease in lessor.leases:
                lessor.leases[kv.lease].keys.add(key)
        if lessor.primary:
            lessor.promote()
