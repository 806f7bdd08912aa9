"""A 3-member etcdlite cluster as real processes, driven by the real etcdctl 3.4.

Covers the server side of Raft (issue 3): writes through any member, reads
linearizable and serializable everywhere, MemberList / Status on every
member, failover after kill -9 of the leader, a restarted member catching up
from its data dir, a wiped member rejoining through InstallSnapshot, lease
keep-alives forwarded to the leader, ``etcdctl snapshot save``, and
membership changes (``etcdctl member add/remove/update``: a new member
joining with --initial-cluster-state=existing, removing the leader).
"""
from __future__ import annotations

import json
import signal
import time

import pytest

import support


def ctl(c: support.EtcdCluster, eps, *args, **kw):
    return support.etcdctl(eps, *args, **kw)


def get_s(c, name, key):
    """Serializable read of ``key`` on member ``name`` (its own applied state)."""
    r = ctl(c, c.members[name].endpoint, "get", key, "--print-value-only", "--consistency=s", check=False)
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module (keys are disjoint; each fault test leaves it healthy)."""
    with support.etcd_cluster(tmp_path_factory.mktemp("etcdlite-cluster"), "etcdlite", snapshot_count=50) as c:
        yield c


def test_writes_and_reads_through_every_member(cluster):
    c = cluster
    n1, n2, n3 = (c.members[n].endpoint for n in ("n1", "n2", "n3"))
    assert ctl(c, n1, "put", "/a", "1").stdout.strip() == "OK"
    assert ctl(c, n2, "get", "/a", "--print-value-only").stdout.strip() == "1"   # linearizable on another member
    assert ctl(c, n3, "put", "/b", "2").stdout.strip() == "OK"                   # a follower's write goes to the leader
    support.wait_for("/b on n1 (serializable)", lambda: get_s(c, "n1", "/b") == "2", 5, 0.1)
    revs = {json.loads(ctl(c, ep, "get", "/b", "-w", "json").stdout)["header"]["revision"] for ep in (n1, n2, n3)}
    assert len(revs) == 1

    def members_ok(ep):
        ms = json.loads(ctl(c, ep, "member", "list", "-w", "json").stdout)["members"]
        urls = {m["name"]: m.get("clientURLs", []) for m in ms}
        return urls == {n: [f"http://{m.endpoint}"] for n, m in c.members.items()}
    for ep in (n1, n2, n3):
        support.wait_for(f"member list on {ep}", lambda: members_ok(ep), 10, 0.2)
    statuses = [c.status(n)["Status"] for n in c.members]
    assert len({s["leader"] for s in statuses}) == 1 and statuses[0]["leader"]
    assert sum(s["header"]["member_id"] == s["leader"] for s in statuses) == 1
    assert all(s["raftTerm"] >= 1 and s["raftIndex"] > 0 for s in statuses)


def test_lease_keepalive_through_a_follower_and_expiry_everywhere(cluster):
    c = cluster
    leader = c.wait_leader()
    follower = next(n for n in c.members if n != leader)
    fep = c.members[follower].endpoint
    out = ctl(c, fep, "lease", "grant", "3").stdout
    lease = out.split()[1]
    ctl(c, fep, "put", "/leased", "v", f"--lease={lease}")
    for _ in range(3):   # keep-alives via a follower reach the leader's lessor
        assert "keepalived with TTL(3)" in ctl(c, fep, "lease", "keep-alive", "--once", lease).stdout
        time.sleep(1.5)
    assert get_s(c, follower, "/leased") == "v"
    support.wait_for("leased key gone on every member",
                     lambda: all(get_s(c, n, "/leased") == "" for n in c.members), 10, 0.2)


def test_snapshot_save_and_status(cluster, tmp_path):
    c = cluster
    for i in range(30):
        ctl(c, c.endpoints, "put", f"/s{i}", "v" * 100)
    rev = json.loads(ctl(c, c.endpoints, "get", "/s29", "-w", "json").stdout)["header"]["revision"]
    db = tmp_path / "snap.db"
    out = ctl(c, c.members["n2"].endpoint, "snapshot", "save", str(db))
    assert "Snapshot saved" in out.stdout + out.stderr
    st = json.loads(ctl(c, [], "snapshot", "status", str(db), "-w", "json").stdout)
    assert st["revision"] == rev and st["totalKey"] >= 30 and st["totalSize"] > 0, st


def test_move_leader(cluster):
    c = cluster
    leader = c.wait_leader()
    target = next(n for n in c.members if n != leader)
    tid = c.status(target)["Status"]["header"]["member_id"]
    out = ctl(c, c.members[leader].endpoint, "move-leader", format(tid, "x"))
    assert "Leadership transferred" in out.stdout, out
    assert c.wait_leader() == target
    r = ctl(c, c.members[leader].endpoint, "move-leader", format(tid, "x"), check=False)
    assert r.returncode != 0 and "leader" in r.stderr   # etcdctl checks the endpoint is the leader first


def test_kill_leader_new_leader_restart_catches_up(cluster):
    c = cluster
    acked = {}
    for i in range(20):
        assert ctl(c, c.endpoints, "put", f"/k{i}", str(i)).returncode == 0
        acked[f"/k{i}"] = str(i)
    leader = c.wait_leader()
    c.kill(leader, signal.SIGKILL)
    live = c.live_endpoints()
    t0 = time.monotonic()

    def write() -> bool:
        return ctl(c, live, "put", "/after-kill", "x", check=False, command_timeout="1s").returncode == 0
    support.wait_for("a write after the leader died", write, 10, 0.05)
    failover = time.monotonic() - t0
    assert failover < 3.0, f"failover took {failover:.2f}s"
    for k, v in acked.items():
        assert ctl(c, live, "get", k, "--print-value-only").stdout.strip() == v
    c.start(leader)
    c.wait_healthy([leader], timeout=20)
    support.wait_for(f"{leader} caught up", lambda: get_s(c, leader, "/after-kill") == "x", 10, 0.1)
    assert get_s(c, leader, "/k7") == "7"


def test_wiped_member_rejoins_through_a_snapshot(cluster):
    c = cluster
    leader = c.wait_leader()
    for i in range(120):   # > 2 x --snapshot-count: the leader compacted its log
        ctl(c, c.members[leader].endpoint, "put", f"/w{i:03d}", str(i))
    c.wait_healthy(timeout=20)
    victim = next(n for n in c.members if n != leader)
    c.wipe(victim)
    c.start(victim, initial_cluster_state="existing")
    c.wait_healthy([victim], timeout=20)

    def caught_up() -> bool:
        # etcdctl 3.4 has no --count-only; -w json with --keys-only carries "count".
        r = ctl(c, c.members[victim].endpoint, "get", "--prefix", "/w", "--keys-only", "-w", "json",
                "--consistency=s", check=False)
        return r.returncode == 0 and json.loads(r.stdout).get("count") == 120
    support.wait_for(f"{victim} caught up", caught_up, 15, 0.2)
    assert "installed snapshot" in c.log(victim, 20000)
    ctl(c, c.members[victim].endpoint, "put", "/after-wipe", "y")
    assert get_s(c, victim, "/w119") == "119"


def test_member_change_errors_match_etcd(cluster):
    c = cluster
    r = ctl(c, c.endpoints, "member", "remove", "1234abcd", check=False)
    assert r.returncode != 0 and "etcdserver: member not found" in r.stderr
    r = ctl(c, c.endpoints, "member", "update", "1234abcd", "--peer-urls=http://127.0.0.1:1", check=False)
    assert r.returncode != 0 and "etcdserver: member not found" in r.stderr
    taken = c.members["n1"].peer_url
    r = ctl(c, c.endpoints, "member", "add", "dup", f"--peer-urls={taken}", check=False)
    assert r.returncode != 0 and "etcdserver: Peer URLs already exists" in r.stderr
    assert len(json.loads(ctl(c, c.endpoints, "member", "list", "-w", "json").stdout)["members"]) == 3


def test_member_add_join_restart_and_remove(cluster):
    """etcdctl member add; the new member joins with --initial-cluster-state=existing,
    catches up, survives restarts (its own and another member's), then is removed
    and exits, and the three left keep serving."""
    c = cluster
    m4 = support.ClusterMember("n4", support.free_port(), support.free_port(), c.tmp / "n4.data")
    ctl(c, c.endpoints, "put", "/before-add", "b")

    def member_add():
        # Right after the earlier tests' restarts a member may not yet have said hello to every
        # peer: it then refuses (as etcd's IsReadyToAddVotingMember does); an operator retries.
        r = ctl(c, c.endpoints, "member", "add", "n4", f"--peer-urls={m4.peer_url}", check=False)
        if r.returncode != 0 and "not enough started members" not in r.stderr:
            raise AssertionError(f"member add failed: {r.stderr}")
        return r.stdout if r.returncode == 0 else None
    out = support.wait_for("member add accepted", member_add, 15, 0.5)
    assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in out and f"n4={m4.peer_url}" in out, out
    new_id = int(out.split()[1], 16)
    ms = json.loads(ctl(c, c.endpoints, "member", "list", "-w", "json").stdout)["members"]
    assert len(ms) == 4 and any(m["ID"] == new_id and m["peerURLs"] == [m4.peer_url] for m in ms)
    c.members["n4"] = m4
    try:
        c.start("n4", initial_cluster_state="existing")
        c.wait_healthy(["n4"], timeout=20)
        support.wait_for("n4 caught up", lambda: get_s(c, "n4", "/before-add") == "b", 10, 0.1)
        ctl(c, m4.endpoint, "put", "/via-n4", "4")
        assert ctl(c, c.members["n1"].endpoint, "get", "/via-n4", "--print-value-only").stdout.strip() == "4"

        def names_on(ep):
            ms = json.loads(ctl(c, ep, "member", "list", "-w", "json").stdout)["members"]
            return sorted(m.get("name", "") for m in ms)
        for ep in c.endpoints:
            support.wait_for(f"4 named members on {ep}", lambda: names_on(ep) == ["n1", "n2", "n3", "n4"], 10, 0.2)
        c.restart("n4")   # its data dir remembers its ID and the members
        c.restart("n1")   # members.json: n1 still knows n4 after a restart
        assert names_on(c.members["n1"].endpoint) == ["n1", "n2", "n3", "n4"]
        assert "removed" in ctl(c, c.members["n1"].endpoint, "member", "remove", format(new_id, "x")).stdout
        m4.proc.wait(timeout=15)   # a removed member stops, as etcd does
        assert "removed from cluster" in c.log("n4", 5000)
        # Started again with its data dir, it refuses with a clear message.
        assert c.start("n4").wait(timeout=15) == 1
        assert "permanently removed" in c.log("n4", 2000)
    finally:
        c.kill("n4")
        del c.members["n4"]
    ms = json.loads(ctl(c, c.endpoints, "member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in ms) == ["n1", "n2", "n3"]
    assert ctl(c, c.endpoints, "put", "/after-remove", "x").stdout.strip() == "OK"
    c.wait_healthy(timeout=20)


def test_remove_the_leader_then_add_it_back_under_a_new_id(tmp_path):
    """The removed leader steps down and exits; the two left elect a leader and
    serve; the old member comes back wiped, added again (etcd's way back)."""
    with support.etcd_cluster(tmp_path, "etcdlite") as c:
        ctl(c, c.endpoints, "put", "/r", "1")
        leader = c.wait_leader()
        ms = json.loads(ctl(c, c.endpoints, "member", "list", "-w", "json").stdout)["members"]
        lid = next(m["ID"] for m in ms if m["name"] == leader)
        assert "removed" in ctl(c, c.members[leader].endpoint, "member", "remove", format(lid, "x")).stdout
        c.members[leader].proc.wait(timeout=15)
        live = c.live_endpoints()
        support.wait_for("a write after removing the leader",
                         lambda: ctl(c, live, "put", "/r", "2", check=False).returncode == 0, 10, 0.1)
        ms = json.loads(ctl(c, live, "member", "list", "-w", "json").stdout)["members"]
        assert len(ms) == 2 and lid not in [m["ID"] for m in ms]
        c.wipe(leader)
        out = ctl(c, live, "member", "add", leader, f"--peer-urls={c.members[leader].peer_url}").stdout
        assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in out
        c.start(leader, initial_cluster_state="existing")
        c.wait_healthy(timeout=20)
        support.wait_for(f"{leader} caught up", lambda: get_s(c, leader, "/r") == "2", 10, 0.1)
