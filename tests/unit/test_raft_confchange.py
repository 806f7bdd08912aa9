"""Membership changes in the Raft core (etcd-io/raft ProposeConfChange /
ApplyConfChange, one change at a time): adding a node that catches up, removing
a follower, removing the leader, and random schedules with changes under the
simulator's safety checks (etcdlite/raft/simulate.py)."""
from __future__ import annotations

import pytest

from etcdlite.raft import StateType
from etcdlite.raft.simulate import Faults, Simulation
from proto.raftpb import raft_pb2 as pb

QUIET = Faults(loss=0, dup=0, partition=0, heal=0, crash=0, restart=0, compact=0, propose=0, tick=0)


def leader(sim: Simulation) -> int | None:
    ls = [i for i in sim.ids if sim.nodes[i].node is not None
          and sim.nodes[i].node.raft.state is StateType.LEADER]
    return ls[0] if len(ls) == 1 else None


def elect(sim: Simulation, rounds: int = 100) -> int:
    for _ in range(rounds):
        sim.tick_all()
        sim.stabilize()
        lead = leader(sim)
        if lead is not None:
            return lead
    raise AssertionError("no leader")


def settle_change(sim: Simulation, rounds: int = 30) -> None:
    for _ in range(rounds):
        sim.tick_all()
        sim.stabilize()


def cc(t: int, node: int) -> pb.ConfChange:
    return pb.ConfChange(type=t, node_id=node)


def test_add_node_catches_up_and_counts_in_quorum():
    sim = Simulation(seed=1, faults=QUIET)
    lead = elect(sim)
    for _ in range(5):
        sim.propose(lead)
    sim.stabilize()
    new = sim.add_node()
    assert sim.propose_conf_change(lead, cc(pb.ConfChangeAddNode, new))
    settle_change(sim)
    lead = elect(sim)
    assert sim.nodes[lead].node.raft.prs.voters == [1, 2, 3, 4]
    assert sim.nodes[lead].node.raft.prs.quorum() == 3
    sim.propose(lead)
    sim.stabilize()
    last = sim.nodes[lead].node.raft.log.last_index()
    assert all(sim.nodes[i].applied == last for i in sim.ids)
    assert sim.nodes[new].node.raft.prs.voters == [1, 2, 3, 4]


def test_remove_follower_then_two_members_commit():
    sim = Simulation(seed=2, faults=QUIET)
    lead = elect(sim)
    victim = next(i for i in sim.ids if i != lead)
    assert sim.propose_conf_change(lead, cc(pb.ConfChangeRemoveNode, victim))
    settle_change(sim)
    assert victim in sim.removed and sim.nodes[victim].node is None
    lead = elect(sim)
    assert sim.nodes[lead].node.raft.prs.voters == sorted(sim.ids)
    assert len(sim.ids) == 2
    sim.propose(lead)
    sim.stabilize()
    last = sim.nodes[lead].node.raft.log.last_index()
    assert all(sim.nodes[i].applied == last for i in sim.ids)


def test_removed_leader_steps_down_and_the_rest_elect():
    sim = Simulation(seed=3, faults=QUIET)
    old = elect(sim)
    assert sim.propose_conf_change(old, cc(pb.ConfChangeRemoveNode, old))
    settle_change(sim)
    assert old in sim.removed
    new = elect(sim)
    assert new != old
    assert old not in sim.nodes[new].node.raft.prs.voters
    sim.propose(new)
    sim.stabilize()
    last = sim.nodes[new].node.raft.log.last_index()
    assert all(sim.nodes[i].applied == last for i in sim.ids)


def test_one_pending_conf_change_at_a_time():
    sim = Simulation(seed=4, faults=QUIET)
    lead = elect(sim)
    r = sim.nodes[lead].node.raft
    sim.nodes[lead].node.propose_conf_change(cc(pb.ConfChangeRemoveNode, 99))
    sim.nodes[lead].node.propose_conf_change(cc(pb.ConfChangeRemoveNode, 98))
    ents = r.log.entries(r.log.last_index() - 1, 1 << 20)
    assert [e.Type for e in ents] == [pb.EntryConfChange, pb.EntryNormal]
    assert ents[1].Data == b""
    sim.stabilize()
    # Applied: the next one is accepted.
    sim.nodes[lead].node.propose_conf_change(cc(pb.ConfChangeRemoveNode, 97))
    assert r.log.entries(r.log.last_index(), 1 << 20)[0].Type == pb.EntryConfChange


@pytest.mark.parametrize("seed", range(40))
def test_random_schedules_with_membership_changes(seed):
    sim = Simulation(seed=seed)
    for step in range(400):
        sim.step()
        if step % 50 == 25:
            lead = leader(sim)
            if lead is None:
                continue
            if sim.rng.random() < 0.5 and len(sim.ids) < 5:
                new = sim.add_node()
                sim.propose_conf_change(lead, cc(pb.ConfChangeAddNode, new))
            elif len(sim.ids) > 3:
                victim = sim.rng.choice(sim.ids)
                sim.propose_conf_change(lead, cc(pb.ConfChangeRemoveNode, victim))
    sim.check_logs_match()
    converge_on_one_config(sim)


def converge_on_one_config(sim: Simulation, rounds: int = 400) -> None:
    """Heal, restart, and require that the leader's voters all apply its last
    entry and agree on the config (nodes never added are left out)."""
    sim.cut.clear()
    for i in sim.ids:
        if sim.nodes[i].node is None:
            sim._start(i)
    proposed = False
    for _ in range(rounds):
        sim.tick_all()
        sim.stabilize()
        lead = leader(sim)
        if lead is None:
            continue
        if not proposed:
            sim.propose(lead)   # an entry of the current term commits the rest
            proposed = True
            continue
        r = sim.nodes[lead].node.raft
        voters, last = r.prs.voters, r.log.last_index()
        if all(v in sim.ids and sim.nodes[v].applied == last for v in voters):
            for v in voters:
                assert sim.nodes[v].node.raft.prs.voters == voters, f"seed {sim.seed}: configs differ"
            return
    raise AssertionError(f"seed {sim.seed}: no convergence")
