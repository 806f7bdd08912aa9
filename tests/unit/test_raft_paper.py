"""Rule-by-rule tests of etcdlite's Raft core, after etcd-io/raft
raft_paper_test.go: each test names the section of the Raft paper
(Ongaro & Ousterhout) whose rule it checks.

The scripted cluster is etcdlite.raft.simulate.Simulation with no random
faults: tests drive it with campaign / tick_all / stabilize / isolate.
"""
from __future__ import annotations

import random

import pytest

from etcdlite.raft import (
    Config, MemoryStorage, ProposalDropped, RawNode, ReadState, StateType,
)
from etcdlite.raft import log as raft_log
from etcdlite.raft.simulate import Faults, SafetyViolation, Simulation
from proto.raftpb import raft_pb2 as pb

NO_FAULTS = Faults(loss=0, dup=0, partition=0, heal=0, crash=0, restart=0, compact=0,
                   propose=0, tick=0)


def cluster(n: int = 3, **kw) -> Simulation:
    return Simulation(seed=kw.pop("seed", 0), n=n, faults=NO_FAULTS, **kw)


def elect(sim: Simulation, i: int = 1) -> None:
    sim.nodes[i].node.campaign()
    sim.stabilize()
    assert sim.nodes[i].node.status().state is StateType.LEADER


def ticks(sim: Simulation, n: int) -> None:
    """Advance logical time by ``n`` ticks, delivering messages between ticks."""
    for _ in range(n):
        sim.tick_all()
        sim.stabilize()


def state(sim: Simulation, i: int) -> StateType:
    return sim.nodes[i].node.status().state


def msg(type: int, frm: int, to: int, **kw) -> pb.Message:
    m = pb.Message(type=type, to=to, **kw)
    setattr(m, "from", frm)
    return m


def entries(*terms: int) -> list[pb.Entry]:
    return [pb.Entry(Index=i + 1, Term=t, Data=f"e{i + 1}".encode()) for i, t in enumerate(terms)]


def node_with_log(node_id: int, peers: list[int], terms: list[int], *, term: int,
                  **kw) -> RawNode:
    st = MemoryStorage()
    st.append(entries(*terms))
    st.set_hard_state(pb.HardState(term=term))
    return RawNode(Config(id=node_id, peers=peers, storage=st, rng=random.Random(node_id), **kw))


def test_single_leader_elected_by_timeout():
    """Reference: section 5.2 -- randomized timeouts elect exactly one leader,
    which the others follow, and it commits an empty entry of its term."""
    sim = cluster(3, seed=4)
    for _ in range(40):
        sim.tick_all()
        sim.stabilize()
        leaders = [i for i in sim.ids if state(sim, i) is StateType.LEADER]
        if leaders:
            break
    assert len(leaders) == 1
    lead = leaders[0]
    term = sim.nodes[lead].node.status().term
    for i in sim.ids:
        st = sim.nodes[i].node.status()
        assert (st.lead, st.term, st.commit) == (lead, term, 1)


def test_campaign_elects_leader_and_followers_learn_it():
    """Reference: section 5.2 -- a candidate with a majority of votes wins."""
    sim = cluster(3)
    elect(sim, 1)
    assert [state(sim, i) for i in (2, 3)] == [StateType.FOLLOWER] * 2
    assert all(sim.nodes[i].node.status().lead == 1 for i in sim.ids)


def test_single_node_cluster_commits_alone():
    """Reference: section 5.2 -- a cluster of one is its own majority."""
    sim = cluster(1)
    elect(sim, 1)
    sim.nodes[1].node.propose(b"x")
    sim.stabilize()
    assert sim.nodes[1].applied == 2


@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "vote"])
def test_vote_refused_to_candidate_with_stale_log(pre_vote):
    """Reference: section 5.4.1 -- a voter denies its vote to a candidate whose
    log is less up-to-date (lower last term, or same term and shorter)."""
    voter = node_with_log(1, [1, 2, 3], [1, 2, 2], term=2, pre_vote=pre_vote)
    typ = pb.MsgPreVote if pre_vote else pb.MsgVote
    resp_type = pb.MsgPreVoteResp if pre_vote else pb.MsgVoteResp
    cases = [(3, 1, True), (5, 1, True), (2, 2, True), (3, 2, False), (4, 2, False), (1, 3, False)]
    for index, log_term, rejected in cases:
        voter.step(msg(typ, 2, 1, term=3, index=index, logTerm=log_term))
        rd = voter.ready()
        out = [m for m in rd.messages if m.type == resp_type]
        assert len(out) == 1 and out[0].reject is rejected, (index, log_term)
        voter.advance(rd)


