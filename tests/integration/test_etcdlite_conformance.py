"""The same gRPC script against the real etcd 3.4 and against etcdlite: responses
and errors must be equal (after clearing raft_term, which depends on elections).

Both servers get the same --initial-cluster peer URL and token, so even their
member and cluster IDs agree.
"""
from __future__ import annotations

import difflib
import shutil
import signal
import sys
import time
from collections.abc import Sequence

import grpc
import pytest

import support
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc

ETCD = shutil.which("etcd")
pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd 3.4 not installed")
C = pb.Compare


def start(kind: str, procs: support.ProcessGroup) -> str:
    """Start etcd or etcdlite in ``procs``; returns its gRPC endpoint once a Range answers."""
    port, peer = support.free_port(), support.free_port()
    url = f"http://127.0.0.1:{port}"
    # Both advertise the same peer URL, so that member and cluster IDs (derived from it) match,
    # but listen on a free port: a dev cluster may hold 2380.
    flags = ["--name", "m", "--data-dir", str(procs.log_dir / kind), "--listen-client-urls", url,
             "--advertise-client-urls", url, "--initial-cluster", "m=http://127.0.0.1:2380",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
             "http://127.0.0.1:2380"]
    cmd = [ETCD, *flags] if kind == "etcd" else [sys.executable, "-m", "etcdlite", *flags]
    proc = procs.spawn(kind, cmd)
    endpoint = f"127.0.0.1:{port}"
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)

        def ranged() -> bool:
            assert proc.poll() is None, "server exited"
            kv.Range(pb.RangeRequest(key=b"health"), timeout=1)
            return True
        support.wait_for(f"{endpoint} ready", ranged, 15, 0.1, errors=(grpc.RpcError,))
    return endpoint


def normalize(msg):
    """Clear raft_term in every header of a response (recursively)."""
    for field, value in msg.ListFields():
        if field.name == "header":
            value.raft_term = 0
        elif field.message_type is not None:
            items = value if isinstance(value, Sequence) else [value]
            for item in items:
                normalize(item)
    return msg


