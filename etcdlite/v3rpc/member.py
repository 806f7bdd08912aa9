"""The Cluster service: MemberList (membership changes come with Raft).

Mirrors etcd's api/v3rpc/member.go for reads; ``etcdctl member list`` works.
"""
from __future__ import annotations

import grpc

from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc.util import etcd_errors
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc

_NO_RECONFIG = "etcdlite: membership changes are not supported yet (single-member cluster)"


class ClusterServicer(rpc_pb2_grpc.ClusterServicer):
    """etcdserverpb.Cluster over an EtcdServer."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @etcd_errors
    async def MemberList(self, request, context):
        """etcd Cluster.MemberList: the configured members (header revision 0, as etcd)."""
        hdr = self.server.header()
        hdr.revision = 0  # etcd's MemberList header carries no store revision
        return pb.MemberListResponse(header=hdr, members=self.server.members())

    async def MemberAdd(self, request, context):
        """etcd Cluster.MemberAdd: UNIMPLEMENTED (no runtime reconfiguration)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _NO_RECONFIG)

    async def MemberRemove(self, request, context):
        """etcd Cluster.MemberRemove: UNIMPLEMENTED (no runtime reconfiguration)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _NO_RECONFIG)

    async def MemberUpdate(self, request, context):
        """etcd Cluster.MemberUpdate: UNIMPLEMENTED (no runtime reconfiguration)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _NO_RECONFIG)

    async def MemberPromote(self, request, context):
        """etcd Cluster.MemberPromote: UNIMPLEMENTED (no runtime reconfiguration)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _NO_RECONFIG)
