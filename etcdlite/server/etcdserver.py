"""One etcd member: boot from the WAL, propose writes, serve reads, expire leases.

Mirrors etcd's EtcdServer (server/etcdserver/server.go, v3_server.go): writes
are InternalRaftRequests proposed to the log and answered once applied
(a registry of waiters keyed by request ID, upstream's wait.Wait); reads are
served from the applied state after a linearizable-read barrier; the primary
lessor's expired leases are revoked through the log.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Optional

from etcdlite.config import ConfigError, ServerConfig
from etcdlite.lease.lessor import MAX_LEASE_TTL, LeaseNotFoundError, Lessor
from etcdlite.mvcc.kvstore import KVStore
from etcdlite.mvcc.watchable_store import WatcherHub
from etcdlite.server.apply import Applier, is_txn_readonly
from etcdlite.server.idutil import Generator
from etcdlite.server.raftnode import NodeStoppedError, SingleNode
from etcdlite.v3rpc import rpctypes
from etcdlite.wal.wal import WAL, Entry
from proto.etcdserverpb import raft_internal_pb2 as internalpb
from proto.etcdserverpb import rpc_pb2 as pb

log = logging.getLogger(__name__)

VERSION = "3.4.23"
LEASE_CHECK_INTERVAL = 0.5
# Revoke at most this many expired leases per check (etcd rate-limits revokes too).
MAX_REVOKES_PER_CHECK = 500


class EtcdServer:
    """A member built from ``cfg``. Call ``start()`` (boot + background tasks),
    then the request methods, then ``stop()``.

    ``clock`` (monotonic seconds) drives lease expiry; tests inject their own.
    """

    def __init__(self, cfg: ServerConfig, *, clock=time.monotonic) -> None:
        if len(cfg.initial_cluster) != 1:
            raise ConfigError(f"--initial-cluster names {len(cfg.initial_cluster)} members; "
                              "etcdlite runs single-member clusters only (Raft is not built yet)")
        self.cfg = cfg
        self.member_id = cfg.member_id
        self.cluster_id = cfg.cluster_id
        self.lessor = Lessor(min_ttl=cfg.min_lease_ttl, clock=clock)
        self.store = KVStore(lessor=self.lessor)
        self.hub = WatcherHub(self.store)
        self.applier = Applier(self.store, self.lessor)
        self.node: Optional[SingleNode] = None
        self.wal: Optional[WAL] = None
        self._ids = Generator(self.member_id)
        self._waits: dict[int, asyncio.Future] = {}
        self._revoking: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self.stopped = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------

    @property
    def wal_dir(self):
        """``<data-dir>/member/wal`` (etcd's layout)."""
        return self.cfg.data_dir / "member" / "wal"

    def boot(self) -> None:
        """Create or replay the WAL (blocking; call before serving).

        Raises WALCorruptError when the WAL is damaged before its end.
        """
        term, last_index = 1, 0
        if WAL.exists(self.wal_dir):
            self.wal, contents = WAL.open(self.wal_dir)
            meta = json.loads(contents.metadata)
            if contents.repaired:
                log.warning("cut %d bytes of a torn WAL tail", contents.repaired)
            self.member_id, self.cluster_id = meta["member_id"], meta["cluster_id"]
            if meta.get("name") != self.cfg.name:
                log.warning("data dir belongs to member %r, started as %r", meta.get("name"), self.cfg.name)
            t0 = time.monotonic()
            for entry in contents.entries:
                self._apply(entry)
            if contents.entries:
                last_index = contents.entries[-1].index
            term = max(contents.hard_state.term, contents.entries[-1].term if contents.entries else 0) + 1
            log.info("replayed %d WAL entries in %.2fs: revision %d, index %d",
                     len(contents.entries), time.monotonic() - t0, self.store.current_rev, last_index)
        else:
            self.wal_dir.parent.mkdir(parents=True, exist_ok=True)
            meta = {"name": self.cfg.name, "member_id": self.member_id, "cluster_id": self.cluster_id,
                    "peer_urls": self.cfg.initial_advertise_peer_urls}
            self.wal = WAL.create(self.wal_dir, json.dumps(meta).encode())
            log.info("created new member %x in cluster %x", self.member_id, self.cluster_id)
        self.node = SingleNode(self.wal, term=term, last_index=last_index,
                               member_id=self.member_id, apply=self._apply)
        # Becoming leader of a new term is durable before serving (etcd persists
        # the HardState of each election).
        self.wal.save_sync([], self.node.hard_state())
        self.lessor.promote()

    async def start(self) -> None:
        """Boot (in a thread) and start the log and lease-expiry tasks."""
        await asyncio.to_thread(self.boot)
        self._tasks = [asyncio.create_task(self._run_node(), name="etcdlite-node"),
                       asyncio.create_task(self._run_lessor(), name="etcdlite-lessor")]

    async def stop(self) -> None:
        """Stop accepting writes, flush queued ones, close the WAL."""
        if self.node is not None:
            self.node.stop()
        for t in self._tasks[1:]:
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.wal is not None:
            self.wal.close()
        self.stopped.set()

    async def _run_node(self) -> None:
        try:
            await self.node.run()
        finally:
            # Whatever ended the log (stop or a WAL failure), the member is done.
            self.stopped.set()

    # -- proposals -----------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        req = internalpb.InternalRaftRequest.FromString(entry.data)
        try:
            result = self.applier.apply(req)
        except Exception as exc:  # a request's own error is its result
            result = exc
        fut = self._waits.pop(req.ID, None)
        if fut is not None and not fut.done():
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def propose(self, req: internalpb.InternalRaftRequest):
        """Propose ``req`` (its ID is assigned here) and return the applied response.

        Raises EtcdError (ErrStopped, ErrTimeout, request errors) or the
        store/lessor errors of the request.
        """
        if self.node is None:
            raise rpctypes.ErrStopped
        req.ID = req.header.ID = self._ids.next()
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise rpctypes.ErrRequestTooLarge
        fut = asyncio.get_running_loop().create_future()
        self._waits[req.ID] = fut
        try:
            async with asyncio.timeout(self.request_timeout):
                await self.node.propose(data)
                return await fut
        except NodeStoppedError:
            raise rpctypes.ErrStopped from None
        except TimeoutError:
            raise rpctypes.ErrTimeout from None
        finally:
            self._waits.pop(req.ID, None)

    @property
    def request_timeout(self) -> float:
        """Seconds a write may wait (etcd: 5 s + 2 election timeouts)."""
        return 5 + 2 * self.cfg.election_timeout_ms / 1000

    async def linearizable_read_notify(self) -> None:
        """Barrier before a linearizable read. With one member every acknowledged
        write is already applied, so there is nothing to wait for; the Raft
        node will do a ReadIndex round here."""
        if self.node is None or self.stopped.is_set():
            raise rpctypes.ErrStopped

    # -- requests (v3_server.go) ---------------------------------------------

    def header(self, rev: Optional[int] = None) -> pb.ResponseHeader:
        """A ResponseHeader with this member's IDs, term and ``rev`` (default: now)."""
        return pb.ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id,
                                 revision=self.store.current_rev if rev is None else rev,
                                 raft_term=self.node.term if self.node else 0)

    def _fill(self, resp, rev: int):
        resp.header.CopyFrom(self.header(rev))
        return resp

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        """Serve a Range from the applied state (after the read barrier unless serializable)."""
        if not r.serializable:
            await self.linearizable_read_notify()
        resp = self.applier.range(r)
        return self._fill(resp, self.store.current_rev)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        """Propose a Put."""
        resp = await self.propose(internalpb.InternalRaftRequest(put=r))
        return self._fill(resp, resp.header.revision)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        """Propose a DeleteRange."""
        resp = await self.propose(internalpb.InternalRaftRequest(delete_range=r))
        return self._fill(resp, resp.header.revision)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        """A read-only Txn is served like a Range; any other is proposed."""
        if is_txn_readonly(r):
            await self.linearizable_read_notify()
            resp = self.applier.txn(r)
        else:
            resp = await self.propose(internalpb.InternalRaftRequest(txn=r))
        return self._fill(resp, resp.header.revision)

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        """Propose a compaction (``physical`` needs no wait: compaction is immediate)."""
        resp = await self.propose(internalpb.InternalRaftRequest(compaction=r))
        return self._fill(resp, resp.header.revision)

    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        """Choose an ID if none was asked for, then propose the grant."""
        if r.TTL > MAX_LEASE_TTL:
            raise rpctypes.ErrLeaseTTLTooLarge
        if r.ID == 0:
            r.ID = self._ids.next() & ((1 << 63) - 1)
        resp = await self.propose(internalpb.InternalRaftRequest(lease_grant=r))
        return self._fill(resp, self.store.current_rev)

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        """Propose a revoke (deletes the lease's keys)."""
        resp = await self.propose(internalpb.InternalRaftRequest(lease_revoke=r))
        return self._fill(resp, resp.header.revision)

    def lease_renew(self, lease_id: int) -> int:
        """Keep-alive: the renewed TTL, or 0 when the lease is unknown or expired
        (what etcd answers in LeaseKeepAliveResponse)."""
        try:
            return self.lessor.renew(lease_id)
        except Exception:
            return 0

    def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        """Remaining TTL (-1 if the lease does not exist), granted TTL, keys."""
        resp = pb.LeaseTimeToLiveResponse(header=self.header(), ID=r.ID)
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            resp.TTL = -1
            return resp
        resp.TTL = lease.remaining(self.lessor.clock())
        resp.grantedTTL = lease.ttl
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return resp

    def lease_leases(self) -> pb.LeaseLeasesResponse:
        """Every lease ID."""
        return pb.LeaseLeasesResponse(header=self.header(),
                                      leases=[pb.LeaseStatus(ID=i) for i in sorted(self.lessor.leases)])

    # -- cluster and maintenance ----------------------------------------------

    def members(self) -> list[pb.Member]:
        """The members (one, for now)."""
        return [pb.Member(ID=self.member_id, name=self.cfg.name,
                          peerURLs=self.cfg.initial_advertise_peer_urls,
                          clientURLs=self.cfg.advertise_client_urls)]

    def status(self) -> pb.StatusResponse:
        """Maintenance Status: version, sizes, leader, Raft indexes."""
        size = self.wal.size() if self.wal else 0
        node = self.node
        return pb.StatusResponse(header=self.header(), version=VERSION, dbSize=size, dbSizeInUse=size,
                                 leader=node.leader if node else 0,
                                 raftIndex=node.last_index if node else 0,
                                 raftTerm=node.term if node else 0,
                                 raftAppliedIndex=node.applied_index if node else 0)

    # -- lease expiry ----------------------------------------------------------

    async def _run_lessor(self) -> None:
        while True:
            await asyncio.sleep(LEASE_CHECK_INTERVAL)
            expired = [le.id for le in self.lessor.expired() if le.id not in self._revoking]
            expired = expired[:MAX_REVOKES_PER_CHECK]
            if not expired:
                continue
            self._revoking.update(expired)
            results = await asyncio.gather(
                *(self.lease_revoke(pb.LeaseRevokeRequest(ID=i)) for i in expired),
                return_exceptions=True)
            for lease_id, res in zip(expired, results):
                self._revoking.discard(lease_id)
                if isinstance(res, Exception) and not isinstance(res, LeaseNotFoundError):
                    log.warning("revoking expired lease %x failed: %r", lease_id, res)
