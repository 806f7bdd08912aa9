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

from etcdlite import metrics
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
from etcdlite.server.membership import (
    Member, MemberRemovedError, RaftCluster, fetch_from_peers, new_member_id,
)
from etcdlite.server.raftnode import NodeStoppedError, NoLeaderError, RaftNode, entry_from_wal
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
        self.cluster: Optional[RaftCluster] = None
        self.removed = False
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

    @property
    def members_path(self):
        """``<data-dir>/member/members.json``: the membership as of the last applied change."""
        return self.cfg.data_dir / "member" / "members.json"

    def _initial_cluster(self) -> RaftCluster:
        members = {self.cfg.member_ids[n]: Member(self.cfg.member_ids[n], n, list(urls))
                   for n, urls in self.cfg.initial_cluster.items()}
        return RaftCluster(self.cfg.cluster_id, members, self.members_path)

    def _recovered_initial_cluster(self, meta: dict) -> RaftCluster:
        """The membership of a data dir with a WAL but no members.json (written before that file
        existed): --initial-cluster, with this member under the ID its WAL records. IDs derived
        from today's flags can differ from the recorded one (e.g. peer URLs moved from http to
        https), and a member missing from its own cluster only talks to itself as a stranger."""
        cluster = self._initial_cluster()
        derived = self.cfg.member_ids.get(meta.get("name") or self.cfg.name)
        own = meta["member_id"]
        if derived is not None and derived != own and derived in cluster.members and own not in cluster.members:
            member = cluster.members.pop(derived)
            member.id = own
            cluster.members[own] = member
        return cluster

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
            self.cluster = RaftCluster.load(self.members_path) or self._recovered_initial_cluster(meta)
            self.cluster.path, self.cluster.cluster_id = self.members_path, self.cluster_id
            if self.member_id in self.cluster.removed:
                raise MemberRemovedError(
                    f"member {self.member_id:x} has been permanently removed from cluster "
                    f"{self.cluster_id:x}; remove {self.cfg.data_dir} and add it again "
                    "(etcdctl member add) to rejoin")
            if meta.get("name") != self.cfg.name:
                log.warning("data dir belongs to member %r, started as %r", meta.get("name"), self.cfg.name)
            snap = snapshotter.load()
            if snap is not None:
                storage.apply_snapshot(snap)
                mvcc_snapshot.restore(self.store, snap.data, self.lessor)
                applied = snap.metadata.index
            entries = [entry_from_wal(e.term, e.index, e.data)
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
            if self.cfg.initial_cluster_state == "existing":
                # Join a running cluster: it tells us our ID and the members.
                own = self.cfg.initial_advertise_peer_urls
                others = [u for n, urls in self.cfg.initial_cluster.items() if n != self.cfg.name
                          for u in urls if u not in own]
                self.cluster, self.member_id = fetch_from_peers(others, own, tls=self.cfg.peer_tls)
                self.cluster.path = self.members_path
                self.cluster_id = self.cluster.cluster_id
                self.cluster.members[self.member_id].name = self.cfg.name
                self._ids = Generator(self.member_id)
                log.info("joining cluster %x as member %x; members %s", self.cluster_id,
                         self.member_id, [format(i, "x") for i in self.cluster.ids()])
            else:
                self.cluster = self._initial_cluster()
            self.cluster.save()
            self.wal_dir.parent.mkdir(parents=True, exist_ok=True)
            meta = {"name": self.cfg.name, "member_id": self.member_id, "cluster_id": self.cluster_id,
                    "peer_urls": self.cfg.initial_advertise_peer_urls}
            self.wal = WAL.create(self.wal_dir, json.dumps(meta).encode())
            log.info("created new member %x in cluster %x (%s)", self.member_id, self.cluster_id,
                     self.cfg.initial_cluster_state)
        self.node = RaftNode(
            member_id=self.member_id, voters=self.cluster.ids(), wal=self.wal,
            snapshotter=snapshotter, storage=storage, applied=applied,
            heartbeat_ms=self.cfg.heartbeat_interval_ms, election_ms=self.cfg.election_timeout_ms,
            snapshot_count=self.cfg.snapshot_count, apply=self._apply,
            restore=self._restore_snapshot,
            snapshot_data=lambda: mvcc_snapshot.dump_async(self.store, self.lessor),
            on_leader=self._on_leader, apply_conf_change=self._apply_conf_change,
            restore_conf=lambda cs: self.cluster.keep_only(list(cs.voters)))

    def _restore_snapshot(self, data: bytes) -> None:
        """Replace the state machine with a leader's snapshot, then let open
        watches replay the revisions the jump skipped (no silent gap)."""
        mvcc_snapshot.restore(self.store, data, self.lessor)
        self.hub.resync()

    def _on_leader(self, lead: int, is_leader: bool) -> None:
        if lead:
            metrics.LEADER_CHANGES.inc()
        # Only the leader's lessor tracks expiry (etcd Promote/Demote).
        if is_leader and not self.lessor.primary:
            self.lessor.promote()
        elif not is_leader and self.lessor.primary:
            self.lessor.demote()

    async def start(self) -> None:
        """Boot (in a thread), start the peer transport, the Raft loop and lease expiry;
        waits (bounded) until the committed entries found on disk are re-applied."""
        await asyncio.to_thread(self.boot)
        others = {m.id: m.peer_urls for m in self.cluster.sorted() if m.id != self.member_id}
        if others:
            await self._start_transport(others)
        self._tasks = [asyncio.create_task(self._run_node(), name="etcdlite-node"),
                       asyncio.create_task(self._run_lessor(), name="etcdlite-lessor")]
        if self._boot_commit:
            try:
                async with asyncio.timeout(60):
                    await self.node.wait_applied(self._boot_commit)
            except TimeoutError:
                log.warning("re-applying the log up to %d is taking long; serving anyway",
                            self._boot_commit)

    async def _start_transport(self, peers: dict[int, list[str]]) -> None:
        self.transport = Transport(
            member_id=self.member_id, cluster_id=self.cluster_id, name=self.cfg.name,
            client_urls=self.cfg.advertise_client_urls, listen_urls=self.cfg.listen_peer_urls,
            peers=peers, cb=_TransportCallbacks(self), tls=self.cfg.peer_tls)
        await self.transport.start()
        self.node.attach_transport(self.transport)

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
        if self.node.leader == 0:
            await self._wait_leader()
        fut = asyncio.get_running_loop().create_future()
        self._waits[req.ID] = fut
        try:
            # One future per request: a drop or a stop fails it, the apply resolves it.
            self.node.submit(data, fut)
            async with asyncio.timeout(self.request_timeout):
                return await fut
        except NodeStoppedError:
            raise rpctypes.ErrStopped from None
        except NoLeaderError:
            metrics.PROPOSALS_FAILED.inc()
            raise rpctypes.ErrNoLeader from None
        except TimeoutError:
            metrics.PROPOSALS_FAILED.inc()
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
        """Every member, by ID; client URLs (and the name of a member added at
        runtime) of the others as they told us in the peer handshake (empty
        until then, as etcd shows an unstarted member)."""
        out = []
        for m in self.cluster.sorted() if self.cluster else []:
            name = m.name
            if m.id == self.member_id:
                client, name = self.cfg.advertise_client_urls, self.cfg.name
            else:
                client = self.transport.client_urls_of(m.id) if self.transport else []
                name = name or (self.transport.name_of(m.id) if self.transport else "")
            out.append(pb.Member(ID=m.id, name=name, peerURLs=m.peer_urls, clientURLs=client))
        return out

    # -- membership changes (server.go AddMember / RemoveMember / UpdateMember) --

    def _started(self) -> set[int]:
        """Members we are connected to, and ourselves (etcd's started/active count)."""
        started = {self.member_id}
        if self.transport is not None:
            started |= {i for i in self.cluster.members if self.transport.active(i)}
        return started & set(self.cluster.members)

    async def member_add(self, peer_urls: list[str]) -> pb.Member:
        """Add a voting member with ``peer_urls`` through the log; returns it
        (ID as etcd's NewMember with the current time, no name until it starts).

        Raises ErrMemberBadURLs, ErrPeerURLExist, ErrMemberExist,
        ErrMemberNotEnoughStarted (the new quorum would not be started),
        ErrNoLeader / ErrTimeout / ErrStopped.
        """
        urls = _check_peer_urls(peer_urls)
        if self.cluster.peer_url_owner(urls) is not None:
            raise rpctypes.ErrPeerURLExist
        n = len(self.cluster.members)
        if len(self._started()) < (n + 1) // 2 + 1:
            raise rpctypes.ErrMemberNotEnoughStarted
        m = Member(new_member_id(urls, "", now=time.time()), "", urls)
        if m.id in self.cluster.members or m.id in self.cluster.removed:
            raise rpctypes.ErrMemberExist
        await self._configure(raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=m.id,
                                                context=json.dumps(m.to_json()).encode()))
        return pb.Member(ID=m.id, peerURLs=m.peer_urls)

    async def member_remove(self, member_id: int) -> None:
        """Remove member ``member_id`` through the log. Raises ErrMemberNotFound,
        ErrMemberNotEnoughStarted (the members left would not reach a quorum),
        ErrNoLeader / ErrTimeout / ErrStopped."""
        if member_id not in self.cluster.members:
            raise rpctypes.ErrMemberNotFound
        n = len(self.cluster.members) - 1
        if n == 0 or len(self._started() - {member_id}) < n // 2 + 1:
            raise rpctypes.ErrMemberNotEnoughStarted
        await self._configure(raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=member_id))

    async def member_update(self, member_id: int, peer_urls: list[str]) -> None:
        """Change member ``member_id``'s peer URLs through the log. Raises
        ErrMemberNotFound, ErrMemberBadURLs, ErrPeerURLExist, ErrNoLeader / ErrTimeout."""
        if member_id not in self.cluster.members:
            raise rpctypes.ErrMemberNotFound
        urls = _check_peer_urls(peer_urls)
        owner = self.cluster.peer_url_owner(urls)
        if owner is not None and owner != member_id:
            raise rpctypes.ErrPeerURLExist
        m = Member(member_id, self.cluster.members[member_id].name, urls)
        await self._configure(raftpb.ConfChange(type=raftpb.ConfChangeUpdateNode, node_id=member_id,
                                                context=json.dumps(m.to_json()).encode()))

    async def _configure(self, cc: raftpb.ConfChange) -> None:
        """Propose ``cc`` and wait until this member applied it (etcd configure)."""
        if self.node is None or self.stopped.is_set():
            raise rpctypes.ErrStopped
        cc.id = self._ids.next()
        await self._wait_leader()
        fut = asyncio.get_running_loop().create_future()
        self._waits[cc.id] = fut
        try:
            async with asyncio.timeout(self.request_timeout):
                await self.node.propose_conf_change(cc)
                await fut
        except NodeStoppedError:
            raise rpctypes.ErrStopped from None
        except NoLeaderError:
            raise rpctypes.ErrNoLeader from None
        except TimeoutError:
            raise rpctypes.ErrTimeout from None
        finally:
            self._waits.pop(cc.id, None)

    def _apply_conf_change(self, cc: raftpb.ConfChange, cs: raftpb.ConfState) -> None:
        """A committed ConfChange reached the state machine (etcd applyConfChange):
        update the member list, the peer transport and members.json."""
        if cc.type in (raftpb.ConfChangeAddNode, raftpb.ConfChangeUpdateNode):
            m = Member.from_json(json.loads(cc.context))
            if cc.type == raftpb.ConfChangeAddNode:
                self.cluster.add(m)
            else:
                self.cluster.update(m.id, m.peer_urls)
            if m.id != self.member_id and m.id in self.cluster.members:
                if self.transport is None:
                    self._tasks.append(asyncio.ensure_future(
                        self._start_transport({m.id: m.peer_urls})))
                else:
                    self.transport.add_peer(m.id, m.peer_urls)
        elif cc.type == raftpb.ConfChangeRemoveNode:
            self.cluster.remove(cc.node_id)
            if cc.node_id == self.member_id:
                self.on_removed()
            elif self.transport is not None:
                self.transport.remove_peer(cc.node_id)
        try:
            self.cluster.save()
        except OSError as exc:
            log.error("saving the member list failed: %r", exc)
        fut = self._waits.pop(cc.id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def on_removed(self) -> None:
        """This member was removed (applied, or told by a peer): stop serving
        (etcd: "the member has been permanently removed from the cluster")."""
        if self.removed:
            return
        log.warning("member %x was removed from cluster %x; stopping", self.member_id,
                    self.cluster_id)
        self.removed = True
        if self.cluster is not None and self.member_id not in self.cluster.removed:
            self.cluster.remove(self.member_id)
            try:
                self.cluster.save()
            except OSError as exc:
                log.error("saving the member list failed: %r", exc)
        asyncio.get_running_loop().call_soon(self.node.stop)

    async def move_leader(self, target: int) -> None:
        """Hand leadership to ``target`` and wait (bounded) until it leads (etcd
        MoveLeader). Raises ErrNotLeader, ErrBadLeaderTransferee, ErrTimeoutLeaderTransfer."""
        node = self.node
        if node is None or not node.is_leader:
            raise rpctypes.ErrNotLeader
        if target not in self.cluster.members:
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


def _check_peer_urls(urls: list[str]) -> list[str]:
    """Sorted ``urls``; raises ErrMemberBadURLs unless each is http(s)://host:port."""
    from urllib.parse import urlsplit
    out = []
    for u in urls:
        try:
            parts = urlsplit(u)
            ok = parts.scheme in ("http", "https") and parts.hostname and parts.port
        except ValueError:
            ok = False
        if not ok:
            raise rpctypes.ErrMemberBadURLs
        out.append(u)
    if not out:
        raise rpctypes.ErrMemberBadURLs
    return sorted(out)


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

    def is_removed(self, member_id: int) -> bool:
        return self.s.cluster is not None and member_id in self.s.cluster.removed

    def on_removed(self) -> None:
        self.s.on_removed()

    def members_info(self) -> tuple[int, list]:
        """(cluster ID, [pb.Member]) for a joining member's Members call."""
        return self.s.cluster_id, self.s.members()

    def on_hello(self, member_id: int, last_index: int) -> None:
        self.s.node.peer_hello(member_id, last_index)
