"""Issue 3's acceptance tests: a 3-member cluster driven by the real etcdctl 3.4 and by grpc clients under faults.

Every test runs twice with the same code: against real etcd 3.4
(/usr/bin/etcd, the reference) and against etcdlite (``python -m etcdlite``),
each member its own process on free loopback ports (support.etcd_cluster).
While etcdlite refuses more than one member the etcdlite half skips with
the reason; it starts running on its own once the Raft cluster lands.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import grpc
import pytest

import support
from proto.etcdserverpb import rpc_pb2 as pb
from proto.etcdserverpb import rpc_pb2_grpc

KINDS = ["etcd", "etcdlite"]
FAILOVER_LIMIT_S = 3.0      # issue 3: a new leader serves writes within 3 s (etcd: about 1.5 s)
LEADER_KILLS = 10


@pytest.fixture(scope="module", params=KINDS)
def cluster(request, tmp_path_factory):
    """One 3-member cluster per kind shared by the etcdctl tests (they use disjoint keys)."""
    with support.etcd_cluster(tmp_path_factory.mktemp(f"{request.param}-ctl"), request.param) as c:
        yield c


def ectl(c: support.EtcdCluster, endpoints, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """support.etcdctl against ``endpoints`` of cluster ``c``.

    For etcdlite only, an RPC it answers with gRPC Unimplemented skips the
    test with etcdlite's message (so the suite stays green while a feature is
    being built and runs it as soon as it lands); etcd never skips.
    """
    r = support.etcdctl(endpoints, *args, check=False, **kw)
    if r.returncode != 0 and c.kind == "etcdlite" and "code = Unimplemented" in r.stderr:
        msg = next((line for line in r.stderr.splitlines() if line.startswith("Error:")), r.stderr[-300:])
        pytest.skip(f"etcdlite does not implement `etcdctl {' '.join(args[:2])}` yet: {msg}")
    if check and r.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
    return r


def ctl(c: support.EtcdCluster, *args: str, **kw) -> subprocess.CompletedProcess:
    """etcdctl against every member of ``c`` (it picks one)."""
    return ectl(c, c.endpoints, *args, **kw)


def unique(prefix: str) -> str:
    return f"/{prefix}/{uuid.uuid4().hex[:8]}/"


# --- etcdctl ------------------------------------------------------------------

def test_put_get_prefix_rev_json_del(cluster):
    p = unique("kv")
    assert ctl(cluster, "put", p + "a", "1").stdout.strip() == "OK"
    rev1 = json.loads(ctl(cluster, "get", p + "a", "-w", "json").stdout)["header"]["revision"]
    ctl(cluster, "put", p + "a", "2")
    ctl(cluster, "put", p + "b", "3")
    assert ctl(cluster, "get", "--prefix", p).stdout.split() == [p + "a", "2", p + "b", "3"]
    assert ctl(cluster, "get", p + "a", f"--rev={rev1}", "--print-value-only").stdout.strip() == "1"
    doc = json.loads(ctl(cluster, "get", "--prefix", p, "-w", "json").stdout)
    assert doc["count"] == 2
    kv = doc["kvs"][0]
    assert kv["version"] == 2 and kv["mod_revision"] > kv["create_revision"] == rev1
    assert base64.b64decode(kv["key"]).decode() == p + "a"
    assert ctl(cluster, "del", "--prefix", p).stdout.strip() == "2"
    assert ctl(cluster, "get", "--prefix", p).stdout == ""


def test_txn_from_stdin(cluster):
    p = unique("txn")
    ctl(cluster, "put", p + "k", "v1")
    script = f'value("{p}k") = "v1"\n\nput {p}k v2\nput {p}other x\n\nput {p}k fail\n\n'
    out = ctl(cluster, "txn", input=script).stdout.split()
    assert out[0] == "SUCCESS"
    assert ctl(cluster, "get", p + "k", "--print-value-only").stdout.strip() == "v2"
    out = ctl(cluster, "txn", input=script).stdout.split()
    assert out[0] == "FAILURE"
    assert ctl(cluster, "get", p + "k", "--print-value-only").stdout.strip() == "fail"


class Watcher:
    """``etcdctl watch ...`` as a subprocess; a thread collects its output lines."""

    def __init__(self, c: support.EtcdCluster, endpoint: str, *args: str):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["ETCDCTL_API"] = "3"
        self.proc = subprocess.Popen([support.ETCDCTL, f"--endpoints={endpoint}", "watch", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, want: list[str], timeout: float = 10.0) -> None:
        support.wait_for(f"watch output containing {want}",
                         lambda: all(w in self.lines for w in want), timeout, 0.05)

    def stop(self) -> None:
        support.stop_process(self.proc, timeout=5)


def test_watch_prefix_sees_another_clients_puts(cluster):
    p = unique("watch")
    w = Watcher(cluster, cluster.endpoints[0], "--prefix", p)
    try:
        # The watch is registered asynchronously: poke a marker key (from
        # another member) until the watcher reports it, then do the real puts.
        def seen_marker() -> bool:
            ctl(cluster, "put", p + "ready", "1")
            return any(line == p + "ready" for line in w.lines)
        support.wait_for("watch established", seen_marker, 10, 0.3)
        for i in range(3):
            ectl(cluster, cluster.endpoints[1 + i % 2], "put", f"{p}k{i}", f"v{i}")
        ctl(cluster, "del", p + "k0")
        w.wait_lines([f"{p}k0", "v0", f"{p}k1", "v1", f"{p}k2", "v2", "DELETE"])
        assert w.proc.poll() is None, w.lines
    finally:
        w.stop()


def test_watch_rev_replays_history(cluster):
    p = unique("watchrev")
    first = json.loads(ctl(cluster, "put", p + "a", "1", "-w", "json").stdout)["header"]["revision"]
    ctl(cluster, "put", p + "b", "2")
    ctl(cluster, "put", p + "a", "3")
    w = Watcher(cluster, cluster.endpoints[2], "--prefix", p, f"--rev={first}")
    try:
        w.wait_lines([p + "a", "1", p + "b", "2", "3"])
        vals = [line for line in w.lines if line in ("1", "2", "3")]
        assert vals == ["1", "2", "3"], w.lines   # revision order, no gaps, no duplicates
    finally:
        w.stop()


def test_lease_grant_keepalive_timetolive_revoke(cluster):
    p = unique("lease")
    out = ctl(cluster, "lease", "grant", "60").stdout
    m = re.match(r"lease ([0-9a-f]+) granted with TTL\(60s\)", out)
    assert m, out
    lease = m.group(1)
    ctl(cluster, "put", f"--lease={lease}", p + "k", "v")
    assert "keepalived with TTL(60)" in ctl(cluster, "lease", "keep-alive", "--once", lease).stdout
    ttl = ctl(cluster, "lease", "timetolive", lease, "--keys").stdout
    assert f"lease {lease} granted with TTL(60s)" in ttl and p + "k" in ttl, ttl
    assert lease in ctl(cluster, "lease", "list").stdout
    assert "revoked" in ctl(cluster, "lease", "revoke", lease).stdout
    assert ctl(cluster, "get", p + "k").stdout == ""
    # Every member deleted it (serializable read = that member's own state).
    for ep in cluster.endpoints:
        support.wait_for(f"{p}k gone on {ep}", lambda ep=ep: ectl(
            cluster, ep, "get", p + "k", "--consistency=s").stdout == "", 5, 0.1)


def test_member_list_endpoint_status_and_health(cluster):
    doc = json.loads(ctl(cluster, "member", "list", "-w", "json").stdout)
    members = doc["members"]
    assert len(members) == 3
    assert sorted(m["name"] for m in members) == ["n1", "n2", "n3"]
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(f"http://{e}" for e in cluster.endpoints)
    assert sorted(u for m in members for u in m["peerURLs"]) == sorted(
        m.peer_url for m in cluster.members.values())
    # endpoint status over every member (--cluster dials the member list's client URLs).
    rows = json.loads(ectl(cluster, cluster.endpoints[0], "endpoint", "status", "--cluster", "-w", "json").stdout)
    assert len(rows) == 3
    leaders = {r["Status"]["leader"] for r in rows}
    assert len(leaders) == 1, rows
    ids = [r["Status"]["header"]["member_id"] for r in rows]
    assert ids.count(leaders.pop()) == 1
    assert {r["Status"]["header"]["cluster_id"] for r in rows} == {doc["header"]["cluster_id"]}
    out = ectl(cluster, cluster.endpoints[0], "endpoint", "health", "--cluster")
    assert out.stdout.count("is healthy") + out.stderr.count("is healthy") == 3, out


def test_snapshot_save_and_status(cluster, tmp_path):
    p = unique("snap")
    rev = json.loads(ctl(cluster, "put", p + "k", "v", "-w", "json").stdout)["header"]["revision"]
    db = tmp_path / "snap.db"
    out = ectl(cluster, cluster.endpoints[1], "snapshot", "save", str(db))
    assert "Snapshot saved" in out.stdout + out.stderr
    st = json.loads(ectl(cluster, cluster.endpoints[1], "snapshot", "status", str(db), "-w", "json").stdout)
    assert st["revision"] >= rev and st["totalKey"] >= 1 and st["totalSize"] > 0, st


def test_compaction_then_old_revision_fails(cluster):
    p = unique("compact")
    r1 = json.loads(ctl(cluster, "put", p + "k", "1", "-w", "json").stdout)["header"]["revision"]
    r2 = json.loads(ctl(cluster, "put", p + "k", "2", "-w", "json").stdout)["header"]["revision"]
    assert ctl(cluster, "get", p + "k", f"--rev={r1}", "--print-value-only").stdout.strip() == "1"
    assert f"compacted revision {r2}" in ctl(cluster, "compaction", str(r2)).stdout
    r = ctl(cluster, "get", p + "k", f"--rev={r1}", check=False)
    assert r.returncode != 0 and "required revision has been compacted" in r.stderr, r
    assert ctl(cluster, "get", p + "k", f"--rev={r2}", "--print-value-only").stdout.strip() == "2"


# --- faults -------------------------------------------------------------------

class LoadClient(threading.Thread):
    """A client doing sequential Puts of unique keys; a failed put is retried against the next endpoint.

    Bounded by ``max_puts`` and by ``stop``. ``acked`` holds (key, value,
    header revision) of every put the cluster acknowledged.
    """

    def __init__(self, idx: int, endpoints: list[str], stop: threading.Event, *, max_puts: int):
        super().__init__(daemon=True)
        self.idx, self.endpoints, self.stop_ev, self.max_puts = idx, endpoints, stop, max_puts
        self.acked: list[tuple[bytes, bytes, int]] = []
        self.errors = 0

    def run(self) -> None:
        channels = [grpc.insecure_channel(e) for e in self.endpoints]
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
        cur = self.idx % len(stubs)
        try:
            for i in range(self.max_puts):
                key, value = b"/load/%d/%06d" % (self.idx, i), uuid.uuid4().hex.encode()
                for _attempt in range(200):   # bounded: 200 x <= 1 s
                    if self.stop_ev.is_set():
                        return
                    try:
                        resp = stubs[cur].Put(pb.PutRequest(key=key, value=value), timeout=1.0)
                        self.acked.append((key, value, resp.header.revision))
                        break
                    except grpc.RpcError:
                        self.errors += 1
                        cur = (cur + 1) % len(stubs)
                        time.sleep(0.02)
                else:
                    return
        finally:
            for ch in channels:
                ch.close()


def put_until_ok(endpoints: list[str], key: bytes, *, limit: float) -> float:
    """Seconds until a Put of ``key`` is acknowledged by one of ``endpoints`` (tries each in turn); AssertionError after ``limit`` s."""
    channels = [grpc.insecure_channel(e) for e in endpoints]
    try:
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < limit + 2:
            try:
                stubs[i % len(stubs)].Put(pb.PutRequest(key=key, value=b"probe"), timeout=0.3)
                return time.monotonic() - t0
            except grpc.RpcError:
                i += 1
                time.sleep(0.01)
        raise AssertionError(f"no put acknowledged within {limit + 2:.1f} s")
    finally:
        for ch in channels:
            ch.close()


@pytest.mark.parametrize("kind", KINDS)
def test_kill_leader_ten_times_under_load(kind, tmp_path):
    with support.etcd_cluster(tmp_path, kind) as c:
        stop = threading.Event()
        clients = [LoadClient(i, c.endpoints, stop, max_puts=20_000) for i in range(4)]
        for t in clients:
            t.start()
        failovers: list[float] = []
        try:
            for k in range(LEADER_KILLS):
                leader = c.wait_leader()
                c.kill(leader, signal.SIGKILL)
                others = [m.endpoint for m in c.members.values() if m.name != leader]
                failovers.append(put_until_ok(others, b"/probe/%d" % k, limit=FAILOVER_LIMIT_S))
                c.start(leader)                # same data dir: it must catch up
                c.wait_healthy(timeout=20)
                # Let the load run on the whole cluster before the next kill.
                base = sum(len(t.acked) for t in clients)
                support.wait_for("load progressing", lambda: sum(len(t.acked) for t in clients) >= base + 50,
                                 10, 0.05)
        finally:
            stop.set()
            for t in clients:
                t.join(10)
        print(f"{kind}: failover seconds {[round(f, 2) for f in failovers]}; "
              f"{sum(len(t.acked) for t in clients)} puts acknowledged, {sum(t.errors for t in clients)} retried")
        assert all(not t.is_alive() for t in clients)
        slow = [round(f, 2) for f in failovers if f >= FAILOVER_LIMIT_S]
        assert not slow, f"puts took {slow} s after a leader kill (limit {FAILOVER_LIMIT_S} s); all: {failovers}"

        acked = [a for t in clients for a in t.acked]
        assert len(acked) > 100, f"only {len(acked)} puts acknowledged"
        revs = [rev for _, _, rev in acked]
        assert len(set(revs)) == len(revs), "an acknowledged revision was reused"
        # Every acknowledged write is readable with its value: linearizably
        # through the cluster, and from each member's own state (serializable),
        # which also shows that the members restarted with their data dirs caught up.
        want = {k: (v, rev) for k, v, rev in acked}

        def problems(endpoint: str, serializable: bool) -> str:
            with grpc.insecure_channel(endpoint) as ch:
                resp = rpc_pb2_grpc.KVStub(ch).Range(
                    pb.RangeRequest(key=b"/load/", range_end=b"/load0", serializable=serializable), timeout=10)
            got = {x.key: (x.value, x.mod_revision) for x in resp.kvs}
            missing = [k for k in want if k not in got]
            wrong = [k for k, (v, rev) in want.items() if k in got and (got[k][0] != v or got[k][1] < rev)]
            if missing or wrong:
                return f"{len(missing)} acknowledged keys missing (e.g. {missing[:3]}), {len(wrong)} with another value"
            return ""
        err = problems(c.endpoints[0], False)
        assert not err, f"linearizable read: {err}"
        for m in c.members.values():
            support.wait_for(f"{m.name} caught up", lambda m=m: not problems(m.endpoint, True), 15, 0.2,
                             errors=(grpc.RpcError,))


def put_many(endpoint: str, prefix: bytes, n: int, *, threads: int = 8) -> None:
    """``n`` single-key Puts ``prefix%05d`` -> str(i) from ``threads`` threads (one Raft entry each)."""
    from concurrent.futures import ThreadPoolExecutor
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)

        def part(t: int) -> None:
            for i in range(t, n, threads):
                kv.Put(pb.PutRequest(key=prefix + b"%05d" % i, value=b"%d" % i), timeout=10)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, range(threads)))


# etcd keeps 5,000 entries after each snapshot for slow followers
# (etcdserver.SnapshotCatchUpEntries); more entries than that since the start
# means a member with an empty log can only be brought back by a snapshot.
REJOIN_KEYS = 5_600


@pytest.mark.parametrize("kind", KINDS)
def test_wiped_member_rejoins_through_snapshot_and_catches_up(kind, tmp_path):
    with support.etcd_cluster(tmp_path, kind, snapshot_count=100) as c:
        victim = next(n for n in c.members if n != c.wait_leader())
        c.wipe(victim)
        live = c.live_endpoints()
        # etcd refuses a member that comes back with an empty data dir under
        # its old ID: remove it, add it again (new ID), start it as "existing".
        members = json.loads(ectl(c, live, "member", "list", "-w", "json").stdout)["members"]
        old_id = next(m["ID"] for m in members if m["name"] == victim)
        assert "removed" in ectl(c, live, "member", "remove", format(old_id, "x")).stdout
        # Written while it is out: the two left compact their logs past what it has.
        put_many(live[0], b"/before/", REJOIN_KEYS)
        # etcd's strict reconfig check answers "unhealthy cluster" until every
        # voting member has been connected for 5 s (etcdserver.HealthInterval).
        added = support.wait_for("member add accepted", lambda: ectl(
            c, live, "member", "add", victim, f"--peer-urls={c.members[victim].peer_url}",
            check=False).stdout, 15, 0.5)
        assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in added, added
        c.start(victim, initial_cluster_state="existing")
        c.wait_healthy([victim], timeout=30)
        ectl(c, live, "put", "/after", "x")
        ep = c.members[victim].endpoint

        def caught_up() -> bool:
            # Serializable: what this member itself has applied.
            with grpc.insecure_channel(ep) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                n = kv.Range(pb.RangeRequest(key=b"/before/", range_end=b"/before0", count_only=True,
                                             serializable=True), timeout=2).count
                after = kv.Range(pb.RangeRequest(key=b"/after", serializable=True), timeout=2).kvs
            return n == REJOIN_KEYS and [x.value for x in after] == [b"x"]
        support.wait_for(f"{victim} caught up", caught_up, 20, 0.2, errors=(grpc.RpcError,))
        members = json.loads(ectl(c, ep, "member", "list", "-w", "json").stdout)["members"]
        assert len(members) == 3 and old_id not in [m["ID"] for m in members]
        assert len({r["Status"]["leader"] for r in (c.status(n) for n in c.members)}) == 1
        if kind == "etcd":   # proves the test drives the snapshot path (etcdlite's log wording is its own)
            assert any("database snapshot [index" in c.log(n, 200_000) and "sent out successfully" in c.log(n, 200_000)
                       for n in c.members if n != victim), "the leader sent no snapshot"
