"""The Cluster service: MemberList, MemberAdd, MemberRemove, MemberUpdate.

Mirrors etcd's api/v3rpc/member.go: changes go through the Raft log as
ConfChange entries (EtcdServer.member_*), answered once applied on this
member with the new member list. There are no learners, so MemberPromote
(and MemberAdd with is_learner) are UNIMPLEMENTED.
"""
from __future__ import annotations

import grpc

from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc.rpctypes import EtcdError
from etcdlite.v3rpc.util import etcd_errors
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc

_NO_LEARNERS = "etcdlite: learner members are not supported"


class ClusterServicer(rpc_pb2_grpc.ClusterServicer):
    """etcdserverpb.Cluster over an EtcdServer."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def _header(self) -> pb.ResponseHeader:
        hdr = self.server.header()
        hdr.revision = 0  # etcd's Cluster responses carry no store revision
        return hdr

    @etcd_errors
    async def MemberList(self, request, context):
        """etcd Cluster.MemberList: every member (header revision 0, as etcd)."""
        return pb.MemberListResponse(header=self._header(), members=self.server.members())

    @etcd_errors
    async def MemberAdd(self, request, context):
        """etcd Cluster.MemberAdd: the new member (no name until it starts) and the list."""
        if request.isLearner:
            raise EtcdError(grpc.StatusCode.UNIMPLEMENTED, _NO_LEARNERS)
        m = await self.server.member_add(list(request.peerURLs))
        return pb.MemberAddResponse(header=self._header(), member=m, members=self.server.members())

    @etcd_errors
    async def MemberRemove(self, request, context):
        """etcd Cluster.MemberRemove: the list without member ``ID``."""
        await self.server.member_remove(request.ID)
        return pb.MemberRemoveResponse(header=self._header(), members=self.server.members())

    @etcd_errors
    async def MemberUpdate(self, request, context):
        """etcd Cluster.MemberUpdate: new peer URLs for member ``ID``."""
        await self.server.member_update(request.ID, list(request.peerURLs))
        return pb.MemberUpdateResponse(header=self._header(), members=self.server.members())

    async def MemberPromote(self, request, context):
        """etcd Cluster.MemberPromote: UNIMPLEMENTED (no learners)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _NO_LEARNERS)
