"""Member-to-member transport (etcd server/etcdserver/api/rafthttp), over gRPC."""
from etcdlite.rafthttp.transport import Transport

__all__ = ["Transport"]
