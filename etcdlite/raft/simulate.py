"""A deterministic network simulator for the Raft core.

Why it exists: Raft's safety properties must hold under every schedule, and a
handful of scripted tests cannot reach the interleavings that break them. A
seeded ``Simulation`` runs N RawNodes over MemoryStorage with a message queue
delivered in random order, with loss, duplication, partitions, crash-restarts
(only what a node handed out through Ready and acknowledged with advance()
survives) and log compaction, and checks after every step:

- election safety: at most one leader per term (Reference: section 5.2);
- log matching: an (index, term) pair names one entry with one predecessor
  term, so equal pairs imply equal prefixes (section 5.3);
- leader completeness: a new leader holds every entry committed so far (5.4);
- state machine safety: no two nodes apply different entries at an index
  (5.4.3), checked with a running hash of the applied sequence that also
  travels in snapshots;
- linearizable reads: a ReadState's index is at least the highest index
  known committed anywhere when the read was requested (section 8).

It plays the role of etcd-io/raft's rafttest/ network and of the
Jepsen-style randomized tests etcd runs; a failing seed raises
``SafetyViolation`` naming the seed, so ``Simulation(seed=...)`` reproduces it.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

from proto.raftpb import raft_pb2 as pb

from etcdlite.raft.describe import describe_message, describe_ready
from etcdlite.raft.raft import Config, ProposalDropped, StateType
from etcdlite.raft.rawnode import RawNode
from etcdlite.raft.storage import ErrSnapOutOfDate, MemoryStorage, StorageError


class SafetyViolation(AssertionError):
    """A Raft safety property failed; the message names seed and step."""


def _chain(prev: str, e: pb.Entry) -> str:
    return hashlib.blake2b(f"{prev}|{e.Index}|{e.Term}|".encode() + e.Data,
                           digest_size=8).hexdigest()


@dataclass
class SimNode:
    """One member: its durable storage, its RawNode (None while crashed) and
    its state machine (applied index + running hash of everything applied)."""
    id: int
    storage: MemoryStorage
    node: RawNode | None = None
    applied: int = 0
    sm_hash: str = ""
    restarts: int = 0
    # async_leader_persist: a leader's writes not yet durable, oldest first,
    # as (last entry index or 0, leader term, hard state or None); what is.
    pending: list = field(default_factory=list)
    durable_index: int = 0
    durable_hs: pb.HardState | None = None
    saved_term_vote: tuple[int, int] = (0, 0)


@dataclass
class Faults:
    """Probabilities per step (each in [0, 1])."""
    loss: float = 0.05
    dup: float = 0.05
    partition: float = 0.02
    heal: float = 0.05
    crash: float = 0.01
    restart: float = 0.1
    compact: float = 0.03
    propose: float = 0.15
    read: float = 0.03
    tick: float = 0.12
    flush: float = 0.1  # with async_leader_persist: one pending leader write becomes durable
    burst: int = 4  # a delivery step delivers 1..burst messages


@dataclass
class Simulation:
    """N nodes on a lossy, reordering network, driven by one seed.

    run(steps) performs ``steps`` random actions then, by default, heals
    everything and checks that the cluster converges (liveness).
    """
    seed: int
    n: int = 3
    election_tick: int = 6
    faults: Faults = field(default_factory=Faults)
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 256  # 1 = one entry per MsgApp (reaches Figure 8 sooner)
    # Leaders write their log in the background as etcdlite's server does
    # (Config.async_leader_persist): writes complete at random steps, a crash
    # loses those that did not, and a leader counts itself only once durable.
    async_leader_persist: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.ids = list(range(1, self.n + 1))
        self.nodes = {i: SimNode(i, MemoryStorage()) for i in self.ids}
        self.queue: list[pb.Message] = []
        self.cut: set[frozenset[int]] = set()  # unordered pairs that cannot talk
        self.step_no = 0
        self.proposals = 0
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.entry_ids: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.hashes: dict[int, str] = {}  # index -> running hash after applying it
        self.reads: dict[bytes, int] = {}  # read ctx -> commit index when issued
        self.trace: list[str] | None = None  # set to a list to record a transcript
        self.removed: set[int] = set()  # members that applied their own removal
        for i in self.ids:
            self._start(i)

    # --- lifecycle ---
    def _start(self, i: int) -> None:
        sn = self.nodes[i]
        snap = sn.storage.snapshot()
        sn.applied = snap.metadata.index
        sn.sm_hash = json.loads(snap.data)["hash"] if snap.data else ""
        sn.node = RawNode(Config(
            # The config at index 0; a log replay applies every change since
            # (a snapshot's ConfState wins when there is one), as in etcd.
            id=i, peers=list(range(1, self.n + 1)), storage=sn.storage, election_tick=self.election_tick,
            heartbeat_tick=1, pre_vote=self.pre_vote, check_quorum=self.check_quorum,
            max_size_per_msg=self.max_size_per_msg, max_inflight_msgs=4,
            async_leader_persist=self.async_leader_persist,
            rng=random.Random(self.seed * 7919 + i * 31 + sn.restarts)))
        sn.restarts += 1

    def fail(self, what: str) -> None:
        raise SafetyViolation(f"seed={self.seed} step={self.step_no}: {what}")

    # --- one step ---
    def step(self) -> None:
        """Do one random action, drain every Ready, check the invariants."""
        self.step_no += 1
        f, r = self.faults, self.rng.random()
        up = [i for i in self.ids if self.nodes[i].node is not None]
        down = [i for i in self.ids if self.nodes[i].node is None]
        if r < f.tick:
            for i in up:
                self.nodes[i].node.tick()
        elif (r := r - f.tick) < f.propose:
            if up:
                self.propose(self.rng.choice(up))
        elif (r := r - f.propose) < f.read:
            if up:
                ctx = f"r{len(self.reads)}".encode()
                self.reads[ctx] = max(self.committed, default=0)
                self.nodes[self.rng.choice(up)].node.read_index(ctx)
        elif (r := r - f.read) < f.partition:
            a, b = self.rng.sample(self.ids, 2)
            self.cut.add(frozenset((a, b)))
        elif (r := r - f.partition) < f.heal:
            self.cut.clear()
        elif (r := r - f.heal) < f.crash:
            # Keep a majority alive most of the time so progress is possible.
            if up and len(up) > self.n // 2 + (0 if self.rng.random() < 0.2 else 1) - 1:
                # Leaders crash more often: that is where Raft gets interesting.
                leaders = [i for i in up if self.nodes[i].node.raft.state is StateType.LEADER]
                pick = leaders if leaders and self.rng.random() < 0.6 else up
                self.crash(self.rng.choice(pick))
        elif (r := r - f.crash) < f.restart:
            if down:
                self._start(self.rng.choice(down))
        elif (r := r - f.restart) < f.compact:
            if up:
                self.compact(self.rng.choice(up))
        elif self.async_leader_persist and (r := r - f.compact) < f.flush:
            busy = [i for i in up if self.nodes[i].pending]
            if busy:
                self.flush(self.nodes[self.rng.choice(busy)], 1)
        else:
            for _ in range(self.rng.randint(1, f.burst)):
                self.deliver_one()
                self.drain()
        self.drain()
        self.check()

    def propose(self, i: int) -> None:
        self.proposals += 1
        try:
            self.nodes[i].node.propose(f"s{self.seed}-p{self.proposals}".encode())
        except ProposalDropped:
            pass

    def propose_conf_change(self, i: int, cc: pb.ConfChange) -> bool:
        """Propose ``cc`` at node ``i``; False if Raft dropped it."""
        try:
            self.nodes[i].node.propose_conf_change(cc)
            return True
        except ProposalDropped:
            return False

    def add_node(self) -> int:
        """Start a new, empty node (the next id) that knows the current members
        and itself, as a member started with --initial-cluster-state=existing;
        the caller proposes its ConfChangeAddNode. Returns its id."""
        new = max(self.nodes) + 1
        self.nodes[new] = SimNode(new, MemoryStorage())
        self.ids.append(new)
        self._start(new)
        return new

    def flush(self, sn: SimNode, n: int | None = None) -> None:
        """Make ``n`` (default all) of ``sn``'s pending writes durable, in order,
        and report them to its node (the server's _on_saved)."""
        done, sn.pending = (sn.pending, []) if n is None else (sn.pending[:n], sn.pending[n:])
        for index, term, hs in done:
            if index:
                sn.durable_index = index
            if hs is not None:
                sn.durable_hs = hs
        if sn.node is not None:
            for index, term, _ in done:
                if index:
                    sn.node.persisted(index, term)

    def _lose_unflushed(self, sn: SimNode) -> None:
        # The storage keeps only what reached the disk: the snapshot, entries
        # up to the last durable write, the last durable hard state.
        st = sn.storage
        snap = st.snapshot()
        keep = max(sn.durable_index, snap.metadata.index)
        ents = st.entries(st.first_index(), min(keep, st.last_index()) + 1) \
            if keep >= st.first_index() else []
        new = MemoryStorage()
        if snap.metadata.index:
            new.apply_snapshot(snap)
        if ents:
            new.append(ents)
        hs = sn.durable_hs or pb.HardState()
        new.set_hard_state(pb.HardState(term=hs.term, vote=hs.vote,
                                        commit=max(min(hs.commit, new.last_index()),
                                                   snap.metadata.index)))
        sn.storage, sn.pending = new, []

    def crash(self, i: int) -> None:
        """Lose everything not persisted: the RawNode, its unstable entries,
        a leader's writes still in flight, and often the messages still in
        its send buffers."""
        if self.nodes[i].pending:
            self._lose_unflushed(self.nodes[i])
        self.nodes[i].node = None
        if self.rng.random() < 0.5:
            self.queue = [m for m in self.queue if getattr(m, "from") != i]

    def compact(self, i: int) -> None:
        sn = self.nodes[i]
        st = sn.storage
        if sn.applied <= st.snapshot().metadata.index:
            return
        data = json.dumps({"hash": sn.sm_hash}).encode()
        st.create_snapshot(sn.applied, sn.node.raft.conf_state(), data)
        st.compact(sn.applied)

    def deliver_one(self) -> None:
        if not self.queue:
            return
        m = self.queue.pop(self.rng.randrange(len(self.queue)))
        if self.rng.random() < self.faults.dup:
            dup = pb.Message()
            dup.CopyFrom(m)
            self.queue.append(dup)
        self.deliver(m, lossy=True)

    def deliver(self, m: pb.Message, *, lossy: bool) -> None:
        frm = getattr(m, "from")
        target = self.nodes[m.to].node
        lost = (target is None or frozenset((frm, m.to)) in self.cut
                or (lossy and self.rng.random() < self.faults.loss))
        if m.type == pb.MsgSnap and self.nodes[frm].node is not None:
            self.nodes[frm].node.report_snapshot(m.to, not lost)
        if self.trace is not None:
            self.trace.append(f"  {'DROPPED ' if lost else ''}{describe_message(m)}")
        if not lost:
            target.step(m)

    # --- Ready handling: what the etcdlite server does, in memory ---
    def drain(self) -> None:
        for _ in range(100):
            busy = False
            for i in list(self.ids):
                sn = self.nodes[i]
                if sn.node is not None and sn.node.has_ready():
                    busy = True
                    self.handle_ready(sn)
            if not busy:
                return
        self.fail("Ready never drained")

    def handle_ready(self, sn: SimNode) -> None:
        rn = sn.node
        rd = rn.ready()
        if self.trace is not None:
            self.trace.append(f"> {sn.id} handling Ready")
            self.trace += describe_ready(rd, indent="  ")
        st = sn.storage
        old_commit = st.hard_state.commit
        fast = False
        if self.async_leader_persist:
            hs = rd.hard_state
            fast = (rn.raft.state is StateType.LEADER and rd.snapshot is None
                    and (hs is None or (hs.term, hs.vote) == sn.saved_term_vote))
            if fast:
                sn.pending.append((rd.entries[-1].Index if rd.entries else 0, rn.raft.term,
                                   pb.HardState(term=hs.term, vote=hs.vote, commit=hs.commit)
                                   if hs is not None else None))
            else:
                # Anyone else first waits for the writes still in flight.
                self.flush(sn)
                if hs is not None:
                    sn.saved_term_vote = (hs.term, hs.vote)
        if rd.snapshot is not None:
            try:
                st.apply_snapshot(rd.snapshot)
            except ErrSnapOutOfDate:
                self.fail(f"node {sn.id} got an out-of-date snapshot")
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.entries:
            self.check_entries(sn, rd.entries)
            st.append(rd.entries)
        if rd.soft_state is not None and rd.soft_state.state is StateType.LEADER:
            self.check_leader_completeness(sn)
        if rd.hard_state is not None and rd.hard_state.commit > old_commit:
            self.record_committed(sn, old_commit, rd.hard_state.commit)
        self.queue.extend(rd.messages)
        for rs in rd.read_states:
            floor = self.reads.get(rs.request_ctx, 0)  # reads issued by step()
            if rs.index < floor:
                self.fail(f"stale read: {rs.request_ctx!r} got index {rs.index} but "
                          f"{floor} was committed when it was issued")
        if rd.snapshot is not None:
            idx = rd.snapshot.metadata.index
            h = json.loads(rd.snapshot.data)["hash"]
            if self.hashes.get(idx, h) != h:
                self.fail(f"node {sn.id} restored a snapshot at {idx} that differs from "
                          "what other nodes applied")
            sn.applied, sn.sm_hash = idx, h
        removed_self = False
        for e in rd.committed_entries:
            if e.Index != sn.applied + 1:
                self.fail(f"node {sn.id} applies {e.Index} after {sn.applied}")
            if e.Type == pb.EntryConfChange:
                cc = pb.ConfChange.FromString(e.Data)
                rn.apply_conf_change(cc)
                removed_self |= cc.type == pb.ConfChangeRemoveNode and cc.node_id == sn.id
            sn.sm_hash = _chain(sn.sm_hash, e)
            sn.applied = e.Index
            if self.hashes.setdefault(e.Index, sn.sm_hash) != sn.sm_hash:
                self.fail(f"state machine safety: node {sn.id} applied a different "
                          f"entry or history at index {e.Index}")
        rn.advance(rd)
        if self.async_leader_persist and not fast:
            sn.durable_index = st.last_index()
            sn.durable_hs = pb.HardState()
            sn.durable_hs.CopyFrom(st.hard_state)
        if removed_self:
            # A removed member shuts down for good (etcd stops the server).
            sn.node = None
            if sn.id in self.ids:
                self.ids.remove(sn.id)
            self.removed.add(sn.id)

    # --- invariants ---
    def check_entries(self, sn: SimNode, ents: list[pb.Entry]) -> None:
        log = sn.node.raft.log
        for e in ents:
            prev = None
            if e.Index - 1 >= log.first_index() - 1:
                try:
                    prev = log.term(e.Index - 1)
                except StorageError:
                    prev = None
            key = (e.Index, e.Term)
            have = self.entry_ids.get(key)
            if have is None:
                self.entry_ids[key] = (e.Data, prev)
            elif have[0] != e.Data or (prev is not None and have[1] is not None
                                       and have[1] != prev):
                self.fail(f"log matching: node {sn.id} has a different entry or "
                          f"predecessor at index {e.Index} term {e.Term}")

    def record_committed(self, sn: SimNode, lo: int, hi: int) -> None:
        log = sn.node.raft.log
        lo = max(lo + 1, log.first_index())
        if lo > hi:
            return
        for e in log.slice(lo, hi + 1):
            have = self.committed.setdefault(e.Index, (e.Term, e.Data))
            if have != (e.Term, e.Data):
                self.fail(f"committed entry {e.Index} changed on node {sn.id}")

    def check_leader_completeness(self, sn: SimNode) -> None:
        log = sn.node.raft.log
        first = log.first_index()
        for idx, (term, data) in self.committed.items():
            if idx < first:
                continue  # covered by the leader's snapshot
            if idx > log.last_index():
                self.fail(f"leader completeness: leader {sn.id} of term "
                          f"{sn.node.raft.term} lacks committed index {idx}")
            e = log.slice(idx, idx + 1)[0]
            if (e.Term, e.Data) != (term, data):
                self.fail(f"leader completeness: leader {sn.id} has a different "
                          f"entry at committed index {idx}")

    def check(self) -> None:
        for i in self.ids:
            rn = self.nodes[i].node
            if rn is None:
                continue
            r = rn.raft
            if r.state is StateType.LEADER:
                if self.leaders.setdefault(r.term, i) != i:
                    self.fail(f"election safety: {self.leaders[r.term]} and {i} "
                              f"both lead term {r.term}")
            if not r.log.applied <= r.log.committed <= r.log.last_index():
                self.fail(f"node {i}: applied {r.log.applied} commit {r.log.committed} "
                          f"last {r.log.last_index()}")

    def check_logs_match(self) -> None:
        """Full pairwise log matching over every live node (slow; end of run)."""
        logs = {}
        for i in self.ids:
            rn = self.nodes[i].node
            if rn is not None:
                logs[i] = {e.Index: e for e in rn.raft.log.all_entries()}
        for a in logs:
            for b in logs:
                if a >= b:
                    continue
                common = sorted(set(logs[a]) & set(logs[b]))
                same_upto = max((x for x in common if logs[a][x].Term == logs[b][x].Term),
                                default=0)
                for x in common:
                    if x <= same_upto and logs[a][x] != logs[b][x]:
                        self.fail(f"log matching: nodes {a} and {b} differ at {x} "
                                  f"below the common entry {same_upto}")

    # --- driving (also used by the scripted unit tests) ---
    def tick_all(self, n: int = 1) -> None:
        """Tick every live node ``n`` times, draining Ready after each round."""
        for _ in range(n):
            for i in self.ids:
                if self.nodes[i].node is not None:
                    self.nodes[i].node.tick()
            self.drain()
            self.check()

    def stabilize(self, *, max_rounds: int = 200) -> None:
        """Deliver every queued message (no loss, in order, partitions still
        apply) until the network is quiet; mirrors rafttest's `stabilize`."""
        self.drain()
        for _ in range(max_rounds):
            for i in self.ids:
                if self.nodes[i].pending and self.nodes[i].node is not None:
                    self.flush(self.nodes[i])
            self.drain()
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            for m in batch:
                self.deliver(m, lossy=False)
            self.drain()
            self.check()
        self.fail("stabilize: the network never went quiet")

    def isolate(self, i: int) -> None:
        """Cut ``i`` off from every other node (heal with ``cut.clear()``)."""
        for j in self.ids:
            if j != i:
                self.cut.add(frozenset((i, j)))

    def settle(self, *, max_rounds: int = 400) -> None:
        """Heal everything, restart crashed nodes, and require convergence:
        one leader, and every node applied the same last entry."""
        self.cut.clear()
        for i in self.ids:
            if self.nodes[i].node is None:
                self._start(i)
        self.drain()
        proposed = False
        for _ in range(max_rounds):
            self.step_no += 1
            self.tick_all()
            self.stabilize()
            leaders = [i for i in self.ids
                       if self.nodes[i].node.raft.state is StateType.LEADER]
            if len(leaders) != 1:
                continue
            lead = self.nodes[leaders[0]]
            if not proposed:
                self.propose(leaders[0])
                proposed = True
                continue
            last = lead.node.raft.log.last_index()
            if all(self.nodes[i].applied == last for i in self.ids):
                self.check_logs_match()
                return
        self.fail("liveness: the healed cluster did not converge: " + "; ".join(
            f"{i}:{self.nodes[i].node.status()}" for i in self.ids))

    def run(self, steps: int, *, settle: bool = True) -> "Simulation":
        for _ in range(steps):
            self.step()
        self.check_logs_match()
        if settle:
            self.settle()
        return self