def test_vote_granted_to_one_candidate_per_term():
    """Reference: section 5.2 -- each server votes for at most one candidate
    in a given term, first-come-first-served."""
    voter = node_with_log(1, [1, 2, 3], [], term=0, pre_vote=False)
    voter.step(msg(pb.MsgVote, 2, 1, term=1))
    voter.step(msg(pb.MsgVote, 3, 1, term=1))
    voter.step(msg(pb.MsgVote, 2, 1, term=1))  # a retransmission is granted again
    rd = voter.ready()
    assert [(getattr(m, "to"), m.reject) for m in rd.messages] == [(2, False), (3, True), (2, False)]
    assert rd.hard_state.vote == 2 and rd.must_sync


def test_leader_commits_only_entries_of_its_term():
    """Reference: section 5.4.2 (Figure 8) -- an entry of an earlier term is
    not committed by counting replicas; it commits once an entry of the
    leader's own term is replicated to a majority."""
    lead = node_with_log(1, [1, 2, 3], [1, 2], term=2, pre_vote=False)
    lead.campaign()
    lead.step(msg(pb.MsgVoteResp, 2, 1, term=3))
    assert lead.status().state is StateType.LEADER
    assert lead.raft.log.last_index() == 3  # the empty entry of term 3
    lead.step(msg(pb.MsgAppResp, 2, 1, term=3, index=2))
    assert lead.status().commit == 0, "index 2 is from term 2: no commit by counting"
    lead.step(msg(pb.MsgAppResp, 2, 1, term=3, index=3))
    assert lead.status().commit == 3


def test_follower_conflicting_suffix_repaired():
    """Reference: section 5.3 -- the leader forces followers' logs to
    duplicate its own; conflicting entries are overwritten, and reject hints
    skip a whole conflicting term per round trip."""
    sim = cluster(3, pre_vote=False)
    for i, (terms, term) in {1: ([1, 2, 2], 2), 2: ([1, 2, 2], 2),
                             3: ([1, 1, 1, 1, 1, 1], 1)}.items():
        st = sim.nodes[i].storage
        st.append(entries(*terms))
        st.set_hard_state(pb.HardState(term=term))
        sim.nodes[i].node = None
        sim.nodes[i].restarts = 0
        sim._start(i)
    elect(sim, 1)
    want = [(e.Index, e.Term) for e in sim.nodes[1].node.raft.log.all_entries()]
    assert want == [(1, 1), (2, 2), (3, 2), (4, 3)]
    for i in (2, 3):
        assert [(e.Index, e.Term) for e in sim.nodes[i].node.raft.log.all_entries()] == want
        assert [(e.Index, e.Term) for e in sim.nodes[i].storage.entries(1, 5)] == want
    assert all(sim.nodes[i].node.status().commit == 4 for i in sim.ids)


def test_reject_hint_skips_a_term_per_round_trip():
    """Reference: end of section 5.3 -- a rejection names the conflicting
    term's first index so the leader does not back up one entry at a time."""
    follower = node_with_log(2, [1, 2, 3], [1, 1, 1, 1, 1, 1], term=1)
    follower.step(msg(pb.MsgApp, 1, 2, term=3, index=6, logTerm=2, commit=0))
    rd = follower.ready()
    (resp,) = [m for m in rd.messages if m.type == pb.MsgAppResp]
    assert resp.reject and resp.index == 6
    # Every entry of term 1 is <= term 2, so the hint stays at 6 with its term:
    # the leader then jumps to its own last entry of term <= 1.
    assert (resp.rejectHint, resp.logTerm) == (6, 1)


