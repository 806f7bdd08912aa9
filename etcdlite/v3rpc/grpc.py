"""Assembling the gRPC server of a member (etcd api/v3rpc/grpc.go).

Server options follow etcd 3.4 as measured: idle etcdctl / clientv3 keepalive
pings must not be answered with GOAWAY "too many pings", and requests may be
as large as --max-request-bytes plus gRPC overhead.
"""
from __future__ import annotations

import grpc

from etcdlite.server.etcdserver import EtcdServer
from etcdlite.v3rpc.key import KVServicer
from etcdlite.v3rpc.lease import LeaseServicer
from etcdlite.v3rpc.maintenance import MaintenanceServicer
from etcdlite.v3rpc.member import ClusterServicer
from etcdlite.v3rpc.watch import PROGRESS_NOTIFY_INTERVAL, WatchServicer
from proto.etcdserverpb import rpc_pb2_grpc

# etcd grpcOverheadBytes: room for gRPC framing above --max-request-bytes.
GRPC_OVERHEAD_BYTES = 512 * 1024


def server_options(max_request_bytes: int) -> list[tuple[str, int]]:
    """Channel arguments of the member's gRPC server."""
    return [
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", 2**31 - 1),
        ("grpc.so_reuseport", 0),
    ]


def build_server(etcd: EtcdServer, *, progress_interval: float = PROGRESS_NOTIFY_INTERVAL
                 ) -> tuple[grpc.aio.Server, list[int]]:
    """A grpc.aio server with KV, Watch, Lease, Cluster and Maintenance bound to
    every --listen-client-urls address; returns it with the bound ports
    (a port 0 in the URL picks a free one). Raises RuntimeError if a port is taken."""
    server = grpc.aio.server(options=server_options(etcd.cfg.max_request_bytes))
    rpc_pb2_grpc.add_KVServicer_to_server(KVServicer(etcd), server)
    rpc_pb2_grpc.add_WatchServicer_to_server(WatchServicer(etcd, progress_interval=progress_interval), server)
    rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseServicer(etcd), server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(etcd), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(etcd), server)
    ports = []
    secure = etcd.cfg.listen_client_tls
    for i, (host, port) in enumerate(etcd.cfg.listen_client_urls):
        addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if i < len(secure) and secure[i]:
            # https:// URL: TLS with etcd's --cert-file/--key-file, client certs as --client-cert-auth says.
            bound = server.add_secure_port(addr, etcd.cfg.client_tls.server_credentials())
        else:
            bound = server.add_insecure_port(addr)
        if not bound:
            raise RuntimeError(f"cannot listen on {addr}")
        ports.append(bound)
    return server, ports
