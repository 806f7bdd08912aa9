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

from etcdlite.config import ServerConfig
from etcdlite.lease.lessor import MAX_LEASE_TTL, LeaseNotFoundError, Lessor
from etcdlite.mvcc.kvstore import KVStore
from etcdlite.mvcc.watchable_store import WatcherHub
from etcdlite.server.apply import Applier, is_txn_readonly
from etcdlite.server.idutil import Generator
from etcdlite.mvcc import boltdb
from etcdlite.mvcc import snapshot as mvcc_snapshot
from etcdlite.raft import MemoryStorage
from etcdlite.rafthttp.transport import Transport
from etcdlite.server.raftnode import NodeStoppedError, NoLeaderError, RaftNode
from etcdlite.snap.snapshotter import Snapshotter
from etcdlite.v3rpc import rpctypes
from etcdlite.wal.wal import WAL, WALCorruptError
from proto.raftpb import raft_pb2 as raftpb
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
        self.cfg = cfg
        self.member_id = cfg.member_id
        self.cluster_id = cfg.cluster_id
        self.lessor = Lessor(min_ttl=cfg.min_lease_ttl, clock=clock)
        self.store = KVStore(lessor=self.lessor)
        self.hub = WatcherHub(self.store)
        self.applier = Applier(self.store, self.lessor)
        self.node: Optional[RaftNode] = None
        self.wal: Optional[WAL] = None
        self.transport: Optional[Transport] = None
        self._ids = Generator(self.member_id)
        self._waits: dict[int, asyncio.Future] = {}
        self._revoking: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self._boot_commit = 0
        self.stopped = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------

    @property
    def wal_dir(self):
        """``<data-dir>/member/wal`` (etcd's layout)."""
        return self.cfg.data_dir / "member" / "wal"

    @property
    def snap_dir(self):
        """``<data-dir>/member/snap`` (etcd's layout)."""
        return self.cfg.data_dir / "member" / "snap"

    def boot(self) -> None:
        """Rebuild the Raft log from the newest snapshot + the WAL, or create a
        new member (blocking; call before serving). Committed entries after the
        snapshot are re-applied by the Raft loop.

        Raises WALCorruptError when the WAL is damaged before its end.
        """
        storage = MemoryStorage()
        snapshotter = Snapshotter(self.snap_dir)
        applied = 0
        if WAL.exists(self.wal_dir):
            self.wal, contents = WAL.open(self.wal_dir)
            meta = json.loads(contents.metadata)
            if contents.repaired:
                log.warning("cut %d bytes of a torn WAL tail", contents.repaired)
            self.member_id, self.cluster_id = meta["member_id"], meta["cluster_id"]
            if meta.get("name") != self.cfg.name:
                log.warning("data dir belongs to member %r, started as %r", meta.get("name"), self.cfg.name)
            snap = snapshotter.load()
            if snap is not None:
                storage.apply_snapshot(snap)
                mvcc_snapshot.restore(self.store, snap.data, self.lessor)
                applied = snap.metadata.index
            entries = [raftpb.Entry(Term=e.term, Index=e.index, Data=e.data)
                       for e in contents.entries if e.index > applied]
            if entries and entries[0].Index != applied + 1:
                raise WALCorruptError(f"WAL in {self.wal_dir} starts at entry {entries[0].Index} "
                                      f"but the newest snapshot ends at {applied}; refusing to start")
            if entries:
                storage.append(entries)
            hs = contents.hard_state
            commit = min(max(hs.commit, applied), storage.last_index())
            storage.set_hard_state(raftpb.HardState(term=hs.term, vote=hs.vote, commit=commit))
            self._boot_commit = commit
            log.info("recovered: snapshot at %d, %d WAL entries after it, commit %d, term %d",
                     applied, len(entries), commit, hs.term)
        else:
            self.wal_dir.parent.mkdir(parents=True, exist_ok=True)
            meta = {"name": self.cfg.name, "member_id": self.member_id, "cluster_id": self.cluster_id,
                    "peer_urls": self.cfg.initial_advertise_peer_urls}
            self.wal = WAL.create(self.wal_dir, json.dumps(meta).encode())
            log.info("created new member %x in cluster %x (%s)", self.member_id, self.cluster_id,
                     self.cfg.initial_cluster_state)
        self.node = RaftNode(
            member_id=self.member_id, voters=list(self.cfg.member_ids.values()), wal=self.wal,
            snapshotter=snapshotter, storage=storage, applied=applied,
            heartbeat_ms=self.cfg.heartbeat_interval_ms, election_ms=self.cfg.election_timeout_ms,
            snapshot_count=self.cfg.snapshot_count, apply=self._apply,
            restore=lambda data: mvcc_snapshot.restore(self.store, data, self.lessor),
            snapshot_data=lambda: mvcc_snapshot.dump(self.store, self.lessor),
            on_leader=self._on_leader)

    def _on_leader(self, lead: int, is_leader: bool) -> None:
        # Only the leader's lessor tracks expiry (etcd Promote/Demote).
        if is_leader and not self.lessor.primary:
            self.lessor.promote()
        elif not is_leader and self.lessor.primary:
            self.lessor.demote()

    async def start(self) -> None:
        """Boot (in a thread), start the peer transport, the Raft loop and lease expiry;
        waits (bounded) until the committed entries found on disk are re-applied."""
        await asyncio.to_thread(self.boot)
        others = {self.cfg.member_ids[n]: urls for n, urls in self.cfg.initial_cluster.items()
                  if n != self.cfg.name}
        if others:
            node = self.node
            self.transport = Transport(
                member_id=self.member_id, cluster_id=self.cluster_id, name=self.cfg.name,
                client_urls=self.cfg.advertise_client_urls, listen_urls=self.cfg.listen_peer_urls,
                peers=others, cb=_TransportCallbacks(self))
            await self.transport.start()
            node.attach_transport(self.transport)
        self._tasks = [asyncio.create_task(self._run_node(), name="etcdlite-node"),
                       asyncio.create_task(self._run_lessor(), name="etcdlite-lessor")]
        if self._boot_commit:
            try:
                async with asyncio.timeout(60):
                    await self.node.wait_applied(self._boot_commit)
            except TimeoutError:
                log.warning("re-applying the log up to %d is taking long; serving anyway",
                            self._boot_commit)

    async def stop(self) -> None:
        """Stop the Raft loop and peer transport, close the WAL."""
        if self.node is not None:
            self.node.stop()
        for t in self._tasks[1:]:
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.stop()
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

    def _apply(self, data: bytes) -> None:
        req = internalpb.InternalRaftRequest.FromString(data)
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

    async def _wait_leader(self) -> None:
        """Wait up to one election timeout for a leader; raises ErrNoLeader."""
        deadline = asyncio.get_running_loop().time() + 2 * self.cfg.election_timeout_ms / 1000
        while self.node.leader == 0:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise rpctypes.ErrNoLeader
            try:
                async with asyncio.timeout(left):
                    await self.node.leader_changed.wait()
            except TimeoutError:
                raise rpctypes.ErrNoLeader from None

    async def propose(self, req: internalpb.InternalRaftRequest):
        """Propose ``req`` (its ID is assigned here) and return the response once
        the entry is applied on this member.

        Raises EtcdError (ErrStopped, ErrNoLeader, ErrTimeout, request errors)
        or the store/lessor errors of the request.
        """
        if self.node is None or self.stopped.is_set():
            raise rpctypes.ErrStopped
        req.ID = req.header.ID = self._ids.next()
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise rpctypes.ErrRequestTooLarge
        await self._wait_leader()
        fut = asyncio.get_running_loop().create_future()
        self._waits[req.ID] = fut
        try:
            async with asyncio.timeout(self.request_timeout):
                await self.node.propose(data)
                return await fut
        except NodeStoppedError:
            raise rpctypes.ErrStopped from None
        except NoLeaderError:
            raise rpctypes.ErrNoLeader from None
        except TimeoutError:
            raise rpctypes.ErrTimeout from None
        finally:
            self._waits.pop(req.ID, None)

    @property
    def request_timeout(self) -> float:
        """Seconds a write may wait (etcd: 5 s + 2 election timeouts)."""
        return 5 + 2 * self.cfg.election_timeout_ms / 1000

    async def linearizable_read_notify(self) -> None:
        """Barrier before a linearizable read (etcd linearizableReadNotify): a
        ReadIndex round confirms leadership and gives the commit index; then wait
        until it is applied here. Rounds that get no answer in 0.5 s are retried
        (a leader change loses them) until the request timeout.

        Raises ErrStopped, ErrNoLeader, ErrTimeout.
        """
        if self.node is None or self.stopped.is_set():
            raise rpctypes.ErrStopped
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        while True:
            await self._wait_leader()
            try:
                async with asyncio.timeout(0.5):
                    index = await self.node.read_index()
                break
            except TimeoutError:
                if loop.time() >= deadline:
                    raise rpctypes.ErrTimeout from None
            except NodeStoppedError:
                raise rpctypes.ErrStopped from None
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self.node.wait_applied(index)
        except TimeoutError:
            raise rpctypes.ErrTimeout from None
        except NodeStoppedError:
            raise rpctypes.ErrStopped from None

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

    def local_lease_renew(self, lease_id: int) -> tuple[int, int]:
        """Renew on this (leader's) lessor: (ttl, remaining); ttl 0 if gone."""
        try:
            ttl = self.lessor.renew(lease_id)
        except Exception:
            return 0, 0
        return ttl, ttl

    def local_lease_remaining(self, lease_id: int) -> tuple[int, int]:
        """(granted ttl, remaining seconds) on this lessor; (-1, -1) if unknown."""
        lease = self.lessor.lookup(lease_id)
        if lease is None:
            return -1, -1
        return lease.ttl, lease.remaining(self.lessor.clock())

    async def _lease_at_leader(self, lease_id: int, *, renew: bool) -> tuple[int, int]:
        # The leader's lessor owns expiry (etcd forwards keep-alives to the
        # leader over the peer transport, LeaseRenew in v3_server.go).
        node = self.node
        if node is None or node.is_leader or self.transport is None:
            return (self.local_lease_renew(lease_id) if renew
                    else self.local_lease_remaining(lease_id))
        await self._wait_leader()
        try:
            return await self.transport.lease_call(node.leader, lease_id, renew=renew)
        except Exception as exc:  # noqa: BLE001 - any transport failure
            log.warning("forwarding lease call to leader %x failed: %r", node.leader, exc)
            raise rpctypes.ErrNoLeader from None

    async def lease_renew(self, lease_id: int) -> int:
        """Keep-alive: the renewed TTL, or 0 when the lease is unknown or expired
        (what etcd answers in LeaseKeepAliveResponse). Raises ErrNoLeader."""
        ttl, _ = await self._lease_at_leader(lease_id, renew=True)
        return ttl

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        """Remaining TTL (-1 if the lease does not exist), granted TTL, keys."""
        resp = pb.LeaseTimeToLiveResponse(header=self.header(), ID=r.ID)
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            resp.TTL = -1
            return resp
        _, remaining = await self._lease_at_leader(r.ID, renew=False)
        resp.TTL = remaining if remaining >= 0 else lease.ttl
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
        """Every member of --initial-cluster, by ID; client URLs of the others as
        they told us in the peer handshake (empty until then, as etcd shows an
        unstarted member)."""
        out = []
        for name, urls in self.cfg.initial_cluster.items():
            mid = self.cfg.member_ids[name]
            if mid == self.member_id:
                client = self.cfg.advertise_client_urls
            else:
                client = self.transport.client_urls_of(mid) if self.transport else []
            out.append(pb.Member(ID=mid, name=name, peerURLs=urls, clientURLs=client))
        return sorted(out, key=lambda m: m.ID)

    async def move_leader(self, target: int) -> None:
        """Hand leadership to ``target`` and wait (bounded) until it leads (etcd
        MoveLeader). Raises ErrNotLeader, ErrBadLeaderTransferee, ErrTimeoutLeaderTransfer."""
        node = self.node
        if node is None or not node.is_leader:
            raise rpctypes.ErrNotLeader
        if target not in self.cfg.member_ids.values():
            raise rpctypes.ErrBadLeaderTransferee
        if target == self.member_id:
            return
        node.transfer_leadership(target)
        try:
            async with asyncio.timeout(self.request_timeout):
                while node.leader != target:
                    await node.leader_changed.wait()
        except TimeoutError:
            raise rpctypes.ErrTimeoutLeaderTransfer from None

    def backend_snapshot(self) -> bytes:
        """The store as etcd's backend file (bbolt format), for Maintenance.Snapshot."""
        applied = self.node.applied_index if self.node else 0
        return boltdb.write_db(boltdb.buckets_of(self.store, self.lessor, consistent_index=applied))

    def status(self) -> pb.StatusResponse:
        """Maintenance Status: version, sizes, leader, Raft indexes."""
        size = self.wal.size() if self.wal else 0
        node = self.node
        return pb.StatusResponse(header=self.header(), version=VERSION, dbSize=size, dbSizeInUse=size,
                                 leader=node.leader if node else 0,
                                 raftIndex=node.commit_index if node else 0,
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


class _TransportCallbacks:
    """Routes the peer transport's events into the member (see rafthttp.Callbacks)."""

    def __init__(self, server: EtcdServer) -> None:
        self.s = server

    def on_message(self, msg) -> None:
        self.s.node.step(msg)

    def on_unreachable(self, member_id: int) -> None:
        self.s.node.report_unreachable(member_id)

    def on_snapshot_status(self, member_id: int, ok: bool) -> None:
        self.s.node.report_snapshot(member_id, ok)

    async def lease_renew(self, lease_id: int) -> tuple[int, int]:
        return self.s.local_lease_renew(lease_id)

    async def lease_remaining(self, lease_id: int) -> tuple[int, int]:
        return self.s.local_lease_remaining(lease_id)

    def last_index(self) -> int:
        return self.s.node.last_index

    def on_hello(self, member_id: int, last_index: int) -> None:
        self.s.node.peer_hello(member_id, last_index)