def test_pre_vote_keeps_partitioned_node_from_bumping_terms():
    """Reference: Ongaro's thesis section 9.6 (pre-vote) -- an isolated node
    does not raise its term, and it rejoins without deposing the leader."""
    sim = cluster(3)
    elect(sim, 1)
    sim.isolate(3)
    ticks(sim, 60)
    assert sim.nodes[3].node.status().term == 1
    assert state(sim, 3) is StateType.PRE_CANDIDATE
    sim.cut.clear()
    ticks(sim, 3)
    assert state(sim, 1) is StateType.LEADER and sim.nodes[1].node.status().term == 1
    assert sim.nodes[3].node.status().lead == 1


def test_without_pre_vote_partitioned_node_disrupts():
    """Contrast for the pre-vote test: without pre-vote the isolated node's
    term keeps climbing (section 9.6 motivates pre-vote with this)."""
    sim = cluster(3, pre_vote=False)
    elect(sim, 1)
    sim.isolate(3)
    ticks(sim, 60)
    assert sim.nodes[3].node.status().term > 2


def test_check_quorum_steps_down_isolated_leader():
    """Reference: Ongaro's thesis section 6.2 (check quorum) -- a leader that
    hears from no majority within an election timeout steps down."""
    sim = cluster(3)
    elect(sim, 1)
    sim.isolate(1)
    ticks(sim, 2 * sim.election_tick + 1)
    assert state(sim, 1) is StateType.FOLLOWER
    assert sim.nodes[1].node.status().lead == 0


def test_read_index_on_leader_after_heartbeat_round():
    """Reference: section 8 -- a read is served at the commit index once a
    heartbeat round confirms leadership (ctx travels in heartbeat context)."""
    sim = cluster(3)
    elect(sim, 1)
    sim.nodes[1].node.propose(b"v")
    sim.stabilize()
    lead = sim.nodes[1].node
    lead.read_index(b"req-1")
    rd = lead.ready()
    assert rd.read_states == []
    beats = [m for m in rd.messages if m.type == pb.MsgHeartbeat]
    assert {m.to for m in beats} == {2, 3} and all(m.context == b"req-1" for m in beats)
    sim.queue.extend(rd.messages)
    lead.advance(rd)
    states: list[ReadState] = []
    real_handle = sim.handle_ready

    def capture(sn):
        if sn.id == 1:
            rd2 = sn.node.ready()
            states.extend(rd2.read_states)
            sim.queue.extend(rd2.messages)
            sn.node.advance(rd2)
        else:
            real_handle(sn)
    sim.handle_ready = capture
    sim.stabilize()
    assert states == [ReadState(index=2, request_ctx=b"req-1")]


def test_read_index_from_follower_is_forwarded():
    """Reference: section 8 -- a follower asks the leader for its read index."""
    sim = cluster(3)
    elect(sim, 1)
    got = []
    real = sim.handle_ready

    def capture(sn):
        if sn.id == 2 and sn.node.raft.read_states:
            got.extend(sn.node.raft.read_states)
        real(sn)
    sim.handle_ready = capture
    sim.nodes[2].node.read_index(b"f")
    sim.stabilize()
    assert got == [ReadState(index=1, request_ctx=b"f")]


def handle(rn: RawNode):
    """What the server does with one Ready: persist, then advance; returns it."""
    rd = rn.ready()
    st = rn.raft.log.storage
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    st.append(rd.entries)
    rn.advance(rd)
    return rd


def test_read_index_waits_for_leader_to_commit_in_its_term():
    """Reference: section 8 -- until its no-op entry commits, a new leader
    does not know the commit index: it holds the read back until then."""
    lead = node_with_log(1, [1, 2, 3], [1], term=1, pre_vote=False)
    lead.campaign()
    lead.step(msg(pb.MsgVoteResp, 2, 1, term=2))
    handle(lead)
    lead.read_index(b"early")
    rd = handle(lead)
    assert not [m for m in rd.messages if m.type == pb.MsgHeartbeat]
    lead.step(msg(pb.MsgAppResp, 2, 1, term=2, index=2))  # commits the no-op
    rd = handle(lead)
    beats = [m for m in rd.messages if m.type == pb.MsgHeartbeat]
    assert beats and all(m.context == b"early" for m in beats)
    lead.step(msg(pb.MsgHeartbeatResp, 3, 1, term=2, context=b"early"))
    assert lead.ready().read_states == [ReadState(index=2, request_ctx=b"early")]


