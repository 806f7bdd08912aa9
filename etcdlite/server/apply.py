"""Applying log entries to the state machine (MVCC store + lessor).

Mirrors etcd's applierV3backend (server/etcdserver/apply.go): every member
applies the same InternalRaftRequests in the same order and so reaches the same
revisions. Apply is deterministic: it never reads a clock and never picks IDs
(lease IDs are chosen before proposing). Errors a request may meet at apply
time (a missing lease, a compacted revision) are raised before anything is
written, so a failed request leaves no trace.

Range and read-only Txn are also served from here directly, without a log
entry, as etcd does for reads.
"""
from __future__ import annotations

from typing import Optional

import grpc

from etcdlite.lease.lessor import LeaseNotFoundError, Lessor
from etcdlite.mvcc.kv import KeyValue
from etcdlite.mvcc.kvstore import KVStore, TxnWrite
from etcdlite.v3rpc import rpctypes
from proto.etcdserverpb import raft_internal_pb2 as internalpb
from proto.etcdserverpb import rpc_pb2 as pb
from proto.mvccpb import kv_pb2

Compare = pb.Compare
RangeRequest = pb.RangeRequest


def kv_to_pb(kv: KeyValue, *, keys_only: bool = False) -> kv_pb2.KeyValue:
    """mvcc KeyValue -> mvccpb.KeyValue."""
    return kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                           mod_revision=kv.mod_revision, version=kv.version,
                           value=b"" if keys_only else kv.value, lease=kv.lease)


def is_txn_readonly(txn: pb.TxnRequest) -> bool:
    """True if no branch of ``txn`` (nested ones included) writes."""
    for op in (*txn.success, *txn.failure):
        which = op.WhichOneof("request")
        if which in ("request_put", "request_delete_range"):
            return False
        if which == "request_txn" and not is_txn_readonly(op.request_txn):
            return False
    return True