def script(endpoint: str) -> list:
    out: list = []
    with grpc.insecure_channel(endpoint) as ch:
        kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)

        def call(fn, req):
            try:
                out.append(normalize(fn(req, timeout=5)))
            except grpc.RpcError as e:
                out.append((e.code(), e.details()))

        for i, k in enumerate([b"/a/1", b"/a/2", b"/b", b"/a/3", b"/a/1"]):
            call(kv.Put, pb.PutRequest(key=k, value=b"v%d" % i, prev_kv=True))
        call(kv.Range, pb.RangeRequest(key=b"/a/", range_end=b"/a0"))
        call(kv.Range, pb.RangeRequest(key=b"/a/", range_end=b"/a0", limit=2))
        call(kv.Range, pb.RangeRequest(key=b"/", range_end=b"\x00", sort_target=pb.RangeRequest.MOD,
                                       sort_order=pb.RangeRequest.DESCEND, limit=3, keys_only=True))
        call(kv.Range, pb.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True))
        call(kv.Range, pb.RangeRequest(key=b"/a/1", revision=2))
        call(kv.Range, pb.RangeRequest(key=b"/a/", range_end=b"/a0", min_create_revision=3, max_mod_revision=5))
        call(kv.Range, pb.RangeRequest(key=b"/a/1", revision=99))
        call(kv.Range, pb.RangeRequest(key=b""))
        call(kv.Put, pb.PutRequest(key=b"/missing", ignore_value=True))
        call(kv.Put, pb.PutRequest(key=b"/x", value=b"v", ignore_value=True))
        call(kv.Put, pb.PutRequest(key=b"/x", value=b"v", lease=12345))
        call(kv.Txn, pb.TxnRequest(
            compare=[C(key=b"/a/1", target=C.VERSION, result=C.EQUAL, version=2),
                     C(key=b"/a/", range_end=b"/a0", target=C.MOD, result=C.GREATER, mod_revision=1)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/t/1", value=b"s", prev_kv=True)),
                     pb.RequestOp(request_range=pb.RangeRequest(key=b"/t/", range_end=b"/t0")),
                     pb.RequestOp(request_txn=pb.TxnRequest(
                         compare=[C(key=b"/nope", target=C.VALUE, result=C.EQUAL, value=b"")],
                         failure=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                             key=b"/b", prev_kv=True))]))],
            failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"/t/2", value=b"f"))]))
        call(kv.Txn, pb.TxnRequest(compare=[C(key=b"/a/1", target=C.VALUE, result=C.NOT_EQUAL, value=b"v4")],
                                   failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"/a/1"))]))
        call(kv.Txn, pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/d")),
                                            pb.RequestOp(request_put=pb.PutRequest(key=b"/d"))]))
        call(kv.Txn, pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/k%d" % i))
                                            for i in range(129)]))
        call(kv.DeleteRange, pb.DeleteRangeRequest(key=b"/a/", range_end=b"/a0", prev_kv=True))
        call(kv.DeleteRange, pb.DeleteRangeRequest(key=b"/none"))
        call(kv.Compact, pb.CompactionRequest(revision=4))
        call(kv.Compact, pb.CompactionRequest(revision=4))
        call(kv.Compact, pb.CompactionRequest(revision=1000))
        call(kv.Range, pb.RangeRequest(key=b"/a/1", revision=3))
        call(kv.Range, pb.RangeRequest(key=b"/", range_end=b"\x00", revision=4))
        call(lease.LeaseGrant, pb.LeaseGrantRequest(ID=777, TTL=1))
        call(lease.LeaseGrant, pb.LeaseGrantRequest(ID=777, TTL=100))
        call(kv.Put, pb.PutRequest(key=b"/leased", value=b"v", lease=777))
        call(lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=777, keys=True))
        call(lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=778))
        call(lease.LeaseLeases, pb.LeaseLeasesRequest())
        call(lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=777))
        call(lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=777))
        call(kv.Range, pb.RangeRequest(key=b"/leased"))

        watch = rpc_pb2_grpc.WatchStub(ch)
        reqs = [pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/", range_end=b"\x00",
                                                                     start_revision=5, prev_kv=True)),
                pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/t/1", start_revision=2)),
                pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/b", range_end=b"/a"))]
        stream = watch.Watch(iter(reqs), timeout=5)
        got = []
        try:
            for resp in stream:
                got.append(normalize(resp))
                if len(got) == 5:
                    break
        finally:
            stream.cancel()
        out.extend(sorted(got, key=lambda r: (r.watch_id, not r.created)))
        out.extend(watch_control(watch))
    return out


def watch_control(watch) -> list:
    """Requested watch IDs, a duplicate ID, a progress request, cancels (known and unknown)."""
    def reqs():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a"))
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"b", watch_id=7))
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"b", watch_id=7))
        time.sleep(0.2)
        yield pb.WatchRequest(progress_request=pb.WatchProgressRequest())
        time.sleep(0.2)
        yield pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0))
        yield pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=55))
        time.sleep(5)

    got = []
    stream = watch.Watch(reqs(), timeout=5)
    try:
        for resp in stream:
            got.append(normalize(resp))
            if len(got) == 5:
                break
    finally:
        stream.cancel()
    return got


def test_same_answers_as_etcd(tmp_path):
    procs = support.ProcessGroup(tmp_path)
    try:
        results = {}
        for kind in ("etcd", "etcdlite"):
            results[kind] = script(start(kind, procs))
        assert len(results["etcd"]) == len(results["etcdlite"])
        for i, (want, got) in enumerate(zip(results["etcd"], results["etcdlite"])):
            diff = "\n".join(difflib.unified_diff(str(want).splitlines(), str(got).splitlines(),
                                                "etcd", "etcdlite", lineterm=""))
            assert got == want, f"step {i} differs:\n{diff}"
    finally:
        procs.stop(sig=signal.SIGKILL)
