"""``python -m etcdlite``: run one etcd member (etcd's flags; see etcdlite.config).

Example:
    python -m etcdlite --name default --data-dir /tmp/e \\
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \\
        --listen-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380

A 3-member cluster: the same with ``--initial-cluster
n1=http://127.0.0.1:2380,n2=http://127.0.0.1:12380,n3=http://127.0.0.1:22380``
and each member's own --name / ports / --data-dir (etcd's flags; see README).

TLS as etcd: https:// URLs with --cert-file/--key-file/--trusted-ca-file/--client-cert-auth
(clients) and --peer-cert-file/--peer-key-file/--peer-trusted-ca-file/--peer-client-cert-auth
(peers), e.g. with kubeadm's files ``--cert-file pki/etcd/server.crt --key-file pki/etcd/server.key
--trusted-ca-file pki/etcd/ca.crt --client-cert-auth``.

SIGTERM / SIGINT stop the gRPC server, flush queued writes and close the WAL.
Startup problems (bad flags, a corrupt WAL, a port in use) print one line and
exit with status 1.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import sys

from etcdlite import config
from etcdlite import metrics as etcd_metrics
from etcdlite.server.etcdserver import EtcdServer
from etcdlite.tlsinfo import TLSError
from etcdlite.v3rpc.grpc import build_server
from etcdlite.wal.wal import WALCorruptError
from kubeling import daemon

log = logging.getLogger("etcdlite")

# Allocations between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 20_000


async def serve(cfg: config.ServerConfig, stop: asyncio.Event) -> None:
    """Boot the member, serve gRPC until ``stop`` is set or the log fails, shut down."""
    etcd = EtcdServer(cfg)
    await etcd.start()
    _tune_gc()
    server, ports = build_server(etcd)
    await server.start()
    metrics_servers = await etcd_metrics.serve(etcd, cfg.listen_metrics_urls)
    log.info("serving etcd v3 gRPC on %s (member %x, cluster %x, revision %d)",
             ", ".join(f"{h}:{p}" for (h, _), p in zip(cfg.listen_client_urls, ports)),
             etcd.member_id, etcd.cluster_id, etcd.store.current_rev)
    stopped = asyncio.ensure_future(etcd.stopped.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    stopping.cancel()
    failure = etcd.node.failure if etcd.node else None
    log.info("shutting down")
    await server.stop(grace=1.0)
    for m in metrics_servers:
        m.close()
    await etcd.stop()
    if failure is not None:
        raise SystemExit(f"etcdlite: Raft/WAL failure: {failure}")


def _tune_gc() -> None:
    # What exists after boot (modules, gRPC, the recovered store) mostly
    # lives as long as the process: freezing it keeps every later full
    # collection from walking it again (frozen objects are still freed by
    # reference counting). A larger young generation means fewer collections per
    # request; the store's objects are freed by reference counting, so this
    # delays only cyclic garbage. Both shorten the pauses that show in p99.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def _use_uvloop() -> None:
    # uvloop's event loop costs a fraction of asyncio's per callback, and a
    # member runs thousands of callbacks per second (gRPC calls, Raft Readies,
    # WAL thread hand-offs); grpc.aio runs on any asyncio-compatible loop.
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    ns = config.build_parser().parse_args(argv)
    daemon.setup_logging("etcdlite", verbose=ns.log_level == "debug")
    try:
        cfg = config.from_args(ns)
        _use_uvloop()
        daemon.run(lambda stop: serve(cfg, stop))
    except (config.ConfigError, TLSError, WALCorruptError, RuntimeError, OSError) as exc:
        print(f"etcdlite: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
