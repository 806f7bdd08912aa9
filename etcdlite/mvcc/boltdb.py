"""Writing the MVCC state as a bbolt database file, the bytes of ``etcdctl snapshot save``.

etcd streams its bbolt backend file as the snapshot and ``etcdctl snapshot
status`` opens it with bbolt (checking page integrity, then walking every
bucket; the revision shown is the last key of the ``key`` bucket). So that
etcdctl accepts ours, we lay out a read-only bbolt file (go.etcd.io/bbolt
page format, written from its documented structures, page size 4096):

    page 0, 1   meta (magic 0xED0CDAED, version 2, FNV-64a checksum)
    page 2      freelist (empty)
    page 3..    each bucket's pages, then the root bucket's leaf, then each bucket's pages: leaves of
                sorted elements (a large leaf spills into overflow pages) under
                branch pages when one leaf is not enough.

Buckets follow etcd's schema: ``key`` maps a 17-byte revision (8-byte
big-endian main, ``_``, 8-byte sub) to a mvccpb.KeyValue, ``lease`` maps an
8-byte ID to (ID, TTL), ``meta`` holds the consistent index.
"""
from __future__ import annotations

import struct

from proto.mvccpb import kv_pb2

PAGE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
_PAGE_HDR = struct.Struct("<QHHI")
_LEAF_ELEM = struct.Struct("<IIII")
_BRANCH_ELEM = struct.Struct("<IIQ")
_META = struct.Struct("<IIIIQQQQQQ")
MAX_LEAF_BYTES = PAGE - _PAGE_HDR.size
MAX_ELEMS = 0xFFFF
FANOUT = 128


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def rev_bytes(main: int, sub: int) -> bytes:
    """etcd's revToBytes: 8-byte big-endian main, '_', 8-byte big-endian sub."""
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub)


