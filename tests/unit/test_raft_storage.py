"""MemoryStorage and the raftLog cursors, after etcd-io/raft storage_test.go
and log_test.go: compaction, snapshots, conflict truncation, the errors."""
from __future__ import annotations

import pytest

from etcdlite.raft import ErrCompacted, ErrSnapOutOfDate, ErrUnavailable, MemoryStorage
from etcdlite.raft.log import RaftLog
from proto.raftpb import raft_pb2 as pb


def ents(*pairs):
    return [pb.Entry(Index=i, Term=t) for i, t in pairs]


def storage(*pairs) -> MemoryStorage:
    """A storage whose dummy entry is the first pair (as after a snapshot)."""
    st = MemoryStorage()
    st.ents = ents(*pairs)
    return st


def idx_terms(es):
    return [(e.Index, e.Term) for e in es]


def test_term_and_bounds():
    st = storage((3, 3), (4, 4), (5, 5))
    assert (st.first_index(), st.last_index()) == (4, 5)
    assert [st.term(i) for i in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(ErrCompacted):
        st.term(2)
    with pytest.raises(ErrUnavailable):
        st.term(6)


def test_entries_slices_and_size_limit():
    st = storage((3, 3), (4, 4), (5, 5), (6, 6))
    with pytest.raises(ErrCompacted):
        st.entries(3, 5)
    with pytest.raises(ErrUnavailable):
        st.entries(4, 8)
    assert idx_terms(st.entries(4, 6)) == [(4, 4), (5, 5)]
    one = pb.Entry(Index=4, Term=4).ByteSize()
    assert idx_terms(st.entries(4, 7, max_size=0)) == [(4, 4)]  # never empty
    assert idx_terms(st.entries(4, 7, max_size=2 * one)) == [(4, 4), (5, 5)]


def test_compact_keeps_a_dummy_entry():
    st = storage((3, 3), (4, 4), (5, 5))
    with pytest.raises(ErrCompacted):
        st.compact(3)
    st.compact(4)
    assert idx_terms(st.ents) == [(4, 4), (5, 5)]
    assert st.first_index() == 5 and st.term(4) == 4
    with pytest.raises(ValueError):
        st.compact(9)


def test_create_and_apply_snapshot():
    st = storage((3, 3), (4, 4), (5, 5))
    cs = pb.ConfState(voters=[1, 2, 3])
    snap = st.create_snapshot(4, cs, b"data")
    assert (snap.metadata.index, snap.metadata.term, snap.data) == (4, 4, b"data")
    with pytest.raises(ErrSnapOutOfDate):
        st.create_snapshot(4, cs, b"again")
    other = MemoryStorage()
    other.apply_snapshot(snap)
    assert (other.first_index(), other.last_index()) == (5, 4)
    assert list(other.initial_state()[1].voters) == [1, 2, 3]
    with pytest.raises(ErrSnapOutOfDate):
        other.apply_snapshot(snap)


@pytest.mark.parametrize("new, want", [
    pytest.param(ents((3, 3), (4, 4), (5, 5)), [(3, 3), (4, 4), (5, 5)], id="same"),
    pytest.param(ents((3, 3), (4, 6), (5, 6)), [(3, 3), (4, 6), (5, 6)], id="overwrite"),
    pytest.param(ents((3, 3), (4, 4), (5, 5), (6, 5)), [(3, 3), (4, 4), (5, 5), (6, 5)],
                 id="extend"),
    pytest.param(ents((2, 3), (3, 3), (4, 5)), [(3, 3), (4, 5)], id="ignore-compacted"),
    pytest.param(ents((4, 5)), [(3, 3), (4, 5)], id="truncate"),
    pytest.param(ents((6, 5)), [(3, 3), (4, 4), (5, 5), (6, 5)], id="append"),
])
def test_append_truncates_conflicts(new, want):
    st = storage((3, 3), (4, 4), (5, 5))
    st.append(new)
    assert idx_terms(st.ents) == want


def test_append_with_gap_is_an_error():
    st = storage((3, 3), (4, 4))
    with pytest.raises(ValueError, match="missing log entry"):
        st.append(ents((7, 4)))


def test_raft_log_reads_across_storage_and_unstable():
    """Entries come from storage below unstable.offset and from memory above."""
    st = MemoryStorage()
    st.append(ents((1, 1), (2, 1)))
    log = RaftLog(st)
    log.append(ents((3, 2), (4, 2)))
    assert idx_terms(log.entries(1)) == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert log.last_term() == 2 and log.is_up_to_date(4, 2) and not log.is_up_to_date(9, 1)
    lastnew, ok = log.maybe_append(2, 1, 3, ents((3, 3)))
    assert (lastnew, ok, log.committed) == (3, True, 3)
    assert idx_terms(log.entries(1)) == [(1, 1), (2, 1), (3, 3)]
    assert log.maybe_append(3, 2, 3, []) == (0, False)  # term mismatch at 3
    with pytest.raises(RuntimeError, match="conflict with committed"):
        log.maybe_append(2, 1, 3, ents((3, 4)))


def test_maybe_commit_requires_current_term():
    """Reference: section 5.4.2."""
    st = MemoryStorage()
    st.append(ents((1, 1), (2, 2)))
    log = RaftLog(st)
    assert not log.maybe_commit(2, 3)
    assert log.maybe_commit(2, 2) and log.committed == 2
