"""The thread-unsafe driver of the Raft core; mirrors etcd-io/raft rawnode.go.

The server owns one RawNode per member and drives it from a single task:

    rn.tick() every heartbeat interval; rn.step(msg) for each peer message;
    if rn.has_ready():
        rd = rn.ready()
        persist rd.hard_state, rd.snapshot (storage.apply_snapshot), rd.entries
            (storage.append) -- fsync when rd.must_sync
        send rd.messages
        apply rd.snapshot, then rd.committed_entries
        rn.advance(rd)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from proto.raftpb import raft_pb2 as pb

from etcdlite.raft.raft import (
    NONE, Config, ProposalDropped, Raft, SoftState, StateType,
)
from etcdlite.raft.read_only import ReadState

# Messages only the core itself may generate (util.go IsLocalMsg).
_LOCAL_MSGS = frozenset({pb.MsgHup, pb.MsgBeat, pb.MsgUnreachable, pb.MsgSnapStatus,
                         pb.MsgCheckQuorum})
_RESPONSE_MSGS = frozenset({pb.MsgAppResp, pb.MsgVoteResp, pb.MsgHeartbeatResp,
                            pb.MsgUnreachable, pb.MsgPreVoteResp})


@dataclass
class Ready:
    """One batch of work for the caller (mirrors raft.Ready).

    soft_state: leader/state if changed since the last Ready, else None.
    hard_state: term/vote/commit to persist if changed, else None.
    read_states: reads that may be served once applied >= ReadState.index.
    entries: to append to stable storage BEFORE sending ``messages``.
    snapshot: to persist and apply (before ``committed_entries``), or None.
    committed_entries: to apply to the state machine, in order.
    messages: to send after persisting (pb.Message, ``to`` set).
    must_sync: whether the persisted part needs an fsync.
    """
    soft_state: SoftState | None = None
    hard_state: pb.HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[pb.Entry] = field(default_factory=list)
    snapshot: pb.Snapshot | None = None
    committed_entries: list[pb.Entry] = field(default_factory=list)
    messages: list[pb.Message] = field(default_factory=list)
    must_sync: bool = False


@dataclass(frozen=True)
class Status:
    """A node's view of itself (mirrors raft.Status / BasicStatus).

    progress maps peer id -> (match, next, state name) on the leader, else {}.
    """
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    state: StateType
    progress: dict = field(default_factory=dict)


def _hs_equal(a: pb.HardState, b: pb.HardState) -> bool:
    return a.term == b.term and a.vote == b.vote and a.commit == b.commit


class RawNode:
    """Raft node driven by the caller (mirrors raft.RawNode).

    Raises ValueError for an invalid Config. Not thread-safe.
    """

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    # --- input ---
    def tick(self) -> None:
        """Advance the logical clock by one tick (heartbeat_tick ticks = one heartbeat)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first when enabled)."""
        self.raft.step(pb.Message(type=pb.MsgHup))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log; raises ProposalDropped without a leader
        or during a leadership transfer. Followers forward it to the leader."""
        m = pb.Message(type=pb.MsgProp, entries=[pb.Entry(Data=data)])
        setattr(m, "from", self.raft.id)
        self.raft.step(m)

    def propose_conf_change(self, cc: pb.ConfChange) -> None:
        """Propose a membership change as an EntryConfChange entry (raft
        ProposeConfChange). Only one may be pending: a second one proposed
        before the first is applied is replaced by an empty entry. Raises
        ProposalDropped like propose()."""
        m = pb.Message(type=pb.MsgProp, entries=[pb.Entry(Type=pb.EntryConfChange,
                                                          Data=cc.SerializeToString())])
        setattr(m, "from", self.raft.id)
        self.raft.step(m)

    def apply_conf_change(self, cc: pb.ConfChange) -> pb.ConfState:
        """Apply a committed ConfChange (call when its entry is applied, before
        advance()); returns the new ConfState (raft ApplyConfChange)."""
        return self.raft.apply_conf_change(cc)

    def step(self, msg: pb.Message) -> None:
        """Feed a message from a peer. Local-only types and responses from
        unknown peers are ignored; a forwarded proposal that cannot be
        handled here is dropped silently (the proposer retries)."""
        if msg.type in _LOCAL_MSGS:
            return
        if msg.type in _RESPONSE_MSGS and getattr(msg, "from") not in self.raft.prs.progress:
            return
        try:
            self.raft.step(msg)
        except ProposalDropped:
            pass

    def persisted(self, index: int, term: int) -> None:
        """With Config.async_leader_persist: the leader of ``term`` wrote its
        log durably up to ``index`` (stale reports are ignored)."""
        self.raft.self_persisted(index, term)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; a ReadState with ``ctx`` shows up in a
        later Ready (dropped silently if leadership cannot be confirmed)."""
        self.raft.step(pb.Message(type=pb.MsgReadIndex, entries=[pb.Entry(Data=ctx)]))

    def transfer_leadership(self, to: int) -> None:
        """Ask the leader to hand leadership to ``to`` (MsgTransferLeader)."""
        m = pb.Message(type=pb.MsgTransferLeader)
        setattr(m, "from", to)
        self.raft.step(m)

    def report_unreachable(self, node_id: int) -> None:
        """Tell the leader a message to ``node_id`` could not be delivered."""
        m = pb.Message(type=pb.MsgUnreachable)
        setattr(m, "from", node_id)
        self.raft.step(m)

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """Tell the leader whether sending a snapshot to ``node_id`` succeeded."""
        m = pb.Message(type=pb.MsgSnapStatus, reject=not ok)
        setattr(m, "from", node_id)
        self.raft.step(m)

    # --- output ---
    def has_ready(self) -> bool:
        """Whether ready() has anything for the caller."""
        r = self.raft
        if r.lead != self._prev_soft.lead or r.state is not self._prev_soft.state:
            return True
        prev = self._prev_hard
        if (r.term, r.vote, r.log.committed) != (prev.term, prev.vote, prev.commit) and (
                r.term or r.vote or r.log.committed):
            return True
        return bool(r.log.unstable.snapshot is not None or r.msgs or r.log.unstable.entries
                    or r.log.has_next_ents() or r.read_states)

    def ready(self) -> Ready:
        """Take the pending batch; hand it back through advance() once done."""
        r = self.raft
        rd = Ready(entries=list(r.log.unstable.entries),
                   committed_entries=r.log.next_ents(),
                   messages=r.msgs, read_states=r.read_states)
        soft = r.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = r.hard_state()
        if not _hs_equal(hs, self._prev_hard):
            rd.hard_state = hs
        if r.log.unstable.snapshot is not None:
            rd.snapshot = r.log.unstable.snapshot
        rd.must_sync = bool(rd.entries or rd.snapshot is not None or (
            rd.hard_state is not None and (hs.vote != self._prev_hard.vote
                                            or hs.term != self._prev_hard.term)))
        r.msgs = []
        r.read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd`` was persisted and applied."""
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        self.raft.advance(rd.entries, rd.snapshot, rd.committed_entries)

    def status(self) -> Status:
        """Current term/vote/commit/applied/leader/state (and leader's progress)."""
        r = self.raft
        progress = {}
        if r.state is StateType.LEADER:
            progress = {i: (p.match, p.next, p.state) for i, p in r.prs.progress.items()}
        return Status(id=r.id, term=r.term, vote=r.vote, commit=r.log.committed,
                      applied=r.log.applied, lead=r.lead, state=r.state, progress=progress)


__all__ = ["NONE", "RawNode", "Ready", "Status"]