class _Pages:
    def __init__(self, first: int) -> None:
        self.next = first
        self.blobs: list[bytes] = []

    def add(self, flags: int, elems_hdr: bytes, body: bytes, count: int) -> int:
        pgid = self.next
        raw_len = _PAGE_HDR.size + len(elems_hdr) + len(body)
        npages = max(1, -(-raw_len // PAGE))
        raw = _PAGE_HDR.pack(pgid, flags, count, npages - 1) + elems_hdr + body
        self.blobs.append(raw + b"\0" * (npages * PAGE - len(raw)))
        self.next += npages
        return pgid


def _leaf(pages: _Pages, items: list[tuple[bytes, bytes, int]]) -> int:
    hdr, body = [], []
    n = len(items)
    off = n * _LEAF_ELEM.size
    for i, (k, v, flags) in enumerate(items):
        pos = off - i * _LEAF_ELEM.size
        hdr.append(_LEAF_ELEM.pack(flags, pos, len(k), len(v)))
        body.append(k + v)
        off += len(k) + len(v)
    return pages.add(LEAF, b"".join(hdr), b"".join(body), n)


def _branch(pages: _Pages, children: list[tuple[bytes, int]]) -> int:
    hdr, body = [], []
    n = len(children)
    off = n * _BRANCH_ELEM.size
    for i, (k, pgid) in enumerate(children):
        hdr.append(_BRANCH_ELEM.pack(off - i * _BRANCH_ELEM.size, len(k), pgid))
        body.append(k)
        off += len(k)
    return pages.add(BRANCH, b"".join(hdr), b"".join(body), n)


def _tree(pages: _Pages, items: list[tuple[bytes, bytes, int]]) -> int:
    """Write sorted ``items`` as a B+tree; returns the root page id."""
    leaves: list[tuple[bytes, int]] = []
    chunk: list[tuple[bytes, bytes, int]] = []
    size = 0
    for item in items:
        isz = _LEAF_ELEM.size + len(item[0]) + len(item[1])
        if chunk and (size + isz > MAX_LEAF_BYTES or len(chunk) >= MAX_ELEMS):
            leaves.append((chunk[0][0], _leaf(pages, chunk)))
            chunk, size = [], 0
        chunk.append(item)
        size += isz
    if chunk or not leaves:
        leaves.append((chunk[0][0] if chunk else b"", _leaf(pages, chunk)))
    level = leaves
    while len(level) > 1:
        level = [(grp[0][0], _branch(pages, grp))
                 for grp in (level[i:i + FANOUT] for i in range(0, len(level), FANOUT))]
    return level[0][1]


def buckets_of(store, lessor=None, *, consistent_index: int = 0) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """etcd's backend buckets for ``store`` (a KVStore) and ``lessor``: name -> sorted (key, value)."""
    versions: list[tuple[int, bytes]] = []
    for key in store.index._keys:
        ki = store.index._index[key]
        for rev, kv in zip(ki.revs, ki.kvs):
            m = (kv_pb2.KeyValue(key=key) if kv is None else kv_pb2.KeyValue(
                key=kv.key, create_revision=kv.create_revision, mod_revision=kv.mod_revision,
                version=kv.version, value=kv.value, lease=kv.lease))
            # etcd marks a deletion by a "t" after the revision key (a tombstone).
            versions.append((rev, b"t" if kv is None else b"", m.SerializeToString()))
    versions.sort(key=lambda rv: rv[0])
    key_items, last, sub = [], None, 0
    for rev, mark, val in versions:
        sub = sub + 1 if rev == last else 0
        last = rev
        key_items.append((rev_bytes(rev, sub) + mark, val))
    leases = []
    if lessor is not None:
        for lid in sorted(lessor.leases):
            leases.append((struct.pack(">Q", lid), struct.pack(">qq", lid, lessor.leases[lid].ttl)))
    meta = [(b"consistent_index", struct.pack(">Q", consistent_index)),
            (b"finishedCompactRev", rev_bytes(store.compact_rev, 0))]
    return {b"key": key_items, b"lease": leases, b"meta": sorted(meta)}


def write_db(buckets: dict[bytes, list[tuple[bytes, bytes]]]) -> bytes:
    """A bbolt file holding ``buckets`` (name -> (key, value) pairs sorted by key)."""
    pages = _Pages(3)
    roots = {name: _tree(pages, [(k, v, 0) for k, v in items])
             for name, items in sorted(buckets.items())}
    root_items = [(name, struct.pack("<QQ", roots[name], 0), BUCKET_LEAF_FLAG)
                  for name in sorted(buckets)]
    # The root bucket's page goes last so its id is known; bbolt does not care about order.
    root = _tree(pages, root_items)
    high = pages.next
    out = []
    for pgid, txid in ((0, 1), (1, 2)):
        body = _META.pack(MAGIC, VERSION, PAGE, 0, root, 0, 2, high, txid, 0)[:-8]
        meta = body + struct.pack("<Q", _fnv64a(body))
        raw = _PAGE_HDR.pack(pgid, META, 0, 0) + meta
        out.append(raw + b"\0" * (PAGE - len(raw)))
    raw = _PAGE_HDR.pack(2, FREELIST, 0, 0)
    out.append(raw + b"\0" * (PAGE - len(raw)))
    return b"".join(out) + b"".join(pages.blobs)


class BoltFormatError(ValueError):
    """The bytes are not a readable bbolt file (bad magic, checksum or page layout)."""


_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, pgid


def _meta_at(data: bytes, off: int):
    try:
        fields = _META.unpack_from(data, off + _PAGE_HDR.size)
    except struct.error:
        return None
    body = data[off + _PAGE_HDR.size: off + _PAGE_HDR.size + _META.size - 8]
    if fields[0] != MAGIC or fields[-1] != _fnv64a(body):
        return None
    return fields  # magic, version, page size, flags, root, sequence, freelist, high pgid, txid, checksum


def _items(data: bytes, buf: bytes, off: int, page_size: int, depth: int = 0):
    """(key, value, flags) of the leaves under the page at ``buf[off:]`` (``data`` holds pgid pages)."""
    if depth > 64:
        raise BoltFormatError("bbolt tree too deep")
    try:
        _, flags, count, _ = _PAGE_HDR.unpack_from(buf, off)
    except struct.error:
        raise BoltFormatError("truncated bbolt page") from None
    base = off + _PAGE_HDR.size
    if flags & LEAF:
        for i in range(count):
            eoff = base + i * _LEAF_ELEM.size
            eflags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(buf, eoff)
            k = buf[eoff + pos: eoff + pos + ksize]
            yield k, buf[eoff + pos + ksize: eoff + pos + ksize + vsize], eflags
    elif flags & BRANCH:
        for i in range(count):
            eoff = base + i * _BRANCH_ELEM.size
            _, _, pgid = _BRANCH_ELEM.unpack_from(buf, eoff)
            if pgid * page_size >= len(data):
                raise BoltFormatError(f"bbolt page {pgid} past the end of the file")
            yield from _items(data, data, pgid * page_size, page_size, depth + 1)
    else:
        raise BoltFormatError(f"unexpected bbolt page flags {flags:#x}")


def read_db(data: bytes) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """The buckets of a bbolt file (ours or etcd's ``snapshot save``): name -> (key, value) pairs in
    key order; nested buckets are skipped. Raises BoltFormatError on a file bbolt would refuse."""
    metas = [m for m in (_meta_at(data, 0),) if m]
    if metas:
        second = _meta_at(data, metas[0][2])
        metas += [second] if second else []
    else:
        for size in (4096, 8192, 16384, 65536):
            m = _meta_at(data, size)
            if m:
                metas.append(m)
                break
    if not metas:
        raise BoltFormatError("not a bbolt file: no valid meta page")
    meta = max(metas, key=lambda m: m[8])
    page_size, root = meta[2], meta[4]
    out: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value, flags in _items(data, data, root * page_size, page_size):
        if not flags & BUCKET_LEAF_FLAG:
            continue
        broot = struct.unpack_from("<Q", value)[0]
        if broot == 0:  # an inline bucket: its page follows the bucket header
            items = _items(data, value, 16, page_size)
        else:
            items = _items(data, data, broot * page_size, page_size)
        out[name] = [(k, v) for k, v, f in items if not f & BUCKET_LEAF_FLAG]
    return out
