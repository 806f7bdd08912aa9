"""Flow control on the leader, after etcd-io/raft tracker/progress_test.go,
inflights_test.go and raft_flow_control_test.go: probe sends one MsgApp at a
time, replicate pipelines up to max_inflight_msgs, snapshot waits for the
report, and an unreachable follower falls back to probing."""
from __future__ import annotations

import random

from etcdlite.raft import Config, MemoryStorage, RawNode, StateType
from etcdlite.raft.progress import Inflights, Progress, ProgressState, ProgressTracker
from proto.raftpb import raft_pb2 as pb


def msg(type: int, frm: int, to: int, **kw) -> pb.Message:
    m = pb.Message(type=type, to=to, **kw)
    setattr(m, "from", frm)
    return m


def leader(**kw) -> RawNode:
    """Node 1 of {1, 2, 3}, leader of term 1 with its no-op at index 1, persisted."""
    rn = RawNode(Config(id=1, peers=[1, 2, 3], storage=MemoryStorage(), pre_vote=False,
                        rng=random.Random(1), **kw))
    rn.campaign()
    rn.step(msg(pb.MsgVoteResp, 2, 1, term=1))
    assert rn.status().state is StateType.LEADER
    persist(rn)
    return rn


def persist(rn: RawNode) -> list[pb.Message]:
    rd = rn.ready()
    st = rn.raft.log.storage
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    st.append(rd.entries)
    rn.advance(rd)
    return rd.messages


def apps_to(msgs, to):
    return [m for m in msgs if m.type == pb.MsgApp and m.to == to]


def test_inflights_window():
    infl = Inflights(3)
    for i in (5, 7, 9):
        infl.add(i)
    assert infl.full()
    infl.free_le(7)
    assert list(infl.buf) == [9] and not infl.full()
    infl.free_first_one()
    assert not infl.buf


def test_probe_sends_one_append_until_acked():
    pr = Progress(next=5, max_inflight=4)
    assert not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()
    assert pr.maybe_update(4) and not pr.is_paused()  # an ack unpauses


def test_maybe_decr_to_ignores_stale_rejections():
    pr = Progress(match=3, next=6, max_inflight=4)
    pr.state = ProgressState.REPLICATE
    assert not pr.maybe_decr_to(2, 2)  # rejected index <= match: stale
    assert pr.maybe_decr_to(5, 4) and pr.next == 4
    probe = Progress(match=0, next=10, max_inflight=4)
    assert not probe.maybe_decr_to(5, 5)  # not the index we last probed
    assert probe.maybe_decr_to(9, 3) and probe.next == 4


def test_committed_is_the_majority_match():
    trk = ProgressTracker([1, 2, 3, 4, 5], max_inflight=4)
    for i, m in zip(trk.voters, (9, 7, 5, 3, 1)):
        trk.progress[i].match = m
    assert trk.committed() == 5


def test_replicate_pipelines_up_to_max_inflight():
    """Reference: etcd raft_flow_control_test -- at most max_inflight_msgs
    MsgApps are in flight; an ack frees the window."""
    rn = leader(max_inflight_msgs=3)
    rn.step(msg(pb.MsgAppResp, 2, 1, term=1, index=1))  # 2 enters StateReplicate
    persist(rn)
    sent = []
    for k in range(6):
        rn.propose(f"p{k}".encode())
        sent += apps_to(persist(rn), 2)
    assert len(sent) == 3
    assert rn.raft.prs.progress[2].inflights.full()
    rn.step(msg(pb.MsgAppResp, 2, 1, term=1, index=sent[0].entries[-1].Index))
    more = apps_to(persist(rn), 2)
    assert more and more[0].entries[0].Index == sent[-1].entries[-1].Index + 1


def test_unreachable_follower_falls_back_to_probe():
    rn = leader()
    rn.step(msg(pb.MsgAppResp, 2, 1, term=1, index=1))
    assert rn.raft.prs.progress[2].state is ProgressState.REPLICATE
    rn.report_unreachable(2)
    assert rn.raft.prs.progress[2].state is ProgressState.PROBE


def test_snapshot_state_waits_for_report():
    """Reference: section 7 -- while a snapshot is in flight nothing else is
    sent; a failed report goes back to probing, paused until the next ack."""
    rn = leader()
    for k in range(3):
        rn.propose(f"p{k}".encode())
    persist(rn)
    st = rn.raft.log.storage
    st.create_snapshot(4, pb.ConfState(voters=[1, 2, 3]), b"snap")
    st.compact(4)
    # Follower 3 is recently active and rejects at index 0: it needs the snapshot.
    rn.step(msg(pb.MsgHeartbeatResp, 3, 1, term=1))
    rn.step(msg(pb.MsgAppResp, 3, 1, term=1, index=4, reject=True, rejectHint=0))
    snaps = [m for m in persist(rn) if m.type == pb.MsgSnap]
    assert snaps and snaps[-1].snapshot.metadata.index == 4
    pr = rn.raft.prs.progress[3]
    assert pr.state is ProgressState.SNAPSHOT and pr.is_paused()
    rn.report_snapshot(3, ok=False)
    assert pr.state is ProgressState.PROBE and pr.is_paused()
    rn.step(msg(pb.MsgHeartbeatResp, 3, 1, term=1))  # unpauses: probe again
    assert [m.type for m in persist(rn) if m.to == 3] == [pb.MsgSnap]  # still behind first index
