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
from typing import Optional

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


def dump(store, lessor=None) -> bytes:
    """The whole state of ``store`` (a KVStore) and ``lessor`` (a Lessor) as bytes."""
    out = [_HEAD.pack(MAGIC, 1, store.current_rev, store.compact_rev)]
    leases = sorted(lessor.leases.values(), key=lambda le: le.id) if lessor is not None else []
    out.append(_U32.pack(len(leases)))
    out.extend(_U64x2.pack(le.id, le.ttl) for le in leases)
    keys = store.index._keys
    out.append(_U32.pack(len(keys)))
    for key in keys:
        ki = store.index._index[key]
        out.append(_U32.pack(len(key)) + key + _U32.pack(len(ki.revs)))
        for rev, kv in zip(ki.revs, ki.kvs):
            if kv is None:
                out.append(_VER.pack(rev, 0))
            else:
                b = kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                                    mod_revision=kv.mod_revision, version=kv.version,
                                    value=kv.value, lease=kv.lease).SerializeToString()
                out.append(_VER.pack(rev, 1) + _U32.pack(len(b)) + b)
    return b"".join(out)


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
