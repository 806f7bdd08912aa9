"""Protocol buffer sources and their generated Python modules.

Every .proto here is our own text written from upstream's facts (package,
service and method names, field numbers), so that etcdctl and a real etcd,
or a CRI client such as crictl, cannot tell our servers from upstream's.
Sources import each other by their path from the repository root
(``import "proto/mvccpb/kv.proto";``) so the generated modules import as
``proto.mvccpb.kv_pb2``. Regenerate with ``make proto``.
"""
