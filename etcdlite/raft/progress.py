"""The leader's view of each follower; mirrors etcd-io/raft tracker/
(progress.go, inflights.go, tracker.go) and quorum/majority.go.

A follower is probed (one MsgApp per heartbeat until an index matches), then
replicated to optimistically (up to max_inflight un-acked MsgApps), or sent a
snapshot when the entries it needs were compacted away.
"""
from __future__ import annotations

import enum
from collections import deque


class ProgressState(str, enum.Enum):
    """tracker.StateType."""
    PROBE = "StateProbe"
    REPLICATE = "StateReplicate"
    SNAPSHOT = "StateSnapshot"


class VoteResult(enum.Enum):
    """quorum.VoteResult."""
    PENDING = 1
    LOST = 2
    WON = 3


class Inflights:
    """Last indexes of the MsgApps in flight to one follower (inflights.go).

    Bounded at ``size`` messages; acknowledged indexes are freed in order.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf: deque[int] = deque()

    def add(self, index: int) -> None:
        if self.full():
            raise RuntimeError("cannot add into a full inflights")
        self.buf.append(index)

    def free_le(self, to: int) -> None:
        """Free every in-flight message whose last index is <= ``to``."""
        while self.buf and self.buf[0] <= to:
            self.buf.popleft()

    def free_first_one(self) -> None:
        if self.buf:
            self.buf.popleft()

    def full(self) -> bool:
        return len(self.buf) >= self.size

    def reset(self) -> None:
        self.buf.clear()


class Progress:
    """Replication state of one follower (tracker.Progress).

    match: highest index known replicated; next: next index to send;
    pending_snapshot: index of the snapshot in flight (StateSnapshot);
    recent_active: heard from since the last check-quorum round;
    probe_sent: in StateProbe, a MsgApp is outstanding (sending paused).
    """

    def __init__(self, *, match: int = 0, next: int = 1, max_inflight: int = 256) -> None:
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Probe from match+1 (or just after a finished snapshot)."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """Record an ack up to ``n``; returns False if it was stale."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejected MsgApp at index ``rejected``; ``match_hint`` is the
        follower's guess of the highest index that may match. Returns False
        for a stale rejection."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether sending MsgApp to this follower is throttled."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"


class ProgressTracker:
    """Voters, their Progress and the votes of the current election (tracker.go).

    Membership is a static majority config of ``voters``.
    """

    def __init__(self, voters: list[int], *, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters = sorted(set(voters))
        self.progress: dict[int, Progress] = {
            v: Progress(max_inflight=max_inflight) for v in self.voters}
        self.votes: dict[int, bool] = {}

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def committed(self) -> int:
        """Largest index replicated on a majority (majority.go CommittedIndex)."""
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def vote_result(self, votes: dict[int, bool] | set[int]) -> VoteResult:
        """Outcome of ``votes`` (id -> granted, or a set of granting ids)."""
        if isinstance(votes, set):
            votes = {v: True for v in votes}
        granted = sum(1 for v in self.voters if votes.get(v) is True)
        missing = sum(1 for v in self.voters if v not in votes)
        q = self.quorum()
        if granted >= q:
            return VoteResult.WON
        if granted + missing >= q:
            return VoteResult.PENDING
        return VoteResult.LOST

    def quorum_active(self, self_id: int) -> bool:
        """Whether a quorum was recently active (the leader counts itself)."""
        active = {v for v in self.voters if v == self_id or self.progress[v].recent_active}
        return self.vote_result(active) is VoteResult.WON

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> VoteResult:
        return self.vote_result(self.votes)

    def reset_votes(self) -> None:
        self.votes = {}