def test_snapshot_installed_on_follower_behind_compaction():
    """Reference: section 7 -- a follower needing compacted entries gets
    InstallSnapshot (MsgSnap), then catches up through normal replication."""
    sim = cluster(3)
    elect(sim, 1)
    sim.isolate(3)
    for k in range(10):
        sim.nodes[1].node.propose(f"v{k}".encode())
    sim.stabilize()
    assert sim.nodes[1].applied == 11
    sim.compact(1)
    assert sim.nodes[1].storage.first_index() == 12
    sim.nodes[1].node.propose(b"after")
    sim.stabilize()
    sim.cut.clear()
    sent = []
    real = sim.deliver
    sim.deliver = lambda m, *, lossy: (sent.append(m.type), real(m, lossy=lossy))
    sim.tick_all(2)
    sim.stabilize()
    assert pb.MsgSnap in sent
    assert sim.nodes[3].storage.snapshot().metadata.index == 11
    assert sim.nodes[3].applied == 12 and sim.nodes[3].sm_hash == sim.nodes[1].sm_hash


def test_leadership_transfer():
    """Reference: Ongaro's thesis section 3.10 -- the leader brings the
    transferee up to date and sends MsgTimeoutNow; it wins the next term."""
    sim = cluster(3)
    elect(sim, 1)
    sim.nodes[1].node.propose(b"x")
    sim.stabilize()
    sim.nodes[1].node.transfer_leadership(2)
    sim.stabilize()
    assert state(sim, 2) is StateType.LEADER
    assert sim.nodes[2].node.status().term == 2
    assert state(sim, 1) is StateType.FOLLOWER and sim.nodes[1].node.status().lead == 2


def test_proposals_dropped_while_transfer_in_progress():
    """Reference: thesis section 3.10 -- the leader stops accepting client
    requests during a transfer; a lagging transferee is caught up first."""
    sim = cluster(3)
    elect(sim, 1)
    sim.isolate(3)
    sim.nodes[1].node.propose(b"x")
    sim.stabilize()
    sim.nodes[1].node.transfer_leadership(3)
    with pytest.raises(ProposalDropped):
        sim.nodes[1].node.propose(b"y")
    sim.cut.clear()
    sim.tick_all(1)
    sim.stabilize()
    assert state(sim, 3) is StateType.LEADER


def test_proposal_forwarded_by_follower_and_dropped_without_leader():
    """Reference: section 5.1 -- clients may talk to any server; without a
    known leader the proposal fails fast (ProposalDropped)."""
    sim = cluster(3)
    with pytest.raises(ProposalDropped):
        sim.nodes[2].node.propose(b"nobody")
    elect(sim, 1)
    sim.nodes[2].node.propose(b"via-2")
    sim.stabilize()
    assert [e.Data for e in sim.nodes[3].storage.entries(1, 3)] == [b"", b"via-2"]


def test_restart_keeps_term_vote_and_log():
    """Reference: Figure 2 -- currentTerm, votedFor and log[] are persistent;
    only what went through Ready and advance() survives a crash."""
    sim = cluster(3)
    elect(sim, 1)
    sim.nodes[1].node.propose(b"a")
    sim.stabilize()
    sim.crash(2)
    sim._start(2)
    st = sim.nodes[2].node.status()
    assert (st.term, st.vote, st.commit) == (1, 1, 2)
    assert sim.nodes[2].applied == 0  # no snapshot: the state machine replays
    sim.tick_all(1)
    sim.stabilize()
    assert sim.nodes[2].applied == 2


def test_local_message_types_from_network_ignored():
    """A peer cannot make us campaign or step down: MsgHup, MsgBeat,
    MsgCheckQuorum and the report types are local only (util.go IsLocalMsg)."""
    sim = cluster(3)
    for t in (pb.MsgHup, pb.MsgBeat, pb.MsgCheckQuorum, pb.MsgUnreachable, pb.MsgSnapStatus):
        sim.nodes[1].node.step(msg(t, 2, 1))
    assert not sim.nodes[1].node.has_ready()
    assert state(sim, 1) is StateType.FOLLOWER


def test_config_validation():
    """Bad configuration raises ValueError naming the problem."""
    with pytest.raises(ValueError, match="election tick"):
        RawNode(Config(id=1, peers=[1], storage=MemoryStorage(), election_tick=1))
    with pytest.raises(ValueError, match="none as id"):
        RawNode(Config(id=0, peers=[1], storage=MemoryStorage()))


