"""The Raft-driven log between the gRPC services and the state machine.

Mirrors etcd's raftNode (server/etcdserver/raft.go): one task owns the Raft
core (etcdlite.raft.RawNode) and runs its Ready loop — feed ticks, peer
messages and proposals in; take a Ready out; persist its entries and hard
state to the WAL (one fdatasync per Ready when Raft asks for it, so
concurrent proposals share it: group commit); save an incoming snapshot;
send its messages over the peer transport; apply committed entries; advance.
A follower (or candidate) persists before it sends anything (votes and
append responses promise durability) and applies already-durable committed
entries while its fdatasync runs; a leader hands its own write to the WAL
thread and goes on (its copy counts toward the quorum once durable: Raft
thesis 10.2.1), keeping one batch of proposals in flight at a time.
Every ``snapshot_count`` applied entries the state machine is captured and
snapshotted to ``member/snap`` in the background, the in-memory log
compacted and old WAL segments released.

Inputs arrive from other tasks (gRPC handlers, the transport) but are only
queued there; the RawNode is touched by the run task alone, between Readies.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from typing import Awaitable, Callable, Optional

from etcdlite import metrics
from etcdlite.raft import NONE, Config, MemoryStorage, ProposalDropped, RawNode, StateType
from etcdlite.snap.snapshotter import Snapshotter
from etcdlite.wal.wal import WAL, Entry, HardState
from proto.raftpb import raft_pb2 as raftpb

log = logging.getLogger(__name__)

# Entries kept in memory behind a snapshot so slow followers catch up without
# one (etcd SnapshotCatchUpEntries), capped by the snapshot count.
SNAPSHOT_CATCHUP_ENTRIES = 5000


# WAL records carry no entry type: a conf change's data is stored behind this
# byte (never the first byte of an InternalRaftRequest, whose field tags are > 0).
CONF_CHANGE_MARK = b"\x00"


def wal_data(e: raftpb.Entry) -> bytes:
    """The WAL payload of entry ``e`` (its data; conf changes marked)."""
    return CONF_CHANGE_MARK + e.Data if e.Type == raftpb.EntryConfChange else e.Data


def entry_from_wal(term: int, index: int, data: bytes) -> raftpb.Entry:
    """The raftpb.Entry of a WAL record written from ``wal_data``."""
    if data[:1] == CONF_CHANGE_MARK:
        return raftpb.Entry(Term=term, Index=index, Type=raftpb.EntryConfChange, Data=data[1:])
    return raftpb.Entry(Term=term, Index=index, Data=data)


class NodeStoppedError(Exception):
    """The node stopped (or its WAL failed) before the proposal was handed to Raft."""


class NoLeaderError(Exception):
    """Raft dropped the proposal: no leader is known (or a transfer is in progress)."""


class RaftNode:
    """One member's Raft node.

    ``storage`` is the MemoryStorage rebuilt from snapshot + WAL, ``applied``
    the index already reflected in the state machine, ``voters`` all member
    IDs. Callbacks (all on the event loop): ``apply(data)`` for each committed
    normal entry with data; ``restore(data)`` replaces the state machine from a
    snapshot's bytes; ``snapshot_data()`` captures it at the call and returns
    an awaitable of its bytes (serialized in the background); ``on_leader(lead,
    is_leader)`` after every leadership change. ``transport`` is attached with
    ``attach_transport`` before ``run``.
    """

    def __init__(self, *, member_id: int, voters: list[int], wal: WAL, snapshotter: Snapshotter,
                 storage: MemoryStorage, applied: int, heartbeat_ms: int, election_ms: int,
                 snapshot_count: int, apply: Callable[[bytes], None],
                 restore: Callable[[bytes], None],
                 snapshot_data: Callable[[], Awaitable[bytes]],
                 on_leader: Callable[[int, bool], None],
                 apply_conf_change: Optional[Callable[[raftpb.ConfChange, raftpb.ConfState], None]] = None,
                 restore_conf: Optional[Callable[[raftpb.ConfState], None]] = None) -> None:
        self.member_id = member_id
        self.voters = sorted(voters)
        self.wal = wal
        self.snapshotter = snapshotter
        self.storage = storage
        self.applied_index = applied
        self.heartbeat = heartbeat_ms / 1000
        self.snapshot_count = max(1, snapshot_count)
        self._apply, self._restore, self._snapshot_data = apply, restore, snapshot_data
        self._on_leader = on_leader
        self._apply_conf_change = apply_conf_change
        self._restore_conf = restore_conf
        hs, _ = storage.initial_state()
        self.rn = RawNode(Config(id=member_id, peers=self.voters, storage=storage,
                                 election_tick=max(2, election_ms // heartbeat_ms), heartbeat_tick=1,
                                 applied=applied, pre_vote=True, check_quorum=True,
                                 async_leader_persist=True))
        self.snap_index = storage.snapshot().metadata.index
        self.lead = NONE
        self.term = hs.term
        self.transport = None
        self.failure: Optional[BaseException] = None
        self._stopped = False
        self._wake = asyncio.Event()
        self._ticks = 0
        self._inbox: list[raftpb.Message] = []
        self._reports: list[tuple[int, Optional[bool]]] = []
        self._hellos: list[tuple[int, int]] = []
        self._transfers: list[int] = []
        # (data, future, acked): an acked future resolves once Raft accepted the
        # entry; any other only learns of a drop (its owner awaits the apply).
        self._proposals: list[tuple[bytes, asyncio.Future, bool]] = []
        self._conf_proposals: list[tuple[raftpb.ConfChange, asyncio.Future]] = []
        self._reads: list[asyncio.Future] = []
        self._read_ctx: dict[bytes, list[asyncio.Future]] = {}
        self._applied_waits: list[tuple[int, asyncio.Future]] = []
        self.leader_changed = asyncio.Event()
        self._ctx_seq = 0
        # The newest background WAL write (leader only), the (index, term)
        # reports of finished ones, and a failure of one (ends the node).
        self._wal_pending: Optional[asyncio.Future] = None
        self._persisted: list[tuple[int, int]] = []
        self._wal_error: Optional[BaseException] = None
        self._saved_term_vote = (hs.term, hs.vote)
        self._batches: collections.deque[int] = collections.deque()
        self._snapshotting: Optional[asyncio.Task] = None

    # -- inputs (any task) ------------------------------------------------------

    def attach_transport(self, transport) -> None:
        """Use ``transport`` (etcdlite.rafthttp.Transport) for outgoing messages."""
        self.transport = transport

    @property
    def leader(self) -> int:
        """The member ID this node believes leads, 0 if none."""
        return self.lead

    @property
    def is_leader(self) -> bool:
        """Whether this member leads."""
        return self.lead == self.member_id

    @property
    def last_index(self) -> int:
        """Index of the last entry in the log."""
        return self.storage.last_index()

    @property
    def commit_index(self) -> int:
        """Raft's commit index."""
        return self.rn.status().commit

    def step(self, msg: raftpb.Message) -> None:
        """Queue a message received from a peer."""
        self._inbox.append(msg)
        self._wake.set()

    def report_unreachable(self, member_id: int) -> None:
        """Queue a report that a message to ``member_id`` was dropped."""
        self._reports.append((member_id, None))
        self._wake.set()

    def peer_hello(self, member_id: int, last_index: int) -> None:
        """A peer (re)connected reporting ``last_index`` as the end of its log."""
        self._hellos.append((member_id, last_index))
        self._wake.set()

    def report_snapshot(self, member_id: int, ok: bool) -> None:
        """Queue a report of a snapshot delivery to ``member_id``."""
        self._reports.append((member_id, ok))
        self._wake.set()

    async def propose(self, data: bytes) -> None:
        """Hand ``data`` to Raft; returns once Raft accepted (not committed) it.

        Raises NodeStoppedError, NoLeaderError (Raft dropped it).
        """
        if self._stopped:
            raise NodeStoppedError()
        fut = asyncio.get_running_loop().create_future()
        self._proposals.append((data, fut, True))
        self._wake.set()
        await fut

    def submit(self, data: bytes, fut: asyncio.Future) -> None:
        """Queue ``data`` for Raft without waiting for it to be accepted; if Raft
        drops it ``fut`` fails with NoLeaderError (and with NodeStoppedError if
        the node stops first). The caller resolves ``fut`` when the entry applies.

        Raises NodeStoppedError if the node already stopped.
        """
        if self._stopped:
            raise NodeStoppedError()
        self._proposals.append((data, fut, False))
        self._wake.set()

    async def propose_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Hand a membership change to Raft (an EntryConfChange entry); returns
        once accepted, not applied. Raises NodeStoppedError, NoLeaderError."""
        if self._stopped:
            raise NodeStoppedError()
        fut = asyncio.get_running_loop().create_future()
        self._conf_proposals.append((cc, fut))
        self._wake.set()
        await fut

    async def read_index(self) -> int:
        """One ReadIndex round: the commit index a linearizable read must wait for.

        Concurrent callers share a round. Never returns if leadership cannot be
        confirmed; callers put a timeout around it and retry.
        """
        if self._stopped:
            raise NodeStoppedError()
        fut = asyncio.get_running_loop().create_future()
        self._reads.append(fut)
        self._wake.set()
        return await fut

    async def wait_applied(self, index: int) -> None:
        """Return once entries up to ``index`` are applied."""
        if self.applied_index >= index:
            return
        fut = asyncio.get_running_loop().create_future()
        self._applied_waits.append((index, fut))
        await fut

    def transfer_leadership(self, to: int) -> None:
        """Queue a leadership transfer to member ``to`` (only a leader acts on it)."""
        self._transfers.append(to)
        self._wake.set()

    def stop(self) -> None:
        """Stop the Ready loop (queued proposals fail with NodeStoppedError)."""
        self._stopped = True
        self._wake.set()

    # -- the Ready loop ----------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self._ticks += 1
            self._wake.set()

    async def run(self) -> None:
        """Drive Raft until ``stop``; a WAL error ends the node (and is re-raised)."""
        if len(self.voters) == 1:
            self.rn.campaign()
        ticker = asyncio.create_task(self._ticker(), name="raft-ticker")
        try:
            while not self._stopped:
                await self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    break
                self._feed()
                while self.rn.has_ready() and not self._stopped:
                    rd = self.rn.ready()
                    await self._handle(rd)
                    self.rn.advance(rd)
                    self._feed()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("Raft loop failed, stopping the node: %r", exc)
                self.failure = exc
            raise
        finally:
            self._stopped = True
            ticker.cancel()
            if self._snapshotting is not None:
                self._snapshotting.cancel()
            for _, fut, _acked in self._proposals:
                if not fut.done():
                    fut.set_exception(NodeStoppedError())
            for fut in self._reads + [f for fs in self._read_ctx.values() for f in fs] + \
                    [f for _, f in self._applied_waits] + [f for _, f in self._conf_proposals]:
                if not fut.done():
                    fut.set_exception(NodeStoppedError())

    def _feed(self) -> None:
        rn = self.rn
        if self._wal_error is not None:
            raise self._wal_error
        if self._persisted:
            persisted, self._persisted = self._persisted, []
            for index, term in persisted:
                rn.persisted(index, term)
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            rn.tick()
        inbox, self._inbox = self._inbox, []
        for m in inbox:
            if m.type == raftpb.MsgHeartbeat and m.commit > self.storage.last_index():
                # Only a leader that still believes we hold entries we lost (a
                # wiped data dir) sends this; it would crash the core. The leader
                # hands leadership over (see _check_hellos) and the next one
                # brings us up to date.
                m.commit = self.storage.last_index()
            rn.step(m)
        if self._hellos:
            self._check_hellos()
        transfers, self._transfers = self._transfers, []
        for to in transfers:
            rn.transfer_leadership(to)
        reports, self._reports = self._reports, []
        for member, ok in reports:
            if ok is None:
                rn.report_unreachable(member)
            else:
                rn.report_snapshot(member, ok)
        if self._conf_proposals:
            self._propose_conf_changes()
        if self._proposals and self._may_propose():
            self._propose_batch()
        if self._reads:
            reads, self._reads = self._reads, []
            self._ctx_seq += 1
            ctx = b"%016x%016x" % (self.member_id, self._ctx_seq)
            # Drop abandoned rounds (callers time out and retry with a new one).
            for old in [c for c, fs in self._read_ctx.items() if all(f.done() for f in fs)]:
                del self._read_ctx[old]
            self._read_ctx[ctx] = reads
            rn.read_index(ctx)

    def _may_propose(self) -> bool:
        # A leader keeps one batch of proposals in flight: the requests that
        # arrive meanwhile wait and go as the next batch once it commits (which
        # also carries the new commit index to the followers). With 2 cores
        # shared by the members and the clients, CPU is the limit, and each
        # batch costs one Ready, one MsgApp per follower, one response from
        # each and one fdatasync per member whatever its size (group commit).
        if self.lead != self.member_id:
            return True
        committed = self.rn.raft.log.committed
        while self._batches and self._batches[0] <= committed:
            self._batches.popleft()
        return not self._batches

    def _propose_conf_changes(self) -> None:
        confs, self._conf_proposals = self._conf_proposals, []
        for cc, fut in confs:
            try:
                self.rn.propose_conf_change(cc)
            except ProposalDropped:
                if not fut.done():
                    fut.set_exception(NoLeaderError())
                continue
            if not fut.done():
                fut.set_result(None)

    def _propose_batch(self) -> None:
        # Every proposal queued since the last Ready goes in as ONE MsgProp
        # (etcd batches a proposal's entries the same way): the leader then
        # sends one MsgApp per follower for the lot instead of one per entry,
        # and followers persist and acknowledge it with one fsync.
        props, self._proposals = self._proposals, []
        # A request that timed out while it waited for the batch before it
        # (its caller already answered ErrTimeout) is not written at all.
        props = [p for p in props if not p[1].cancelled()]
        if not props:
            return
        m = raftpb.Message(type=raftpb.MsgProp, entries=[raftpb.Entry(Data=p[0]) for p in props])
        setattr(m, "from", self.member_id)
        try:
            self.rn.raft.step(m)
        except ProposalDropped:
            for _, fut, _acked in props:
                if not fut.done():
                    fut.set_exception(NoLeaderError())
            return
        self._batches.append(self.rn.raft.log.last_index())
        for _, fut, acked in props:
            if acked and not fut.done():
                fut.set_result(None)

    def _check_hellos(self) -> None:
        hellos, self._hellos = self._hellos, []
        st = self.rn.status()
        if st.lead != self.member_id or not st.progress:
            return
        for member, last_index in hellos:
            match = st.progress.get(member, (0, 0, None))[0]
            if match <= last_index:
                continue
            # etcd-io/raft never lowers a follower's match, so a member that lost
            # its log would never be repaired by this leader; a new leader starts
            # from match 0 for everyone and sends it a snapshot.
            others = [(p[0], i) for i, p in st.progress.items()
                      if i not in (member, self.member_id)]
            if not others:
                continue
            target = max(others)[1]
            log.warning("member %x came back with log end %d < match %d (wiped?); "
                        "transferring leadership to %x", member, last_index, match, target)
            self.rn.transfer_leadership(target)
            return

    async def _handle(self, rd) -> None:
        if rd.soft_state is not None:
            lead = rd.soft_state.lead
            if lead != self.lead:
                log.info("member %x: leader is now %x", self.member_id, lead)
                self.lead = lead
                self._batches.clear()
                self._on_leader(lead, rd.soft_state.state == StateType.LEADER)
                self.leader_changed.set()
                self.leader_changed = asyncio.Event()
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
        if rd.snapshot is not None and rd.snapshot.metadata.index > 0:
            await self._wal_drained()
            await self._install_snapshot(rd.snapshot)
        hs = None
        if rd.hard_state is not None:
            h = rd.hard_state
            hs = HardState(h.term, h.vote, h.commit)
        entries = [Entry(e.Term, e.Index, wal_data(e)) for e in rd.entries]
        committed = rd.committed_entries
        if self.is_leader and rd.snapshot is None and (
                hs is None or (hs.term, hs.vote) == self._saved_term_vote):
            # A leader's own entries count toward a quorum only once durable
            # (async_leader_persist: _on_saved reports them), so it hands its
            # disk write to the WAL thread and goes on replicating, applying
            # and answering clients (Raft thesis 10.2.1, etcd raftNode);
            # committed entries are durable on a quorum already.
            self.transport_send(rd.messages)
            pending = self.wal.start_save(entries, hs, sync=rd.must_sync, background=True)
            if pending is not None:
                self._wal_pending = pending
                pending.add_done_callback(functools.partial(
                    self._on_saved, entries[-1].index if entries else 0, self.term))
            if rd.entries:
                self.storage.append(rd.entries)
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            self._resolve_reads(rd.read_states)
            self._apply_entries(committed)
        else:
            # Anyone else answers only after persisting what it acknowledges
            # (a vote, appended entries), and after any write still running
            # from its time as leader.
            await self._wal_drained()
            if hs is not None:
                self._saved_term_vote = (hs.term, hs.vote)
            # Committed entries already in our WAL are applied while the disk
            # syncs this Ready's (etcd hands them to its apply loop before saving).
            durable = self.storage.last_index()
            if rd.entries:
                durable = min(durable, rd.entries[0].Index - 1)
            early = 0
            while early < len(committed) and committed[early].Index <= durable:
                early += 1
            pending = self.wal.start_save(entries, hs, sync=rd.must_sync)
            try:
                if early:
                    self._apply_entries(committed[:early])
                    self._wake_applied()
            finally:
                if pending is not None:
                    await pending
            if rd.entries and self.is_leader:
                # A leader here (one that just won with a new term or vote,
                # e.g. a lone member) reports its now durable entries too.
                self._persisted.append((rd.entries[-1].Index, self.term))
            if rd.entries:
                self.storage.append(rd.entries)
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            self.transport_send(rd.messages)
            self._resolve_reads(rd.read_states)
            if early < len(committed):
                self._apply_entries(committed[early:] if early else committed)
        self._wake_applied()
        if self.applied_index - self.snap_index >= self.snapshot_count and self._snapshotting is None:
            self._start_snapshot()

    def transport_send(self, messages) -> None:
        """Hand ``messages`` to the peer transport (if any)."""
        if messages and self.transport is not None:
            self.transport.send(messages)

    def _resolve_reads(self, read_states) -> None:
        for rs in read_states:
            for fut in self._read_ctx.pop(bytes(rs.request_ctx), []):
                if not fut.done():
                    fut.set_result(rs.index)

    async def _wal_drained(self) -> None:
        """Wait for the background WAL writes (one thread: the newest ends last)."""
        if self._wal_pending is not None:
            pending, self._wal_pending = self._wal_pending, None
            await pending

    def _on_saved(self, index: int, term: int, fut: asyncio.Future) -> None:
        # Runs on the loop when a background WAL write finished.
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._wal_error = exc
        elif index:
            self._persisted.append((index, term))
        self._wake.set()

    def _apply_entries(self, entries) -> None:
        for e in entries:
            if e.Index <= self.applied_index:
                continue
            if e.Type == raftpb.EntryNormal and e.Data:
                self._apply(e.Data)
            elif e.Type == raftpb.EntryConfChange:
                cc = raftpb.ConfChange.FromString(e.Data)
                cs = self.rn.apply_conf_change(cc)
                self.voters = sorted(cs.voters)
                log.info("member %x applied conf change %s of %x at %d; voters now %s",
                         self.member_id, raftpb.ConfChangeType.Name(cc.type), cc.node_id,
                         e.Index, [format(v, "x") for v in self.voters])
                if self._apply_conf_change is not None:
                    self._apply_conf_change(cc, cs)
            self.applied_index = e.Index

    def _wake_applied(self) -> None:
        if not self._applied_waits:
            return
        keep = []
        for index, fut in self._applied_waits:
            if index <= self.applied_index:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((index, fut))
        self._applied_waits = keep

    async def _install_snapshot(self, snap: raftpb.Snapshot) -> None:
        md = snap.metadata
        t0 = time.monotonic()
        await asyncio.to_thread(self.snapshotter.save, snap)
        await self.wal.save_snapshot(md.term, md.index, next_index=md.index + 1)
        self.storage.apply_snapshot(snap)
        self._restore(snap.data)
        self.applied_index = self.snap_index = md.index
        if md.conf_state.voters:
            self.voters = sorted(md.conf_state.voters)
            if self._restore_conf is not None:
                self._restore_conf(md.conf_state)
        log.info("installed snapshot at index %d (term %d, %d bytes) in %.2fs",
                 md.index, md.term, len(snap.data), time.monotonic() - t0)

    def _start_snapshot(self) -> None:
        # The state is captured here, between Readies, at the applied index;
        # serializing it, saving the file and cutting the WAL run in the
        # background while the loop goes on (etcd snapshots off its apply loop).
        index = self.applied_index
        data = self._snapshot_data()
        conf = self.rn.raft.conf_state()
        self._snapshotting = asyncio.create_task(self._save_snapshot(index, conf, data),
                                                 name="raft-snapshot")

    async def _save_snapshot(self, index: int, conf: raftpb.ConfState, data: Awaitable[bytes]) -> None:
        t0 = time.monotonic()
        try:
            blob = await data
            if self._stopped or index <= self.snap_index:
                return  # stopping, or a leader's snapshot was installed meanwhile
            snap = self.storage.create_snapshot(index, conf, blob)
            await asyncio.to_thread(self.snapshotter.save, snap)
            if self._stopped:
                return
            # Queued behind every WAL write issued so far, so the new segment
            # starts right after the entries now in the log.
            await self.wal.save_snapshot(snap.metadata.term, index,
                                         next_index=self.storage.last_index() + 1)
            keep = min(SNAPSHOT_CATCHUP_ENTRIES, self.snapshot_count)
            compact_to = index - keep
            if compact_to > self.storage.first_index():
                self.storage.compact(compact_to)
            self.snap_index = max(self.snap_index, index)
            metrics.SNAPSHOT_SAVE.observe(time.monotonic() - t0)
            log.info("saved snapshot at index %d (%d bytes) in %.2fs; log compacted to %d",
                     index, len(blob), time.monotonic() - t0, max(compact_to, 0))
        except Exception as exc:  # noqa: BLE001 - retried at the next trigger
            log.warning("snapshot at index %d failed: %r", index, exc)
        finally:
            self._snapshotting = None
