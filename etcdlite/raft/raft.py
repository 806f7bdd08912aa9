"""The Raft state machine; mirrors etcd-io/raft raft.go.

``Raft.step`` takes one message (from a peer, or a local one such as MsgHup /
MsgBeat / MsgProp) and ``Raft.tick`` one unit of logical time; both only
change memory and append outgoing messages to ``msgs``. Section numbers in
comments refer to the Raft paper (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm", extended version).
"""
from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Callable

from proto.raftpb import raft_pb2 as pb

from etcdlite.raft.log import RaftLog
from etcdlite.raft.progress import Progress, ProgressState, ProgressTracker, VoteResult
from etcdlite.raft.read_only import ReadOnly, ReadState
from etcdlite.raft.storage import MemoryStorage, StorageError

NONE = 0
"""The placeholder node id for "no leader" / "no vote" (raft.None)."""

_CAMPAIGN_PRE_ELECTION = "CampaignPreElection"
_CAMPAIGN_ELECTION = "CampaignElection"
_CAMPAIGN_TRANSFER = b"CampaignTransfer"


class ProposalDropped(Exception):
    """A proposal was dropped: no leader, or a leadership transfer is under way
    (raft.ErrProposalDropped). The caller may retry later."""

    def __init__(self, why: str = "raft proposal dropped") -> None:
        super().__init__(why)


class StateType(str, enum.Enum):
    """The role of a node (raft.StateType)."""
    FOLLOWER = "StateFollower"
    CANDIDATE = "StateCandidate"
    LEADER = "StateLeader"
    PRE_CANDIDATE = "StatePreCandidate"


@dataclass(frozen=True)
class SoftState:
    """Volatile state worth telling the caller about (raft.SoftState)."""
    lead: int
    state: StateType


@dataclass
class Config:
    """Parameters of one Raft node (raft.Config).

    id: this node's non-zero id; peers: ids of all voters including this one
    (ignored when storage holds a snapshot, whose ConfState wins);
    election_tick / heartbeat_tick: in ticks, election_tick > heartbeat_tick;
    applied: last index already applied to the state machine (restarts);
    max_size_per_msg: byte cap of entries per MsgApp; max_inflight_msgs: MsgApps
    in flight per follower in StateReplicate; rng: source of the randomized
    election timeout in [election_tick, 2*election_tick).
    """
    id: int
    peers: list[int]
    storage: MemoryStorage
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_size_per_ready: int | None = None
    # A leader's own entries count toward a quorum only once the caller
    # reports them durable (RawNode.persisted), so it may write its disk in the
    # background while it keeps replicating (Raft thesis 10.2.1; etcd-io/raft's
    # AsyncStorageWrites self-ack). Off: they count when appended, and the
    # caller must persist a Ready before the next one.
    async_leader_persist: bool = False
    rng: random.Random = field(default_factory=random.Random)

    def validate(self) -> None:
        """Raise ValueError for an unusable configuration."""
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.storage is None:
            raise ValueError("storage cannot be nil")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")


def _vote_resp_type(t: int) -> int:
    return pb.MsgVoteResp if t == pb.MsgVote else pb.MsgPreVoteResp


def _msg(type: int, to: int, **kw) -> pb.Message:
    return pb.Message(type=type, to=to, **kw)


