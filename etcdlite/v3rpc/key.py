"""The KV service: Range, Put, DeleteRange, Txn, Compact.

Mirrors etcd's api/v3rpc/key.go: requests are checked here (empty key, txn
size, duplicate keys in a txn) before they reach the server, so a bad request
never becomes a log entry.
"""
from __future__ import annotations

from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc import rpctypes
from etcdlite.v3rpc.util import etcd_errors
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc


def check_range(r: pb.RangeRequest) -> None:
    """etcd checkRangeRequest."""
    if not r.key:
        raise rpctypes.ErrEmptyKey


def check_put(r: pb.PutRequest) -> None:
    """etcd checkPutRequest."""
    if not r.key:
        raise rpctypes.ErrEmptyKey
    if r.ignore_value and r.value:
        raise rpctypes.ErrValueProvided
    if r.ignore_lease and r.lease:
        raise rpctypes.ErrLeaseProvided


def check_delete(r: pb.DeleteRangeRequest) -> None:
    """etcd checkDeleteRequest."""
    if not r.key:
        raise rpctypes.ErrEmptyKey


def check_txn(r: pb.TxnRequest, max_ops: int) -> None:
    """etcd checkTxnRequest + checkIntervals: op counts, keys present, and no key
    written twice (two puts, or a put inside a deleted range) on one path."""
    _check_txn_ops(r, max_ops)
    _intervals(r)


def _check_txn_ops(r: pb.TxnRequest, max_ops: int) -> None:
    if max(len(r.compare), len(r.success), len(r.failure)) > max_ops:
        raise rpctypes.ErrTooManyOps
    for c in r.compare:
        if not c.key:
            raise rpctypes.ErrEmptyKey
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            check_range(op.request_range)
        elif which == "request_put":
            check_put(op.request_put)
        elif which == "request_delete_range":
            check_delete(op.request_delete_range)
        elif which == "request_txn":
            _check_txn_ops(op.request_txn, max_ops)


def _in_deleted(key: bytes, dels: list[tuple[bytes, bytes]]) -> bool:
    for start, end in dels:
        if (not end and key == start) or (end == b"\x00" and key >= start) or (start <= key < end):
            return True
    return False


def _branch(ops) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    puts: set[bytes] = set()
    dels: list[tuple[bytes, bytes]] = []
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_delete_range":
            dels.append((op.request_delete_range.key, op.request_delete_range.range_end))
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_put":
            key = op.request_put.key
            if key in puts or _in_deleted(key, dels):
                raise rpctypes.ErrDuplicateKey
            puts.add(key)
        elif which == "request_txn":
            inner_puts, inner_dels = _intervals(op.request_txn)
            for key in inner_puts:
                if key in puts or _in_deleted(key, dels):
                    raise rpctypes.ErrDuplicateKey
            for key in puts:
                if _in_deleted(key, inner_dels):
                    raise rpctypes.ErrDuplicateKey
            puts |= inner_puts
            dels.extend(inner_dels)
    return puts, dels


def _intervals(r: pb.TxnRequest) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    # Only one branch runs, so each is checked alone; the caller sees their union.
    sp, sd = _branch(r.success)
    fp, fd = _branch(r.failure)
    return sp | fp, sd + fd


class KVServicer(rpc_pb2_grpc.KVServicer):
    """etcdserverpb.KV over an EtcdServer."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @etcd_errors
    async def Range(self, request, context):
        """etcd KV.Range: keys in [key, range_end) at ``revision``; INVALID_ARGUMENT for an empty key,
        OUT_OF_RANGE for a compacted or future revision (etcd's rpctypes errors).
        """
        check_range(request)
        return await self.server.range(request)

    @etcd_errors
    async def Put(self, request, context):
        """etcd KV.Put: store ``value`` under ``key`` (optionally with a lease, prev_kv, ignore_value/ignore_lease);
        INVALID_ARGUMENT for an empty key or a bad ignore_* combination, NOT_FOUND for an unknown lease.
        """
        check_put(request)
        return await self.server.put(request)

    @etcd_errors
    async def DeleteRange(self, request, context):
        """etcd KV.DeleteRange: delete keys in [key, range_end), prev_kvs if asked; INVALID_ARGUMENT for an empty key."""
        check_delete(request)
        return await self.server.delete_range(request)

    @etcd_errors
    async def Txn(self, request, context):
        """etcd KV.Txn: if all compares hold run ``success`` else ``failure``, atomically at one revision;
        INVALID_ARGUMENT for too many ops or a key written twice.
        """
        check_txn(request, self.server.cfg.max_txn_ops)
        return await self.server.txn(request)

    @etcd_errors
    async def Compact(self, request, context):
        """etcd KV.Compact: drop history below ``revision``; OUT_OF_RANGE if already compacted or in the future."""
        return await self.server.compact(request)