class Applier:
    """Applies requests to ``store`` and ``lessor``; results are etcdserverpb
    responses whose header carries only ``revision`` (the server fills the rest)."""

    def __init__(self, store: KVStore, lessor: Lessor) -> None:
        self.store = store
        self.lessor = lessor

    def apply(self, req: internalpb.InternalRaftRequest):
        """Apply one log entry's request; returns its response message.

        Raises EtcdError / CompactedError / FutureRevError / Lease*Error.
        """
        which = _which(req)
        if which == "put":
            return self.put(req.put)
        if which == "delete_range":
            return self.delete_range(req.delete_range)
        if which == "txn":
            return self.txn(req.txn)
        if which == "compaction":
            return self.compaction(req.compaction)
        if which == "lease_grant":
            return self.lease_grant(req.lease_grant)
        if which == "lease_revoke":
            return self.lease_revoke(req.lease_revoke)
        if which == "range":
            return self.range(req.range)
        raise rpctypes.EtcdError(grpc.StatusCode.UNIMPLEMENTED,
                                 f"etcdserver: unsupported log entry {which}")

    # -- KV ------------------------------------------------------------------

    def range(self, r: pb.RangeRequest, txn: Optional[TxnWrite] = None) -> pb.RangeResponse:
        """Serve a RangeRequest (sort, limit, filters, keys_only, count_only as etcd)."""
        reader = txn if txn is not None else self.store
        sort_order = r.sort_order
        if r.sort_target != RangeRequest.KEY and sort_order == RangeRequest.NONE:
            # Results come sorted by key ascending; any other target needs a sort.
            sort_order = RangeRequest.ASCEND
        filtered = bool(r.min_mod_revision or r.max_mod_revision or
                        r.min_create_revision or r.max_create_revision)
        plain = (sort_order == RangeRequest.NONE or
                 (r.sort_target == RangeRequest.KEY and sort_order == RangeRequest.ASCEND))
        # A limit can only be pushed into the scan when nothing reorders or drops keys.
        scan_limit = r.limit + 1 if (r.limit > 0 and plain and not filtered) else 0
        res = reader.range(r.key, r.range_end, rev=r.revision, limit=scan_limit)
        resp = pb.RangeResponse(header=pb.ResponseHeader(revision=res.rev), count=res.count)
        if r.count_only:
            return resp
        kvs = res.kvs
        if filtered:
            kvs = [kv for kv in kvs
                   if (not r.min_mod_revision or kv.mod_revision >= r.min_mod_revision)
                   and (not r.max_mod_revision or kv.mod_revision <= r.max_mod_revision)
                   and (not r.min_create_revision or kv.create_revision >= r.min_create_revision)
                   and (not r.max_create_revision or kv.create_revision <= r.max_create_revision)]
        if not plain:
            field = _SORT_FIELD[r.sort_target]
            kvs = sorted(kvs, key=lambda kv: kv[field], reverse=sort_order == RangeRequest.DESCEND)
        if r.limit > 0 and len(kvs) > r.limit:
            kvs = kvs[:r.limit]
            resp.more = True
        resp.kvs.extend(kv_to_pb(kv, keys_only=r.keys_only) for kv in kvs)
        return resp

    def put(self, p: pb.PutRequest, txn: Optional[TxnWrite] = None) -> pb.PutResponse:
        """Apply a PutRequest; raises ErrKeyNotFound (ignore_* on a missing key),
        LeaseNotFoundError."""
        self._check_put(p)
        own = txn is None
        txn = txn or self.store.write()
        value, lease = p.value, p.lease
        if p.ignore_value or p.ignore_lease:
            cur = self.store.get(p.key)
            if p.ignore_value:
                value = cur.value
            if p.ignore_lease:
                lease = cur.lease
        prev = txn.put(p.key, value, lease)
        resp = pb.PutResponse()
        if p.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(kv_to_pb(prev))
        rev = txn.end() if own else txn.rev
        resp.header.revision = rev
        return resp

    def delete_range(self, d: pb.DeleteRangeRequest,
                     txn: Optional[TxnWrite] = None) -> pb.DeleteRangeResponse:
        """Apply a DeleteRangeRequest; deleting nothing is not an error."""
        own = txn is None
        txn = txn or self.store.write()
        prevs = txn.delete_range(d.key, d.range_end)
        resp = pb.DeleteRangeResponse(deleted=len(prevs))
        if d.prev_kv:
            resp.prev_kvs.extend(kv_to_pb(kv) for kv in prevs)
        resp.header.revision = txn.end() if own else (txn.rev if txn.events else self.store.current_rev)
        return resp

    def txn(self, t: pb.TxnRequest) -> pb.TxnResponse:
        """Apply a TxnRequest: compares (nested ones too) are evaluated against the
        state before the txn, every request of the chosen path is checked, then
        the path is executed in one write transaction (one revision)."""
        path: list[bool] = []
        self._compare_path(t, path)
        self._check_path(t, iter(path))
        writes = not is_txn_readonly(t)
        wtxn = self.store.write() if writes else None
        resp = self._exec(t, iter(path), wtxn)
        rev = wtxn.end() if wtxn is not None else self.store.current_rev
        resp.header.revision = rev
        return resp

    def compaction(self, c: pb.CompactionRequest) -> pb.CompactionResponse:
        """Compact the store at ``c.revision``; raises CompactedError / FutureRevError."""
        self.store.compact(c.revision)
        return pb.CompactionResponse(header=pb.ResponseHeader(revision=self.store.current_rev))

    # -- leases --------------------------------------------------------------

    def lease_grant(self, g: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        """Grant lease ``g.ID`` (already chosen by the proposer)."""
        lease = self.lessor.grant(g.ID, g.TTL)
        return pb.LeaseGrantResponse(header=pb.ResponseHeader(revision=self.store.current_rev),
                                     ID=lease.id, TTL=lease.ttl)

    def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        """Revoke a lease, deleting its keys in one revision; raises LeaseNotFoundError."""
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            raise LeaseNotFoundError()
        txn = self.store.write()
        for key in sorted(lease.keys):
            txn.delete_range(key)
        rev = txn.end()
        self.lessor.revoke(r.ID)
        return pb.LeaseRevokeResponse(header=pb.ResponseHeader(revision=rev))

    # -- txn internals -------------------------------------------------------

    def _check_put(self, p: pb.PutRequest) -> None:
        if p.lease and self.lessor.lookup(p.lease) is None:
            raise LeaseNotFoundError()
        if (p.ignore_value or p.ignore_lease) and self.store.get(p.key) is None:
            raise rpctypes.ErrKeyNotFound

    def _compare_path(self, t: pb.TxnRequest, path: list[bool]) -> None:
        ok = all(self._compare(c) for c in t.compare)
        path.append(ok)
        for op in (t.success if ok else t.failure):
            if op.WhichOneof("request") == "request_txn":
                self._compare_path(op.request_txn, path)

    def _check_path(self, t: pb.TxnRequest, path) -> None:
        ok = next(path)
        for op in (t.success if ok else t.failure):
            which = op.WhichOneof("request")
            if which == "request_range":
                self.store.check_rev(op.request_range.revision)
            elif which == "request_put":
                self._check_put(op.request_put)
            elif which == "request_txn":
                self._check_path(op.request_txn, path)

    def _exec(self, t: pb.TxnRequest, path, wtxn: Optional[TxnWrite]) -> pb.TxnResponse:
        ok = next(path)
        resp = pb.TxnResponse(succeeded=ok)
        for op in (t.success if ok else t.failure):
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                out.response_range.CopyFrom(self.range(op.request_range, wtxn))
            elif which == "request_put":
                out.response_put.CopyFrom(self.put(op.request_put, wtxn))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete_range(op.request_delete_range, wtxn))
            elif which == "request_txn":
                inner = self._exec(op.request_txn, path, wtxn)
                inner.header.SetInParent()  # etcd sends a nested txn an empty header
                out.response_txn.CopyFrom(inner)
        return resp

    def _compare(self, c: pb.Compare) -> bool:
        end = c.range_end
        kvs = self.store.range(c.key, end).kvs
        if not kvs:
            if c.target == Compare.VALUE:
                # A missing key has no value to compare (etcd: always false).
                return False
            return _compare_kv(c, KeyValue(c.key, 0, 0, 0, b"", 0))
        return all(_compare_kv(c, kv) for kv in kvs)


_SORT_FIELD = {RangeRequest.KEY: 0, RangeRequest.VERSION: 3, RangeRequest.CREATE: 1,
               RangeRequest.MOD: 2, RangeRequest.VALUE: 4}


def _compare_kv(c: pb.Compare, kv: KeyValue) -> bool:
    t = c.target
    if t == Compare.VALUE:
        have, want = kv.value, c.value
    elif t == Compare.CREATE:
        have, want = kv.create_revision, c.create_revision
    elif t == Compare.MOD:
        have, want = kv.mod_revision, c.mod_revision
    elif t == Compare.VERSION:
        have, want = kv.version, c.version
    else:
        have, want = kv.lease, c.lease
    r = c.result
    if r == Compare.EQUAL:
        return have == want
    if r == Compare.GREATER:
        return have > want
    if r == Compare.LESS:
        return have < want
    return have != want


def _which(req: internalpb.InternalRaftRequest) -> Optional[str]:
    for name in ("put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke", "range"):
        if req.HasField(name):
            return name
    return None
