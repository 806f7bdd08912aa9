"""The Maintenance service: Status, Alarm, Defragment, Hash, HashKV.

Mirrors etcd's api/v3rpc/maintenance.go far enough for ``etcdctl endpoint
status``, ``alarm list``, ``defrag``, ``snapshot save`` and consistency
checks, and ``move-leader``.
"""
from __future__ import annotations

import hashlib
import zlib


from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc.util import etcd_errors
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc

SNAPSHOT_CHUNK = 32 * 1024


def _hash(server: EtcdServer, rev: int) -> int:
    # CRC-32 over every live key-value at ``rev`` (upstream hashes the key bucket).
    h = 0
    for kv in server.store.range(b"\x00", b"\x00", rev=rev).kvs:
        h = zlib.crc32(b"%s\x00%d\x00%d\x00%d\x00%s\x00%d" % (
            kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease), h)
    return h


class MaintenanceServicer(rpc_pb2_grpc.MaintenanceServicer):
    """etcdserverpb.Maintenance over an EtcdServer."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @etcd_errors
    async def Status(self, request, context):
        """etcd Maintenance.Status: version, db size, leader, raft index/term of this member."""
        return self.server.status()

    @etcd_errors
    async def Alarm(self, request, context):
        """etcd Maintenance.Alarm: always an empty alarm list (no quota or corruption checks here)."""
        # No quota and no corruption check, so no alarm is ever raised.
        return pb.AlarmResponse(header=self.server.header())

    @etcd_errors
    async def Defragment(self, request, context):
        """etcd Maintenance.Defragment: a no-op that succeeds (nothing to defragment)."""
        return pb.DefragmentResponse(header=self.server.header())

    @etcd_errors
    async def Hash(self, request, context):
        """etcd Maintenance.Hash: CRC-32 over every live key-value at the current revision."""
        return pb.HashResponse(header=self.server.header(), hash=_hash(self.server, 0))

    @etcd_errors
    async def HashKV(self, request, context):
        """etcd Maintenance.HashKV: CRC-32 of the keyspace at ``revision`` (0 = current), with the compact revision;
        OUT_OF_RANGE for a compacted or future revision.
        """
        rev = self.server.store.check_rev(request.revision)
        return pb.HashKVResponse(header=self.server.header(), hash=_hash(self.server, rev),
                                 compact_revision=self.server.store.compact_rev)

    async def Snapshot(self, request, context):
        """etcd Maintenance.Snapshot: the store as a bbolt file (etcdlite.mvcc.boltdb)
        in 32 KiB chunks with ``remaining_bytes``, then a last message holding the
        SHA-256 of everything sent (etcdctl checks that size % 512 == 32)."""
        data = self.server.backend_snapshot()
        digest = hashlib.sha256(data).digest()
        total = len(data)
        for off in range(0, total, SNAPSHOT_CHUNK):
            chunk = data[off:off + SNAPSHOT_CHUNK]
            yield pb.SnapshotResponse(header=self.server.header(),
                                      remaining_bytes=total - off - len(chunk) + len(digest), blob=chunk)
        yield pb.SnapshotResponse(header=self.server.header(), remaining_bytes=0, blob=digest)

    @etcd_errors
    async def MoveLeader(self, request, context):
        """etcd Maintenance.MoveLeader: the leader hands leadership to ``targetID``
        (FAILED_PRECONDITION "not leader" on a follower, "bad leader transferee"
        for an unknown member)."""
        await self.server.move_leader(request.targetID)
        return pb.MoveLeaderResponse(header=self.server.header())
