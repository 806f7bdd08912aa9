"""In-memory Raft log storage; mirrors etcd-io/raft storage.go (MemoryStorage).

The Raft core reads stable state (hard state, persisted entries, the latest
snapshot) through this interface. The server keeps a MemoryStorage in step
with its WAL: it appends what each Ready hands it, and rebuilds it from the
WAL + snapshot file on restart.

Layout: ``ents[0]`` is a dummy entry holding the index and term of the last
snapshot (or 0/0), so ``first_index() == ents[0].Index + 1``.
"""
from __future__ import annotations

from proto.raftpb import raft_pb2 as pb


class StorageError(Exception):
    """Base of the storage errors the Raft core knows how to handle."""


class ErrCompacted(StorageError):
    """The requested index is at or before the last compaction (storage.go ErrCompacted)."""

    def __init__(self) -> None:
        super().__init__("requested index is unavailable due to compaction")


class ErrUnavailable(StorageError):
    """The requested entry is beyond the last stored index (storage.go ErrUnavailable)."""

    def __init__(self) -> None:
        super().__init__("requested entry at index is unavailable")


class ErrSnapOutOfDate(StorageError):
    """A snapshot older than the current one was offered (storage.go ErrSnapOutOfDate)."""

    def __init__(self) -> None:
        super().__init__("requested index is older than the existing snapshot")


def limit_size(ents: list[pb.Entry], max_size: int | None) -> list[pb.Entry]:
    """Return the longest prefix of ``ents`` within ``max_size`` bytes, never empty
    when ``ents`` is not (mirrors util.go limitSize); ``None`` means no limit."""
    if max_size is None or not ents:
        return ents
    size = ents[0].ByteSize()
    n = 1
    while n < len(ents):
        size += ents[n].ByteSize()
        if size > max_size:
            break
        n += 1
    return ents[:n]


class MemoryStorage:
    """Raft storage backed by lists; mirrors etcd-io/raft MemoryStorage.

    Not thread-safe: the server drives it from the same task as its RawNode.
    """

    def __init__(self) -> None:
        self.hard_state = pb.HardState()
        self._snapshot = pb.Snapshot(metadata=pb.SnapshotMetadata(conf_state=pb.ConfState()))
        self.ents: list[pb.Entry] = [pb.Entry()]

    # --- read side (storage.go Storage interface) ---
    def initial_state(self) -> tuple[pb.HardState, pb.ConfState]:
        """Return copies of (HardState, ConfState of the last snapshot)."""
        hs = pb.HardState()
        hs.CopyFrom(self.hard_state)
        cs = pb.ConfState()
        cs.CopyFrom(self._snapshot.metadata.conf_state)
        return hs, cs

    def set_hard_state(self, hs: pb.HardState) -> None:
        """Persist ``hs`` (a copy is kept)."""
        self.hard_state = pb.HardState()
        self.hard_state.CopyFrom(hs)

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[pb.Entry]:
        """Entries with indexes in [lo, hi), capped at ``max_size`` bytes (at least one).

        Raises ErrCompacted if lo <= the snapshot index, ErrUnavailable if hi is
        past last_index()+1.
        """
        offset = self.ents[0].Index
        if lo <= offset:
            raise ErrCompacted()
        if hi > self.last_index() + 1:
            raise ErrUnavailable()
        if len(self.ents) == 1:  # only the dummy entry
            raise ErrUnavailable()
        return limit_size(self.ents[lo - offset:hi - offset], max_size)

    def term(self, i: int) -> int:
        """Term of entry ``i``; raises ErrCompacted / ErrUnavailable outside the log."""
        offset = self.ents[0].Index
        if i < offset:
            raise ErrCompacted()
        if i - offset >= len(self.ents):
            raise ErrUnavailable()
        return self.ents[i - offset].Term

    def last_index(self) -> int:
        """Index of the last stored entry (the snapshot index when empty)."""
        return self.ents[0].Index + len(self.ents) - 1

    def first_index(self) -> int:
        """Index of the first entry still available (snapshot index + 1)."""
        return self.ents[0].Index + 1

    def snapshot(self) -> pb.Snapshot:
        """The latest snapshot (shared object: do not mutate)."""
        return self._snapshot

    # --- write side ---
    def apply_snapshot(self, snap: pb.Snapshot) -> None:
        """Replace the whole log with ``snap``; raises ErrSnapOutOfDate if older."""
        if self._snapshot.metadata.index >= snap.metadata.index:
            raise ErrSnapOutOfDate()
        self._snapshot = pb.Snapshot()
        self._snapshot.CopyFrom(snap)
        self.ents = [pb.Entry(Term=snap.metadata.term, Index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: pb.ConfState | None,
                        data: bytes) -> pb.Snapshot:
        """Record a snapshot of the applied state at ``index`` (<= last_index).

        Raises ErrSnapOutOfDate if ``index`` is not newer than the current
        snapshot. Call compact() afterwards to drop the covered entries.
        """
        if index <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate()
        offset = self.ents[0].Index
        if index > self.last_index():
            raise ValueError(f"snapshot {index} is out of bound lastindex({self.last_index()})")
        snap = pb.Snapshot(data=data, metadata=pb.SnapshotMetadata(
            index=index, term=self.ents[index - offset].Term))
        if conf_state is not None:
            snap.metadata.conf_state.CopyFrom(conf_state)
        else:
            snap.metadata.conf_state.CopyFrom(self._snapshot.metadata.conf_state)
        self._snapshot = snap
        return snap

    def compact(self, index: int) -> None:
        """Discard entries before ``index``; entry ``index`` becomes the dummy.

        Raises ErrCompacted if already compacted that far, ValueError if past
        the last index.
        """
        offset = self.ents[0].Index
        if index <= offset:
            raise ErrCompacted()
        if index > self.last_index():
            raise ValueError(f"compact {index} is out of bound lastindex({self.last_index()})")
        i = index - offset
        dummy = pb.Entry(Index=self.ents[i].Index, Term=self.ents[i].Term)
        self.ents = [dummy] + self.ents[i + 1:]

    def append(self, entries: list[pb.Entry]) -> None:
        """Append ``entries`` (contiguous), truncating any conflicting suffix.

        Entries already compacted are ignored; a gap after last_index raises
        ValueError.
        """
        if not entries:
            return
        first = self.first_index()
        last = entries[0].Index + len(entries) - 1
        if last < first:
            return
        if first > entries[0].Index:
            entries = entries[first - entries[0].Index:]
        offset = entries[0].Index - self.ents[0].Index
        if offset > len(self.ents):
            raise ValueError(f"missing log entry [last: {self.last_index()}, "
                             f"append at: {entries[0].Index}]")
        # In place: copying the whole log per append would make appends O(log).
        del self.ents[offset:]
        self.ents.extend(_copy(e) for e in entries)


def _copy(e: pb.Entry) -> pb.Entry:
    c = pb.Entry()
    c.CopyFrom(e)
    return c
