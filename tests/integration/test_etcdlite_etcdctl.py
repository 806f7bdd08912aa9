"""etcdlite as a real process (``python -m etcdlite``) driven by the real etcdctl 3.4.

Each test gets its own member on a free 127.0.0.1 port and data dir; the
process is killed by PID in the fixture's finally.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from support import REPO

ETCDCTL = shutil.which("etcdctl")
pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl 3.4 not installed")


class Member:
    """One etcdlite process; ``ctl(...)`` runs etcdctl against it."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = support.free_port()
        self.peer_port = support.free_port()  # never 2380: a dev cluster may hold it
        self.procs = support.ProcessGroup(log.parent)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, extra: tuple[str, ...] = ()) -> None:
        url, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        cmd = [sys.executable, "-m", "etcdlite", "--name", "default", "--data-dir", str(self.data_dir),
               "--listen-client-urls", url, "--advertise-client-urls", url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"default={peer}", *extra]
        self.proc = self.procs.spawn(self.log.stem, cmd)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        self.procs.wait_ready(self.log.stem, port=self.port, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        return support.stop_process(self.proc, sig=sig, timeout=timeout)

    def ctl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 10.0):
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run([ETCDCTL, "--endpoints", self.endpoint, "--command-timeout=5s", *args],
                           input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed: {r.stderr}")
        return r

    def json(self, *args: str) -> dict:
        return json.loads(self.ctl(*args, "-w", "json").stdout)


@pytest.fixture
def member(tmp_path):
    m = Member(tmp_path / "data", tmp_path / "etcdlite.log")
    try:
        m.start()
        yield m
    finally:
        m.stop(signal.SIGKILL)


def test_put_get_prefix_rev_del(member):
    assert member.ctl("put", "/reg/a", "1").stdout.strip() == "OK"
    member.ctl("put", "/reg/b", "2")
    member.ctl("put", "/other", "x")
    member.ctl("put", "/reg/a", "3")
    assert member.ctl("get", "--prefix", "/reg/").stdout.split() == ["/reg/a", "3", "/reg/b", "2"]
    assert member.ctl("get", "/reg/a", "--rev=2").stdout.split() == ["/reg/a", "1"]
    got = member.json("get", "/reg/a")
    kv = got["kvs"][0]
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (2, 5, 2)
    assert got["header"]["revision"] == 5 and got["header"]["member_id"] and got["header"]["cluster_id"]
    assert member.ctl("del", "--prefix", "/reg/").stdout.strip() == "2"
    assert member.ctl("get", "", "--from-key", "--keys-only").stdout.split() == ["/other"]
    r = member.ctl("get", "/reg/a", "--rev=100", check=False)
    assert r.returncode != 0 and "required revision is a future revision" in r.stderr


def test_txn(member):
    member.ctl("put", "k", "v1")
    script = 'value("k") = "v1"\n\nput k v2\nput done yes\n\nput failed yes\n\n'
    out = member.ctl("txn", input=script).stdout.split()
    assert out[0] == "SUCCESS"
    assert member.ctl("get", "k", "--print-value-only").stdout.strip() == "v2"
    out = member.ctl("txn", input=script).stdout.split()
    assert out[0] == "FAILURE"
    assert member.ctl("get", "failed", "--print-value-only").stdout.strip() == "yes"


def test_watch_replays_history_and_streams(member):
    member.ctl("put", "/w/a", "1")
    member.ctl("del", "/w/a")
    env = dict(os.environ, ETCDCTL_API="3")
    watch = subprocess.Popen([ETCDCTL, "--endpoints", member.endpoint, "watch", "--prefix", "/w/",
                              "--rev=1", "--prev-kv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        time.sleep(0.5)
        member.ctl("put", "/w/b", "2")
        member.ctl("put", "/ignored", "x")
        time.sleep(0.5)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            out, _ = watch.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            watch.kill()
            out, _ = watch.communicate()
    # etcdctl prints a DELETE's prev_kv (key, value) before the deleted key.
    lines = out.split()
    assert lines == ["PUT", "/w/a", "1", "DELETE", "/w/a", "1", "/w/a", "PUT", "/w/b", "2"], out


def test_watch_from_compacted_revision(member):
    for i in range(4):
        member.ctl("put", "k", str(i))
    assert "compacted revision 4" in member.ctl("compaction", "4").stdout
    r = member.ctl("watch", "k", "--rev=2", check=False)
    assert "compacted" in (r.stdout + r.stderr)
    r = member.ctl("get", "k", "--rev=3", check=False)
    assert "required revision has been compacted" in r.stderr
    assert member.ctl("get", "k", "--rev=4", "--print-value-only").stdout.strip() == "2"


def test_lease_lifecycle_and_expiry(member):
    lease = member.ctl("lease", "grant", "2").stdout.split()[1]
    member.ctl("put", "owned", "v", f"--lease={lease}")
    ttl = member.ctl("lease", "timetolive", lease, "--keys").stdout
    assert "attached keys([owned])" in ttl
    assert lease in member.ctl("lease", "list").stdout
    assert "TTL(2)" in member.ctl("lease", "keep-alive", "--once", lease).stdout
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and member.ctl("get", "owned").stdout:
        time.sleep(0.3)
    assert member.ctl("get", "owned").stdout == ""
    assert "already expired" in member.ctl("lease", "timetolive", lease).stdout
    other = member.ctl("lease", "grant", "100").stdout.split()[1]
    member.ctl("put", "owned2", "v", f"--lease={other}")
    member.ctl("lease", "revoke", other)
    assert member.ctl("get", "owned2").stdout == ""
    r = member.ctl("put", "x", "v", "--lease=1234", check=False)
    assert "requested lease not found" in r.stderr


def test_endpoint_status_health_member_list(member):
    member.ctl("put", "a", "1")
    status = member.json("endpoint", "status")[0]["Status"]
    assert status["version"] == "3.4.23"
    assert status["leader"] == status["header"]["member_id"]
    assert status["raftIndex"] >= 1
    assert "is healthy" in member.ctl("endpoint", "health").stderr + member.ctl("endpoint", "health").stdout
    members = member.json("member", "list")["members"]
    assert [(m["name"], m["clientURLs"]) for m in members] == [("default", [f"http://{member.endpoint}"])]


def test_bad_requests_are_clear_errors(member):
    r = member.ctl("put", "", "v", check=False)
    assert "key is not provided" in r.stderr
    r = member.ctl("put", "nokey", "--ignore-value", check=False)
    assert "key not found" in r.stderr


def test_sigkill_restart_keeps_acknowledged_writes(member):
    """Every write etcdctl saw acknowledged is back after SIGKILL, with the same revisions."""
    for i in range(20):
        member.ctl("put", f"/r/{i:02d}", f"v{i}")
    member.ctl("del", "/r/05")
    before = member.json("get", "--prefix", "/r/")
    member.stop(signal.SIGKILL)
    member.start()
    after = member.json("get", "--prefix", "/r/")
    assert after["kvs"] == before["kvs"]
    assert after["header"]["revision"] == before["header"]["revision"] == 22
    assert member.json("put", "/r/new", "x")["header"]["revision"] == 23


def test_data_dir_without_members_file_keeps_its_member_id(member):
    """A data dir written before members.json existed boots as the member its WAL names, even
    when today's flags derive another ID (here a new --initial-cluster-token), and keeps serving."""
    member.ctl("put", "/old/key", "v1")
    own = member.json("member", "list")["members"][0]["ID"]
    assert member.stop(signal.SIGTERM) == 0
    (member.data_dir / "member" / "members.json").unlink()
    member.start(extra=("--initial-cluster-token", "another-token"))
    assert member.ctl("get", "/old/key", "--print-value-only").stdout.strip() == "v1"
    member.ctl("put", "/old/key", "v2")
    assert member.ctl("get", "/old/key", "--print-value-only").stdout.strip() == "v2"
    assert [m["ID"] for m in member.json("member", "list")["members"]] == [own]


def test_sigterm_is_graceful_and_corrupt_wal_refuses(member):
    member.ctl("put", "a", "1")
    member.ctl("put", "b", "2")
    assert member.stop(signal.SIGTERM) == 0
    seg = sorted((member.data_dir / "member" / "wal").glob("*.wal"))[0]
    data = bytearray(seg.read_bytes())
    data[30] ^= 0xFF
    seg.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "etcdlite", "--data-dir", str(member.data_dir),
                           "--listen-client-urls", f"http://{member.endpoint}"],
                          cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert "corrupt at offset" in proc.stderr and "Traceback" not in proc.stderr
