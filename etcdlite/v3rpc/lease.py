"""The Lease service: grant, revoke, keep-alive stream, time-to-live, list.

Mirrors etcd's api/v3rpc/lease.go. Grant and revoke go through the log;
keep-alives only touch the primary (leader's) lessor's clock, as upstream:
a follower forwards them to the leader over the peer transport.
"""
from __future__ import annotations

from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc.rpctypes import to_etcd_error
from etcdlite.v3rpc.util import etcd_errors
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc


class LeaseServicer(rpc_pb2_grpc.LeaseServicer):
    """etcdserverpb.Lease over an EtcdServer."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @etcd_errors
    async def LeaseGrant(self, request, context):
        """etcd Lease.LeaseGrant: a lease of ``TTL`` seconds (``ID`` 0 picks one); FAILED_PRECONDITION if it exists."""
        return await self.server.lease_grant(request)

    @etcd_errors
    async def LeaseRevoke(self, request, context):
        """etcd Lease.LeaseRevoke: end lease ``ID`` and delete its keys; NOT_FOUND for an unknown lease."""
        return await self.server.lease_revoke(request)

    @etcd_errors
    async def LeaseTimeToLive(self, request, context):
        """etcd Lease.LeaseTimeToLive: remaining TTL in seconds (-1 for an unknown lease), granted TTL, keys."""
        await self.server.linearizable_read_notify()
        return await self.server.lease_time_to_live(request)

    @etcd_errors
    async def LeaseLeases(self, request, context):
        """etcd Lease.LeaseLeases: the IDs of every live lease."""
        await self.server.linearizable_read_notify()
        return self.server.lease_leases()

    async def LeaseKeepAlive(self, request_iterator, context):
        """etcd Lease.LeaseKeepAlive (bidi stream): one response per request with the renewed TTL in seconds;
        TTL 0 means the lease is gone.
        """
        # One response per request; TTL 0 tells the client the lease is gone.
        async for req in request_iterator:
            try:
                ttl = await self.server.lease_renew(req.ID)
            except Exception as exc:  # no leader to forward to: etcd's status, no traceback
                err = to_etcd_error(exc)
                await context.abort(err.code, err.message)
            yield pb.LeaseKeepAliveResponse(header=self.server.header(), ID=req.ID, TTL=ttl)
