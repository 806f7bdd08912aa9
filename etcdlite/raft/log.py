"""The Raft log as the core sees it; mirrors etcd-io/raft log.go (raftLog)
and log_unstable.go (unstable).

Entries and an incoming snapshot live in ``unstable`` until the caller has
persisted them (Ready.entries / Ready.snapshot, then advance()); older entries
are read from Storage. ``committed`` and ``applied`` are the two cursors.
"""
from __future__ import annotations

from proto.raftpb import raft_pb2 as pb

from etcdlite.raft.storage import (
    ErrCompacted, ErrUnavailable, MemoryStorage, StorageError, limit_size,
)


class Unstable:
    """Not-yet-persisted entries from ``offset`` and maybe a snapshot (log_unstable.go)."""

    def __init__(self, offset: int) -> None:
        self.snapshot: pb.Snapshot | None = None
        self.entries: list[pb.Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.metadata.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].Term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to ``i`` (of term ``t``) were persisted; drop them."""
        gt = self.maybe_term(i)
        if gt is None or gt != t or i < self.offset:
            return  # replaced by a newer append in the meantime
        self.entries = self.entries[i + 1 - self.offset:]
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: pb.Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: list[pb.Entry]) -> None:
        after = ents[0].Index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)  # the common case: O(len(ents))
        elif after <= self.offset:
            # Replace everything unstable; storage's conflicting tail is
            # overwritten when the caller persists these.
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[:after - self.offset] + list(ents)

    def slice(self, lo: int, hi: int) -> list[pb.Entry]:
        return self.entries[lo - self.offset:hi - self.offset]


class RaftLog:
    """Storage + unstable, with the committed and applied cursors (log.go raftLog).

    Invariant: applied <= committed <= last_index().
    """

    def __init__(self, storage: MemoryStorage, *, max_next_ents_size: int | None = None) -> None:
        self.storage = storage
        self.max_next_ents_size = max_next_ents_size
        first, last = storage.first_index(), storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})")

    # --- indexes and terms ---
    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i``; 0 outside [first-1, last]; raises ErrCompacted /
        ErrUnavailable when storage no longer / not yet holds it."""
        dummy = self.first_index() - 1
        if i < dummy or i > self.last_index():
            return 0
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """term(i), with 0 for a compacted or unavailable index."""
        try:
            return self.term(i)
        except StorageError:
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except StorageError:
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Whether a log ending at (lasti, term) is at least as up-to-date as ours
        (Reference: section 5.4.1)."""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # --- appending ---
    def maybe_append(self, index: int, log_term: int, committed: int,
                     ents: list[pb.Entry]) -> tuple[int, bool]:
        """Append MsgApp entries following (index, log_term) if that entry
        matches; returns (last new index, ok). Conflicting entries and everything
        after them are replaced (log matching, Reference: section 5.3)."""
        if not self.match_term(index, log_term):
            return 0, False
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise RuntimeError(f"entry {ci} conflict with committed entry [committed({self.committed})]")
            self.append(ents[ci - (index + 1):])
        self.commit_to(min(committed, lastnewi))
        return lastnewi, True

    def append(self, ents: list[pb.Entry]) -> int:
        if not ents:
            return self.last_index()
        if ents[0].Index - 1 < self.committed:
            raise RuntimeError(f"after({ents[0].Index - 1}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list[pb.Entry]) -> int:
        """Index of the first entry of ``ents`` that is new or conflicts, or 0."""
        for e in ents:
            if not self.match_term(e.Index, e.Term):
                return e.Index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast backtracking
        of a rejected MsgApp, the optimisation at the end of section 5.3)."""
        if index > self.last_index():
            return index
        while index > 0:
            try:
                if self.term(index) <= term:
                    break
            except StorageError:
                break
            index -= 1
        return index

    # --- reading ---
    def unstable_entries(self) -> list[pb.Entry]:
        return list(self.unstable.entries)

    def next_ents(self) -> list[pb.Entry]:
        """Committed entries not yet applied (capped at max_next_ents_size)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def has_next_ents(self) -> bool:
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def snapshot(self) -> pb.Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_size: int | None = None) -> list[pb.Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[pb.Entry]:
        """Every entry from first_index() (used by tests and debugging)."""
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[pb.Entry]:
        """Entries [lo, hi); raises ErrCompacted if lo was compacted away."""
        if lo > hi:
            raise ValueError(f"invalid slice {lo} > {hi}")
        if lo < self.first_index():
            raise ErrCompacted()
        if hi > self.last_index() + 1:
            raise ErrUnavailable()
        if lo == hi:
            return []
        ents: list[pb.Entry] = []
        off = self.unstable.offset
        if lo < off:
            ents = list(self.storage.entries(lo, min(hi, off), max_size))
            if len(ents) < min(hi, off) - lo:
                return ents  # storage hit max_size
        if hi > off:
            ents += self.unstable.slice(max(lo, off), hi)
        return limit_size(ents, max_size)

    # --- cursors ---
    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise RuntimeError(f"tocommit({tocommit}) is out of range [lastIndex({self.last_index()})]")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` only if that entry is from ``term``
        (Reference: section 5.4.2)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if not i:
            return
        if self.committed < i or i < self.applied:
            raise RuntimeError(f"applied({i}) is out of range [prevApplied({self.applied}), "
                               f"committed({self.committed})]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: pb.Snapshot) -> None:
        self.committed = s.metadata.index
        self.unstable.restore(s)
