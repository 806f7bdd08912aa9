"""Prometheus metrics of an etcdlite member under etcd's own names, and the --listen-metrics-urls server.

Why a module of its own: most of etcd's server metrics are readings of state
the member already keeps (leader, commit and applied index, key count, WAL
size), so they are collected at scrape time from the EtcdServer; only the
events that leave no state behind (a failed proposal, a leader change, a WAL
fsync, bytes to and from peers) are counted by one-line hooks where they
happen. etcd's metric names, types and buckets (server/etcdserver/metrics.go,
server/storage/wal/metrics.go, server/storage/mvcc/metrics.go,
server/etcdserver/api/rafthttp/metrics.go) are kept so dashboards written for
etcd work: note that etcd_server_proposals_committed_total and
_applied_total are gauges in etcd too (they read the Raft indexes).

The metrics endpoint is a tiny asyncio HTTP server (GET /metrics and
/health, as etcd's --listen-metrics-urls listener); etcd also serves /metrics
on its client port via cmux, which a gRPC-only listener here does not.
"""
from __future__ import annotations

import asyncio
import json
import logging
import weakref

import prometheus_client
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

# etcd's buckets: prometheus.ExponentialBuckets(0.001, 2, 14), 1 ms .. 8 s.
DISK_BUCKETS = tuple(0.001 * 2 ** i for i in range(14))

PROPOSALS_FAILED = prometheus_client.Counter(
    "etcd_server_proposals_failed_total", "The total number of failed proposals seen.")
LEADER_CHANGES = prometheus_client.Counter(
    "etcd_server_leader_changes_seen_total", "The number of leader changes seen.")
WAL_FSYNC = prometheus_client.Histogram(
    "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.",
    buckets=DISK_BUCKETS)
WAL_WRITE_BYTES = prometheus_client.Counter(
    "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")
SNAPSHOT_SAVE = prometheus_client.Histogram(
    "etcd_debugging_snap_save_total_duration_seconds", "The total latency distributions of save called by "
    "snapshot.", buckets=DISK_BUCKETS)
PEER_SENT = prometheus_client.Counter(
    "etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", ["To"])
PEER_RECEIVED = prometheus_client.Counter(
    "etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", ["From"])


class ServerCollector:
    """Scrape-time readings of the member last registered with ``watch(server)`` (an EtcdServer).

    Mirrors etcd's GaugeFuncs: etcd_server_has_leader, etcd_server_is_leader,
    etcd_server_proposals_committed_total / _applied_total / _pending, etcd_server_id,
    etcd_mvcc_db_total_size_in_bytes (the WAL's size: etcdlite's database is its log, as its Status
    reports), etcd_debugging_mvcc_keys_total, etcd_debugging_mvcc_current_revision,
    etcd_debugging_mvcc_compact_revision.
    """

    def __init__(self) -> None:
        self._server = None

    def watch(self, server) -> None:
        """Read ``server`` from now on (a weak reference: tests boot many members in one process)."""
        self._server = weakref.ref(server)

    def describe(self):
        return []  # collected lazily; nothing to check for duplicates at registration

    def collect(self):
        server = self._server() if self._server is not None else None
        node = getattr(server, "node", None) if server is not None else None
        lead = node.leader if node is not None else 0

        def gauge(name, doc, value, labels=None, label_values=None):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(label_values or [], value)
            return g

        yield gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                    1 if lead else 0)
        yield gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                    1 if node is not None and node.is_leader else 0)
        yield gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
                    node.commit_index if node is not None else 0)
        yield gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
                    node.applied_index if node is not None else 0)
        yield gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                    len(getattr(server, "_waits", ())) if server is not None else 0)
        if server is None:
            return
        yield gauge("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label "
                    "with current ID.", 1, ["server_id"], [format(server.member_id, "x")])
        wal = getattr(server, "wal", None)
        yield gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically "
                    "allocated in bytes.", wal.size() if wal is not None else 0)
        store = server.store
        yield gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", len(store.index))
        yield gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", store.current_rev)
        yield gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                    store.compact_rev)


SERVER = ServerCollector()
prometheus_client.REGISTRY.register(SERVER)


def peer_label(member_id: int) -> str:
    """A peer's label value: its member ID in hex, as etcd's To/From labels."""
    return format(member_id, "x")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, healthy) -> None:
    try:
        async with asyncio.timeout(10):
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
        parts = line.decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            status, ctype, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        elif path == "/metrics":
            status, ctype, body = "200 OK", prometheus_client.CONTENT_TYPE_LATEST, prometheus_client.generate_latest()
        elif path == "/health":
            ok = healthy()
            status = "200 OK" if ok else "503 Service Unavailable"
            ctype, body = "application/json", json.dumps(
                {"health": "true" if ok else "false", "reason": "" if ok else "RAFT NO LEADER"}).encode()
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"404 page not found\n"
        head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        writer.write(head if parts and parts[0] == "HEAD" else head + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(server, listen: list[tuple[str, int]]) -> list[asyncio.AbstractServer]:
    """Watch ``server`` (an EtcdServer) and serve /metrics and /health on each (host, port) of
    ``listen`` (etcd's --listen-metrics-urls, http only). Returns the started servers; close them
    on shutdown. Raises OSError when a port cannot be bound."""
    SERVER.watch(server)

    def healthy() -> bool:
        node = getattr(server, "node", None)
        return node is not None and node.leader != 0

    servers = []
    for host, port in listen:
        servers.append(await asyncio.start_server(lambda r, w: _handle(r, w, healthy), host, port))
        log.info("serving metrics on http://%s:%d/metrics", host, port)
    return servers
