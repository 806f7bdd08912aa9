"""``kubeling cluster backup|restore|status|logs`` and ``kubeling image load|build-busybox``.

Operations on the local cluster rather than on API objects:

- ``backup FILE``: an etcd snapshot through the Maintenance API's Snapshot
  stream (the bytes ``etcdctl snapshot save`` writes: a bbolt file), checked
  against the SHA-256 trailer etcd appends.
- ``restore FILE``: brings the keyspace under ``/registry/`` back to the
  snapshot's latest revision through the KV API (puts of what differs,
  deletes of what the snapshot did not have), so the apiserver's watch cache,
  the controllers and the kubelets see it as ordinary changes and converge.
  Unlike ``etcdutl snapshot restore`` this keeps the running cluster (and its
  revision counter, which must never go backwards under live watchers); it
  works against etcdlite and a real etcd alike.
- ``status`` / ``logs COMPONENT [-f]``: the launcher's supervised processes.
- ``image load IMAGE|TARBALL`` / ``image build-busybox``: local images
  without a registry (every node of a local cluster shares one Docker engine).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pathlib
import subprocess
import sys
import time

from kubeling import config
from kubeling.cli.errors import CLIError

TXN_OPS = 128  # etcd's default --max-txn-ops


def _etcd_channel(args: argparse.Namespace):
    """A grpc channel to the first etcd endpoint, with the cluster's etcd client certificate when it has a PKI."""
    import grpc

    endpoint = (args.etcd_endpoints or f"127.0.0.1:{config.ETCD_CLIENT_PORT}").split(",")[0]
    endpoint = endpoint.removeprefix("http://").removeprefix("https://")
    pki = config.home() / "pki"
    cacert = args.cacert or (str(pki / "etcd" / "ca.crt") if (pki / "etcd" / "ca.crt").exists() else None)
    if not cacert:
        return grpc.insecure_channel(endpoint)
    cert = args.cert or str(pki / "apiserver-etcd-client.crt")
    key = args.key or str(pki / "apiserver-etcd-client.key")
    try:
        creds = grpc.ssl_channel_credentials(pathlib.Path(cacert).read_bytes(), pathlib.Path(key).read_bytes(),
                                             pathlib.Path(cert).read_bytes())
    except OSError as e:
        raise CLIError(f"etcd TLS files: {e}") from None
    return grpc.secure_channel(endpoint, creds)


def _rpc_error(e) -> CLIError:
    return CLIError(f"etcd: {e.code().name}: {e.details()}")


def backup(args: argparse.Namespace) -> int:
    """Write an etcd snapshot to ``args.args[0]``; returns 0. Raises CLIError."""
    import grpc

    from proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    if len(args.args) != 1:
        raise CLIError("usage: kubeling cluster backup FILE")
    path = pathlib.Path(args.args[0])
    chunks = []
    try:
        with _etcd_channel(args) as ch:
            for resp in rpc_pb2_grpc.MaintenanceStub(ch).Snapshot(rpc_pb2.SnapshotRequest(), timeout=300):
                chunks.append(resp.blob)
    except grpc.RpcError as e:
        raise _rpc_error(e) from None
    data = b"".join(chunks)
    if len(data) < 32 or hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise CLIError("etcd snapshot failed its SHA-256 check")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data[:-32])
    os.replace(tmp, path)
    print(f"Snapshot saved at {path} ({len(data) - 32} bytes)")
    return 0


def snapshot_state(data: bytes, *, prefix: bytes) -> dict[bytes, bytes]:
    """``{key: value}`` of the live keys under ``prefix`` at a bbolt snapshot's last revision.

    Reads etcd's ``key`` bucket (revision -> mvccpb.KeyValue, a trailing ``t``
    marking a deletion) in revision order. Raises CLIError for a file that is not a snapshot."""
    from etcdlite.mvcc.boltdb import BoltFormatError, read_db
    from proto.mvccpb import kv_pb2

    try:
        buckets = read_db(data)
    except (BoltFormatError, ValueError) as e:
        raise CLIError(f"not an etcd snapshot: {e}") from None
    if b"key" not in buckets:
        raise CLIError("not an etcd snapshot: no key bucket")
    state: dict[bytes, bytes] = {}
    for rev, value in sorted(buckets[b"key"]):
        kv = kv_pb2.KeyValue.FromString(value)
        if not kv.key.startswith(prefix):
            continue
        if len(rev) == 18 and rev.endswith(b"t"):
            state.pop(kv.key, None)
        else:
            state[kv.key] = kv.value
    return state


def restore(args: argparse.Namespace) -> int:
    """Make the keys under ``--prefix`` equal to the snapshot ``args.args[0]``; returns 0. Raises CLIError."""
    if len(args.args) != 1:
        raise CLIError("usage: kubeling cluster restore FILE")
    try:
        data = pathlib.Path(args.args[0]).read_bytes()
    except OSError as e:
        raise CLIError(f"{args.args[0]}: {e.strerror}") from None
    prefix = args.prefix.encode()
    want = snapshot_state(data, prefix=prefix)
    paused = _pause_controllers()
    try:
        return _restore_keys(args, want, prefix)
    finally:
        _resume_controllers(paused)