def _figure8(monkeypatch, *, planted_bug: bool) -> Simulation:
    """Plays Figure 8 of the paper on 3 nodes, one entry per MsgApp:
    (a) leader 1 appends (2, t1) alone and crashes; (b) node 2 leads term 2,
    appends its no-op (2, t2) alone and crashes; (c) node 1 leads again and
    replicates (2, t1) to node 3 -- a majority -- then crashes before its own
    term's entry gets there; (d) node 2 comes back and can win node 3's vote."""
    if planted_bug:
        def count_replicas(self, max_index, term):  # commit by counting replicas only
            if max_index > self.committed:
                self.commit_to(max_index)
                return True
            return False
        monkeypatch.setattr(raft_log.RaftLog, "maybe_commit", count_replicas)
    sim = cluster(3, pre_vote=False, check_quorum=False, max_size_per_msg=1)
    dropped: list = []
    real = sim.deliver
    sim.deliver = lambda m, *, lossy: (
        real(m, lossy=lossy) if not any(f(m) for f in dropped) else None)

    def lead(i: int) -> None:
        for _ in range(3):
            sim.nodes[i].node.campaign()
            sim.stabilize()
            if state(sim, i) is StateType.LEADER:
                return
        raise AssertionError(f"{i} did not win")

    lead(1)
    sim.isolate(1)
    sim.nodes[1].node.propose(b"from-term-1")
    sim.stabilize()  # (a): the MsgApps carrying it are lost to the partition
    sim.crash(1)
    sim.cut.clear()
    dropped.append(lambda m: getattr(m, "from") == 2 and m.type == pb.MsgApp)
    lead(2)  # (b): its no-op (2, t2) never leaves node 2
    sim.crash(2)
    # Once node 3 holds (2, t1), node 1's (3, t3) never reaches it.
    dropped[:] = [lambda m: getattr(m, "from") == 1 and any(e.Index == 3 for e in m.entries)
                  and sim.nodes[3].node.raft.log.last_index() >= 2]
    sim._start(1)
    lead(1)  # (c): node 3 gets (2, t1) but never (3, t3)
    assert [e.Term for e in sim.nodes[3].node.raft.log.all_entries()] == [1, 1]
    sim.crash(1)
    dropped.clear()
    sim._start(2)
    lead(2)  # (d)
    return sim


def test_figure8_old_term_entry_not_committed_by_counting(monkeypatch):
    """Reference: section 5.4.2, Figure 8 -- the real rule keeps (2, t1)
    uncommitted, so node 2 may overwrite it; committing it by counting
    replicas (planted bug) lets a later leader lose a committed entry, which
    the simulator reports as a leader-completeness violation."""
    sim = _figure8(monkeypatch, planted_bug=False)
    assert sim.committed[2] == (2, b"")  # (2, t1) reached a majority, yet (2, t2) committed
    assert [e.Term for e in sim.nodes[3].node.raft.log.all_entries()] == [1, 2, 4]
    with pytest.raises(SafetyViolation, match="leader completeness"):
        _figure8(monkeypatch, planted_bug=True)


def test_async_leader_persist_counts_the_leader_only_once_durable():
    """Raft thesis 10.2.1: a leader may write its log in parallel with
    replication; its own copy counts toward the quorum once it says so."""
    st = MemoryStorage()
    n = RawNode(Config(id=1, peers=[1, 2, 3], storage=st, async_leader_persist=True))

    def flush():
        rd = n.ready()
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.entries:
            st.append(rd.entries)
        n.advance(rd)

    n.campaign()
    flush()
    for frm in (2, 3):
        n.step(msg(pb.MsgPreVoteResp, frm, 1, term=1))
    flush()
    for frm in (2, 3):
        n.step(msg(pb.MsgVoteResp, frm, 1, term=1))
    assert n.status().state is StateType.LEADER
    flush()
    last = st.last_index()
    # One follower acked: without the leader's own durable copy that is 1 of 3.
    n.step(msg(pb.MsgAppResp, 2, 1, term=1, index=last))
    assert n.status().commit < last
    n.persisted(last, 0)   # a stale term's report is ignored
    assert n.status().commit < last
    n.persisted(last, 1)
    assert n.status().commit == last