class Raft:
    """One node's Raft state (raft.go raft). Drive it through RawNode."""

    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.log = RaftLog(c.storage, max_next_ents_size=c.max_committed_size_per_ready)
        hs, cs = c.storage.initial_state()
        voters = list(cs.voters) or list(c.peers)
        # A node outside the voters (a joining member restarted from a
        # snapshot taken before its addition) runs but never campaigns.
        self.max_msg_size = c.max_size_per_msg
        self.prs = ProgressTracker(voters, max_inflight=c.max_inflight_msgs)
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.msgs: list[pb.Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[pb.Message] = []
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.async_leader_persist = c.async_leader_persist
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = c.election_tick
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.lead_transferee = NONE
        # Index of the newest conf change the leader proposed; another may be
        # proposed only once this one is applied (one change at a time, 4.1 of the thesis).
        self.pending_conf_index = 0
        self.rng = c.rng
        self.tick: Callable[[], None] = self._tick_election
        self._step: Callable[[pb.Message], None] = self._step_follower
        if hs.term or hs.vote or hs.commit:
            self._load_state(hs)
        if c.applied > 0:
            if not self.log.applied <= c.applied <= self.log.committed:
                raise ValueError(f"applied {c.applied} is out of range [{self.log.applied} "
                                 f"(snapshot index), {self.log.committed} (commit)]")
            self.log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    # --- state snapshots ---
    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, state=self.state)

    def hard_state(self) -> pb.HardState:
        return pb.HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def conf_state(self) -> pb.ConfState:
        """The voters, for Storage.create_snapshot."""
        return pb.ConfState(voters=self.prs.voters)

    def _load_state(self, hs: pb.HardState) -> None:
        if hs.commit < self.log.committed or hs.commit > self.log.last_index():
            raise ValueError(f"{self.id} state.commit {hs.commit} is out of range "
                             f"[{self.log.committed}, {self.log.last_index()}]")
        self.log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        """Whether this node may campaign (a voter without a pending snapshot)."""
        return self.id in self.prs.progress and self.log.unstable.snapshot is None

    # --- sending ---
    def send(self, m: pb.Message) -> None:
        setattr(m, "from", self.id)
        if m.type in (pb.MsgVote, pb.MsgVoteResp, pb.MsgPreVote, pb.MsgPreVoteResp):
            if m.term == 0:
                raise RuntimeError(f"term should be set when sending {pb.MessageType.Name(m.type)}")
        elif m.type not in (pb.MsgProp, pb.MsgReadIndex):
            m.term = self.term
        self.msgs.append(m)

    def send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send MsgApp (or MsgSnap if the entries are compacted) to ``to``;
        returns whether a message was sent."""
        pr = self.prs.progress[to]
        if pr.is_paused():
            return False
        try:
            term = self.log.term(pr.next - 1)
            ents = self.log.entries(pr.next, self.max_msg_size)
        except StorageError:
            # The entries were compacted: send the snapshot instead (section 7).
            if not pr.recent_active:
                return False
            snap = self.log.snapshot()
            if snap.metadata.index == 0:
                raise RuntimeError("need non-empty snapshot")
            self.send(_msg(pb.MsgSnap, to, snapshot=snap))
            pr.become_snapshot(snap.metadata.index)
            return True
        if not ents and not send_if_empty:
            return False
        self.send(_msg(pb.MsgApp, to, index=pr.next - 1, logTerm=term, entries=ents,
                       commit=self.log.committed))
        if ents:
            if pr.state is ProgressState.REPLICATE:
                last = ents[-1].Index
                pr.optimistic_update(last)
                pr.inflights.add(last)
            elif pr.state is ProgressState.PROBE:
                pr.probe_sent = True
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        # A follower may not have the leader's whole log yet: never tell it
        # to commit past what it is known to have.
        commit = min(self.prs.progress[to].match, self.log.committed)
        self.send(_msg(pb.MsgHeartbeat, to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for i in self.prs.voters:
            if i != self.id:
                self.send_append(i)

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_request_ctx()
        for i in self.prs.voters:
            if i != self.id:
                self.send_heartbeat(i, ctx)

    def maybe_commit(self) -> bool:
        if not self.log.maybe_commit(self.prs.committed(), self.term):
            return False
        if self.pending_read_index_messages and self.state is StateType.LEADER:
            # The first commit of our term: reads held back until now can go.
            pending, self.pending_read_index_messages = self.pending_read_index_messages, []
            for m in pending:
                self._handle_read_index(m)
        return True

    # --- role changes ---
    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = (
            self.election_timeout + self.rng.randrange(self.election_timeout))
        self.lead_transferee = NONE
        self.prs.reset_votes()
        last = self.log.last_index()
        for i in self.prs.voters:
            pr = Progress(next=last + 1, max_inflight=self.prs.max_inflight)
            if i == self.id:
                pr.match = last
                pr.recent_active = True
            self.prs.progress[i] = pr
        self.read_only = ReadOnly()
        self.pending_read_index_messages = []

    def append_entry(self, ents: list[pb.Entry]) -> None:
        li = self.log.last_index()
        for i, e in enumerate(ents):
            e.Term = self.term
            e.Index = li + 1 + i
        li = self.log.append(ents)
        if self.async_leader_persist:
            return  # counted in self_persisted once durable
        self.prs.progress[self.id].maybe_update(li)
        self.maybe_commit()

    def self_persisted(self, index: int, term: int) -> None:
        """The leader of ``term`` has its log durable up to ``index``
        (async_leader_persist): count its own copy, maybe commit. Ignored in
        any other role or term (a leader's log only grows within its term, so
        the report cannot refer to entries since replaced)."""
        if self.state is not StateType.LEADER or term != self.term:
            return
        pr = self.prs.progress.get(self.id)
        if pr is None or not pr.maybe_update(min(index, self.log.last_index())):
            return
        if self.maybe_commit():
            self.bcast_append()

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self.reset(term)
        self.tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        if self.state is StateType.LEADER:
            raise RuntimeError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self.reset(self.term + 1)
        self.tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.state is StateType.LEADER:
            raise RuntimeError("invalid transition [leader -> pre-candidate]")
        # Pre-vote changes neither term nor vote (section 9.6 of Ongaro's thesis).
        self._step = self._step_candidate
        self.prs.reset_votes()
        self.tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state is StateType.FOLLOWER:
            raise RuntimeError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self.reset(self.term)
        self.tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        self.prs.progress[self.id].become_replicate()
        # The log may hold an unapplied conf change: treat it as pending
        # (conservatively everything up to the last index), as etcd-io/raft does.
        self.pending_conf_index = self.log.last_index()
        # An entry of the new term lets the leader commit everything before
        # it (Reference: section 5.4.2; section 8 for reads).
        self.append_entry([pb.Entry(Data=b"")])

    # --- ticks ---
    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(pb.Message(type=pb.MsgHup, **{"from": self.id}))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(pb.Message(type=pb.MsgCheckQuorum, **{"from": self.id}))
            if self.state is StateType.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer timed out
        if self.state is not StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(pb.Message(type=pb.MsgBeat, **{"from": self.id}))

    # --- elections ---
    def hup(self, t: str) -> None:
        if self.state is StateType.LEADER or not self.promotable():
            return
        self.campaign(t)

    def campaign(self, t: str) -> None:
        if t == _CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg, term = pb.MsgPreVote, self.term + 1
        else:
            self.become_candidate()
            vote_msg, term = pb.MsgVote, self.term
        if self.poll(self.id, _vote_resp_type(vote_msg), True) is VoteResult.WON:
            # A single-node cluster wins at once.
            if t == _CAMPAIGN_PRE_ELECTION:
                self.campaign(_CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = _CAMPAIGN_TRANSFER if t == _CAMPAIGN_TRANSFER.decode() else b""
        for i in self.prs.voters:
            if i != self.id:
                self.send(_msg(vote_msg, i, term=term, index=self.log.last_index(),
                               logTerm=self.log.last_term(), context=ctx))

    def poll(self, node_id: int, t: int, granted: bool) -> VoteResult:
        self.prs.record_vote(node_id, granted)
        return self.prs.tally_votes()

    # --- the entry point ---
    def step(self, m: pb.Message) -> None:
        """Handle one message; raises ProposalDropped for an unplaceable MsgProp."""
        frm = getattr(m, "from")
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (pb.MsgVote, pb.MsgPreVote):
                force = m.context == _CAMPAIGN_TRANSFER
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    # We heard from a live leader within the minimum election
                    # timeout: ignore a disruptive candidate (section 6 of the thesis).
                    return
            if m.type == pb.MsgPreVote:
                pass  # a pre-vote never changes our term
            elif m.type == pb.MsgPreVoteResp and not m.reject:
                pass  # our term is bumped when the pre-vote is won
            elif m.type in (pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap):
                self.become_follower(m.term, frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (pb.MsgHeartbeat, pb.MsgApp):
                # A stale leader (e.g. after a partition healed) learns the new
                # term from this and steps down, instead of being ignored forever.
                self.send(_msg(pb.MsgAppResp, frm))
            elif m.type == pb.MsgPreVote:
                self.send(_msg(pb.MsgPreVoteResp, frm, term=self.term, reject=True))
            return

        if m.type == pb.MsgHup:
            self.hup(_CAMPAIGN_PRE_ELECTION if self.pre_vote else _CAMPAIGN_ELECTION)
        elif m.type in (pb.MsgVote, pb.MsgPreVote):
            can_vote = (self.vote == frm or (self.vote == NONE and self.lead == NONE)
                        or (m.type == pb.MsgPreVote and m.term > self.term))
            # Reference: section 5.4.1 (election restriction).
            if can_vote and self.log.is_up_to_date(m.index, m.logTerm):
                self.send(_msg(_vote_resp_type(m.type), frm, term=m.term))
                if m.type == pb.MsgVote:
                    self.election_elapsed = 0
                    self.vote = frm
            else:
                self.send(_msg(_vote_resp_type(m.type), frm, term=self.term, reject=True))
        else:
            self._step(m)

    # --- per-role handlers ---
    def _step_leader(self, m: pb.Message) -> None:
        t = m.type
        if t == pb.MsgBeat:
            self.bcast_heartbeat()
            return
        if t == pb.MsgCheckQuorum:
            if not self.prs.quorum_active(self.id):
                self.become_follower(self.term, NONE)
            for i, pr in self.prs.progress.items():
                if i != self.id:
                    pr.recent_active = False
            return
        if t == pb.MsgProp:
            if not m.entries:
                raise ValueError("stepped empty MsgProp")
            if self.lead_transferee != NONE:
                raise ProposalDropped("leadership transfer in progress")
            ents = list(m.entries)
            for i, e in enumerate(ents):
                if e.Type != pb.EntryConfChange:
                    continue
                if self.pending_conf_index > self.log.applied:
                    # A change is still in flight: this one becomes a no-op
                    # entry (the proposer times out and may retry).
                    ents[i] = pb.Entry(Type=pb.EntryNormal)
                else:
                    self.pending_conf_index = self.log.last_index() + i + 1
            self.append_entry(ents)
            self.bcast_append()
            return
        if t == pb.MsgReadIndex:
            self._handle_read_index(m)
            return

        frm = getattr(m, "from")
        pr = self.prs.progress.get(frm)
        if pr is None:
            return
        if t == pb.MsgAppResp:
            self._handle_append_response(m, pr)
        elif t == pb.MsgHeartbeatResp:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self.send_append(frm)
            if not m.context:
                return
            acks = self.read_only.recv_ack(frm, m.context)
            if acks is None or self.prs.vote_result(acks) is not VoteResult.WON:
                return
            for rs in self.read_only.advance(m.context):
                self._send_read_index_response(rs.req, rs.index)
        elif t == pb.MsgSnapStatus:
            if pr.state is not ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's MsgAppResp (or a heartbeat) before probing.
            pr.probe_sent = True
        elif t == pb.MsgUnreachable:
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
        elif t == pb.MsgTransferLeader:
            self._handle_transfer_leader(frm, pr)

    def _handle_append_response(self, m: pb.Message, pr: Progress) -> None:
        frm = getattr(m, "from")
        pr.recent_active = True
        if m.reject:
            next_probe = m.rejectHint
            if m.logTerm > 0:
                # Skip every entry of a term the follower does not have.
                next_probe = self.log.find_conflict_by_term(m.rejectHint, m.logTerm)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.bcast_append()
        elif old_paused:
            self.send_append(frm)
        while self.send_append(frm, send_if_empty=False):
            pass
        if frm == self.lead_transferee and pr.match == self.log.last_index():
            self.send(_msg(pb.MsgTimeoutNow, frm))

    def _handle_read_index(self, m: pb.Message) -> None:
        if len(self.prs.voters) == 1:
            self._send_read_index_response(m, self.log.committed)
            return
        # Until an entry of this term is committed the leader's commit index
        # may be behind the real one (section 8): hold the read until then.
        if self.log.term_or_zero(self.log.committed) != self.term:
            self.pending_read_index_messages.append(m)
            return
        ctx = m.entries[0].Data
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, ctx)
        self.bcast_heartbeat(ctx)

    def _send_read_index_response(self, req: pb.Message, index: int) -> None:
        frm = getattr(req, "from")
        if frm in (NONE, self.id):
            self.read_states.append(ReadState(index=index, request_ctx=req.entries[0].Data))
        else:
            self.send(_msg(pb.MsgReadIndexResp, frm, index=index, entries=req.entries))

    def _handle_transfer_leader(self, transferee: int, pr: Progress) -> None:
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        # The transfer must finish within an election timeout (section 3.10 of the thesis).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self.send(_msg(pb.MsgTimeoutNow, transferee))
        else:
            self.send_append(transferee)

    def _step_candidate(self, m: pb.Message) -> None:
        my_vote_resp = pb.MsgPreVoteResp if self.state is StateType.PRE_CANDIDATE else pb.MsgVoteResp
        t = m.type
        frm = getattr(m, "from")
        if t == pb.MsgProp:
            raise ProposalDropped("no leader")
        if t == pb.MsgApp:
            self.become_follower(m.term, frm)
            self._handle_append_entries(m)
        elif t == pb.MsgHeartbeat:
            self.become_follower(m.term, frm)
            self._handle_heartbeat(m)
        elif t == pb.MsgSnap:
            self.become_follower(m.term, frm)
            self._handle_snapshot(m)
        elif t == my_vote_resp:
            res = self.poll(frm, t, not m.reject)
            if res is VoteResult.WON:
                if self.state is StateType.PRE_CANDIDATE:
                    self.campaign(_CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res is VoteResult.LOST:
                # A MsgPreVoteResp with a higher term already made us a follower.
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: pb.Message) -> None:
        t = m.type
        frm = getattr(m, "from")
        if t == pb.MsgProp:
            if self.lead == NONE:
                raise ProposalDropped("no leader")
            m.to = self.lead
            self.send(m)
        elif t == pb.MsgApp:
            self.election_elapsed = 0
            self.lead = frm
            self._handle_append_entries(m)
        elif t == pb.MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = frm
            self._handle_heartbeat(m)
        elif t == pb.MsgSnap:
            self.election_elapsed = 0
            self.lead = frm
            self._handle_snapshot(m)
        elif t == pb.MsgTransferLeader:
            if self.lead != NONE:
                m.to = self.lead
                self.send(m)
        elif t == pb.MsgTimeoutNow:
            # Leadership transfer skips pre-vote: the leader asked for it.
            self.hup(_CAMPAIGN_TRANSFER.decode())
        elif t == pb.MsgReadIndex:
            if self.lead != NONE:
                m.to = self.lead
                self.send(m)
        elif t == pb.MsgReadIndexResp:
            if len(m.entries) == 1:
                self.read_states.append(ReadState(index=m.index, request_ctx=m.entries[0].Data))

    def _handle_append_entries(self, m: pb.Message) -> None:
        frm = getattr(m, "from")
        if m.index < self.log.committed:
            self.send(_msg(pb.MsgAppResp, frm, index=self.log.committed))
            return
        lastnewi, ok = self.log.maybe_append(m.index, m.logTerm, m.commit, list(m.entries))
        if ok:
            self.send(_msg(pb.MsgAppResp, frm, index=lastnewi))
            return
        # Reject with a hint: the last index that could match, and its term,
        # so the leader can skip a whole term per round trip (end of section 5.3).
        hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.logTerm)
        self.send(_msg(pb.MsgAppResp, frm, index=m.index, reject=True, rejectHint=hint,
                       logTerm=self.log.term_or_zero(hint)))

    def _handle_heartbeat(self, m: pb.Message) -> None:
        self.log.commit_to(m.commit)
        self.send(_msg(pb.MsgHeartbeatResp, getattr(m, "from"), context=m.context))

    def _handle_snapshot(self, m: pb.Message) -> None:
        frm = getattr(m, "from")
        if self.restore(m.snapshot):
            self.send(_msg(pb.MsgAppResp, frm, index=self.log.last_index()))
        else:
            self.send(_msg(pb.MsgAppResp, frm, index=self.log.committed))

    def restore(self, s: pb.Snapshot) -> bool:
        """Install snapshot ``s`` if it is ahead of our commit index (section 7)."""
        if s.metadata.index <= self.log.committed:
            return False
        if self.state is not StateType.FOLLOWER:
            # Only a leader of a newer term sends snapshots: stay safe anyway.
            self.become_follower(self.term + 1, NONE)
            return False
        if self.log.match_term(s.metadata.index, s.metadata.term):
            # We already have the snapshot's entries: just fast-forward commit.
            self.log.commit_to(s.metadata.index)
            return False
        self.log.restore(s)
        voters = list(s.metadata.conf_state.voters) or self.prs.voters
        self.prs = ProgressTracker(voters, max_inflight=self.prs.max_inflight)
        last = self.log.last_index()
        for i, pr in self.prs.progress.items():
            pr.next = last + 1
            if i == self.id:
                pr.match = last
        return True

    def apply_conf_change(self, cc: pb.ConfChange) -> pb.ConfState:
        """Apply a committed ConfChange to the voters (raft.applyConfChange with a
        simple majority config, one change at a time): AddNode adds a voter
        whose Progress probes from the end of our log, RemoveNode drops one,
        UpdateNode changes nothing here. A leader that is no longer a voter
        steps down; a leader recomputes its commit index for the new quorum.
        Returns the new ConfState. Raises ValueError for learner changes."""
        voters = set(self.prs.voters)
        if cc.type == pb.ConfChangeAddNode:
            voters.add(cc.node_id)
        elif cc.type == pb.ConfChangeRemoveNode:
            voters.discard(cc.node_id)
        elif cc.type == pb.ConfChangeAddLearnerNode:
            raise ValueError("learners are not supported")
        if cc.node_id == NONE or not voters:
            # An empty change (or removing the last voter) only ends the pending one.
            return self.conf_state()
        old = self.prs.progress
        self.prs.voters = sorted(voters)
        last = self.log.last_index()
        progress = {}
        for v in self.prs.voters:
            pr = old.get(v)
            if pr is None:
                pr = Progress(next=max(last, 1), max_inflight=self.prs.max_inflight)
                # A new member counts as active so check-quorum does not
                # depose the leader before it has heard from it.
                pr.recent_active = True
            progress[v] = pr
        self.prs.progress = progress
        self.prs.votes = {k: v for k, v in self.prs.votes.items() if k in voters}
        if self.state is not StateType.LEADER:
            return self.conf_state()
        if self.id not in voters:
            self.become_follower(self.term, NONE)
            return self.conf_state()
        if self.lead_transferee != NONE and self.lead_transferee not in voters:
            self.lead_transferee = NONE
        if self.maybe_commit():
            self.bcast_append()
        else:
            for v in self.prs.voters:
                if v != self.id:
                    self.send_append(v, send_if_empty=False)
        return self.conf_state()

    def advance(self, entries: list[pb.Entry], snapshot: pb.Snapshot | None,
                committed: list[pb.Entry]) -> None:
        """The caller persisted ``entries`` / ``snapshot`` and applied ``committed``."""
        if snapshot is not None:
            self.log.stable_snap_to(snapshot.metadata.index)
            if snapshot.metadata.index > self.log.applied:
                self.log.applied = snapshot.metadata.index
        if committed:
            self.log.applied_to(committed[-1].Index)
        if entries:
            self.log.stable_to(entries[-1].Index, entries[-1].Term)