def _pause_controllers() -> list[str]:
    """Stop the local cluster's controller-managers (through its supervisord) for the restore: with
    caches from before it, a namespace or garbage collector still busy deleting would delete what
    comes back (upstream's advice: stop the control plane while etcd is restored). Returns the
    programs stopped; [] when no launcher-supervised cluster runs here."""
    from deploy import supervise

    sup = supervise.Supervisor(config.home())
    if not sup.running():
        return []
    stopped = []
    for info in sup.rpc().getAllProcessInfo():
        if info["name"].startswith("kube-controller-manager") and info["statename"] == "RUNNING":
            sup.rpc().stopProcess(info["name"], True)
            stopped.append(info["name"])
    if stopped:
        print(f"paused {', '.join(stopped)} for the restore")
    return stopped


def _resume_controllers(names: list[str]) -> None:
    from deploy import supervise

    sup = supervise.Supervisor(config.home())
    for name in names:
        sup.start(name)
    if names:
        print(f"resumed {', '.join(names)}")


def _restore_keys(args: argparse.Namespace, want: dict[bytes, bytes], prefix: bytes) -> int:
    import grpc

    from proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    end = prefix[:-1] + bytes([prefix[-1] + 1])
    puts = deletes = 0
    try:
        with _etcd_channel(args) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            have = {x.key: x.value for x in kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=end),
                                                     timeout=120).kvs}
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v))
                   for k, v in sorted(want.items()) if have.get(k) != v]
            puts = len(ops)
            gone = [k for k in sorted(have) if k not in want]
            deletes = len(gone)
            ops += [rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k)) for k in gone]
            for i in range(0, len(ops), TXN_OPS):
                kv.Txn(rpc_pb2.TxnRequest(success=ops[i:i + TXN_OPS]), timeout=60)
    except grpc.RpcError as e:
        raise _rpc_error(e) from None
    print(f"restored {len(want)} keys under {args.prefix} from {args.args[0]}: {puts} written, {deletes} deleted")
    return 0


def status(args: argparse.Namespace) -> int:
    """The launcher's ``make status`` table; returns its exit code."""
    from deploy.__main__ import cmd_status
    from deploy.cluster import Cluster

    return cmd_status(Cluster())


def logs(args: argparse.Namespace) -> int:
    """Print (``-f``: and follow) ``.cluster/logs/COMPONENT.log``; returns 0. Raises CLIError."""
    if len(args.args) != 1:
        raise CLIError("usage: kubeling cluster logs COMPONENT [-f]")
    path = config.home() / "logs" / f"{args.args[0]}.log"
    if not path.exists():
        known = sorted(p.stem for p in (config.home() / "logs").glob("*.log"))
        raise CLIError(f"no log for {args.args[0]!r}; components: {', '.join(known) or 'none'}")
    with open(path, "rb") as f:
        sys.stdout.buffer.write(f.read())
        sys.stdout.flush()
        while args.follow:
            line = f.read()
            if line:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.3)
    return 0


def image(args: argparse.Namespace) -> int:
    """``image load IMAGE|TARBALL`` or ``image build-busybox``; returns 0. Raises CLIError."""
    from deploy import host

    if args.image_action == "build-busybox":
        built = host.ensure_busybox_image()
        print(f"{host.BUSYBOX_TAGS[0]} {'built' if built else 'already present'}")
        return 0
    if len(args.args) != 1:
        raise CLIError("usage: kubeling image load IMAGE|TARBALL")
    ref = args.args[0]
    if os.path.isfile(ref):
        r = subprocess.run(["docker", "load", "-i", ref], capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise CLIError(f"docker load: {(r.stderr or r.stdout).strip()}")
        print(r.stdout.strip())
        return 0
    if host.image_present(ref):
        print(f"{ref} is present in the Docker engine every node of this cluster uses")
        return 0
    raise CLIError(f"{ref}: neither a file nor an image of the local Docker engine "
                   f"(docker save/import it, or `kubeling image build-busybox`)")


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Register ``cluster`` and ``image`` on the CLI's subparsers."""
    p = sub.add_parser("cluster", parents=[common], help="backup, restore, status, logs of the local cluster")
    p.add_argument("action", choices=["backup", "restore", "status", "logs"])
    p.add_argument("--etcd-endpoints", default="", help="etcd client endpoint (default 127.0.0.1:2379)")
    p.add_argument("--cacert", default="", help="etcd CA (default: the cluster's pki/etcd/ca.crt if present)")
    p.add_argument("--cert", default="", help="etcd client certificate")
    p.add_argument("--key", default="", help="etcd client key")
    p.add_argument("--prefix", default="/registry/", help="restore: the keyspace to bring back")
    p.add_argument("-f", "--follow", action="store_true", help="logs: keep printing new lines")
    p.set_defaults(func=_run_cluster, args=[])
    p = sub.add_parser("image", parents=[common], help="local images without a registry")
    p.add_argument("image_action", choices=["load", "build-busybox"])
    p.set_defaults(func=_run_image, args=[])


async def _run_cluster(args: argparse.Namespace, factory) -> int:
    fn = {"backup": backup, "restore": restore, "status": status, "logs": logs}[args.action]
    return await asyncio.to_thread(fn, args)


async def _run_image(args: argparse.Namespace, factory) -> int:
    return await asyncio.to_thread(image, args)
