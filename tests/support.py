"""Plumbing shared by the tests that start real control-plane processes.

Several integration and e2e test files need the same things: a free
loopback port, a bounded poll, processes whose output goes to a log file
and which are stopped by PID even when a test fails, and an etcd (or
etcdlite) + ``python -m apiserver`` pair with an admin kubeconfig, and an
n-member etcd or etcdlite cluster that can be killed, restarted and wiped
member by member (``etcd_cluster``). They live here once;
``tests/conftest.py`` puts this directory on ``sys.path`` so a test imports
it as ``import support``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeling.client import kubeconfig as _kubeconfig

REPO = Path(__file__).resolve().parents[1]
ETCD = "/usr/bin/etcd"

# Exceptions that mean "not yet" while polling: a closed port, an HTTP
# transport error, a half-written object without the key we look for.
POLL_ERRORS: tuple[type[BaseException], ...] = (OSError, httpx.HTTPError, KeyError, ValueError)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25, *,
             errors: tuple[type[BaseException], ...] = POLL_ERRORS) -> Any:
    """Call ``fn`` every ``interval`` s until it returns something truthy, and return that.

    An exception listed in ``errors`` counts as a falsy answer. Raises
    AssertionError naming ``what`` and the last value (or exception) after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except errors as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Send ``sig`` to ``proc`` (by PID) unless it has exited; SIGKILL after ``timeout`` s. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def stop_process_group(proc: subprocess.Popen, *, timeout: float = 10.0, close_pipes: bool = True) -> None:
    """Stop ``proc`` started with ``start_new_session=True`` and everything in its process group
    (e.g. kubectl, which runs a versioned kubectl as its child): SIGTERM, SIGKILL after ``timeout`` s.
    Closes its pipes unless ``close_pipes`` is False (to read what is left)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    for f in (proc.stdout, proc.stderr) if close_pipes else ():
        if f:
            f.close()


def tail(path: Path | str, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file ('' if it does not exist)."""
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


class ProcessGroup:
    """Processes started by one test or fixture; each logs to ``<log_dir>/<name>.log``.

    ``close()`` (or leaving the ``with`` block) stops every process still
    running, newest first, by PID: SIGTERM, then SIGKILL after 10 s.
    """

    def __init__(self, log_dir: Path | str, *, cwd: Path | str = REPO):
        self.log_dir = Path(log_dir)
        self.cwd = cwd
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: Sequence[str], **popen_kw) -> subprocess.Popen:
        """Start ``argv`` with stdout and stderr appended to ``log_path(name)``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(list(argv), cwd=popen_kw.pop("cwd", self.cwd), stdout=log,
                                    stderr=subprocess.STDOUT, **popen_kw)
        self.procs.append((name, proc))
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log(self, name: str, chars: int = 4000) -> str:
        """The last ``chars`` characters of ``name``'s log."""
        return tail(self.log_path(name), chars)

    def wait_ready(self, name: str, *, port: int | None = None, url: str | None = None,
                   timeout: float = 30.0) -> None:
        """Wait until ``port`` on 127.0.0.1 accepts connections or ``url`` answers 200.

        Raises AssertionError with the log's tail if the process exits first
        or the wait times out.
        """
        proc = self.get(name)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}: {self.log(name)}")
            if url is not None:
                return httpx.get(url, timeout=1, trust_env=False).status_code == 200
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        try:
            wait_for(f"{name} ready", ready, timeout, 0.1, errors=(OSError, httpx.HTTPError))
        except AssertionError as e:
            if proc.poll() is not None or "exited" in str(e):
                raise
            raise AssertionError(f"{e}\n{name} log:\n{self.log(name)}") from None

    def get(self, name: str) -> subprocess.Popen:
        """The newest process started as ``name``."""
        for n, p in reversed(self.procs):
            if n == name:
                return p
        raise KeyError(name)

    def stop(self, name: str | None = None, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the processes called ``name`` (all if None), newest first."""
        for n, p in reversed(self.procs):
            if name is None or n == name:
                stop_process(p, sig=sig, timeout=timeout)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_argv(store: str, data_dir: Path | str, port: int, peer: int) -> list[str]:
    """Command line of a one-member etcd 3.4 (``store="etcd"``) or etcdlite on the given loopback ports."""
    url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    if store == "etcd":
        return [ETCD, "--name", "default", "--data-dir", str(data_dir), "--listen-client-urls", url,
                "--advertise-client-urls", url, "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"default={peer_url}"]
    if store == "etcdlite":
        return [sys.executable, "-m", "etcdlite", "--name", "default", "--data-dir", str(data_dir),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer_url, "--initial-cluster", f"default={peer_url}"]
    raise ValueError(f"store must be 'etcd' or 'etcdlite', not {store!r}")


@dataclass
class ControlPlane:
    """Handles on a running store + apiserver pair (see ``control_plane``)."""

    server: str                 # apiserver URL, http://127.0.0.1:PORT
    kubeconfig: Path            # kubeconfig for ``server``
    etcd_endpoint: str          # store client URL, http://127.0.0.1:PORT
    etcd_log: Path
    apiserver_log: Path
    procs: ProcessGroup
    tmp: Path
    extra: dict = field(default_factory=dict)


def start_apiserver(procs: ProcessGroup, etcd_servers: Sequence[str], *, name: str = "apiserver",
                    apiserver_args: Sequence[str] = (), timeout: float = 30.0) -> str:
    """Start ``python -m apiserver --etcd-servers <all of etcd_servers>`` on a free port as ``name``.

    Waits for its /readyz and returns its URL ``http://127.0.0.1:PORT``.
    """
    api_port = free_port()
    server = f"http://127.0.0.1:{api_port}"
    procs.spawn(name, [sys.executable, "-m", "apiserver", "--etcd-servers", ",".join(etcd_servers),
                       "--bind-address", "127.0.0.1", "--secure-port", str(api_port), *apiserver_args])
    procs.wait_ready(name, url=f"{server}/readyz", timeout=timeout)
    return server


# Store kinds control_plane starts: one member of etcd 3.4 or etcdlite, or a
# 3-member etcdlite cluster ("etcdlite3", see etcd_cluster).
STORES = ("etcd", "etcdlite", "etcdlite3")


@contextlib.contextmanager
def control_plane(tmp_path: Path | str, store: str = "etcd", *, apiserver_args: Sequence[str] = (),
                  user: str = "test", kubeconfig_name: str = "admin.kubeconfig",
                  timeout: float = 30.0) -> Iterator[ControlPlane]:
    """Start ``store`` and ``python -m apiserver`` on free ports.

    ``store`` is "etcd" (/usr/bin/etcd 3.4), "etcdlite" (one member) or
    "etcdlite3" (three etcdlite members via ``etcd_cluster``; the apiserver
    gets all three client URLs in ``--etcd-servers``, the EtcdCluster is in
    ``extra["cluster"]``). ``etcd_endpoint`` is the (first) store client URL,
    ``extra["etcd_servers"]`` all of them. Data, logs (``<store>.log`` or
    ``n1.log``.., ``apiserver.log``) and the kubeconfig go under ``tmp_path``.
    Skips the test if etcd is wanted but not installed. Every process is
    stopped by PID when the block ends, even on failure.
    """
    tmp = Path(tmp_path)
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    if store == "etcd" and not os.path.exists(ETCD):
        pytest.skip("etcd 3.4 is not installed at /usr/bin/etcd")
    with contextlib.ExitStack() as stack:
        extra: dict = {}
        if store == "etcdlite3":
            cluster = stack.enter_context(etcd_cluster(tmp, "etcdlite", 3, timeout=timeout))
            procs = stack.enter_context(ProcessGroup(tmp))
            etcd_urls = [f"http://{e}" for e in cluster.endpoints]
            store_log = cluster.procs.log_path("n1")
            extra["cluster"] = cluster
        else:
            procs = stack.enter_context(ProcessGroup(tmp))
            port, peer = free_port(), free_port()
            etcd_urls = [f"http://127.0.0.1:{port}"]
            procs.spawn(store, store_argv(store, tmp / f"{store}-data", port, peer))
            procs.wait_ready(store, port=port, timeout=timeout)
            store_log = procs.log_path(store)
        extra["etcd_servers"] = etcd_urls
        server = start_apiserver(procs, etcd_urls, apiserver_args=apiserver_args, timeout=timeout)
        kc = tmp / kubeconfig_name
        _kubeconfig.write(kc, server=server, user=user)
        yield ControlPlane(server=server, kubeconfig=kc, etcd_endpoint=etcd_urls[0], etcd_log=store_log,
                           apiserver_log=procs.log_path("apiserver"), procs=procs, tmp=tmp, extra=extra)


# --- multi-member clusters (etcd 3.4 or etcdlite) ----------------------------

ETCDCTL = "/usr/bin/etcdctl"

# What etcdlite prints when it refuses a cluster of more than one member
# (before its Raft transport exists); lets tests skip until the feature lands.
_SINGLE_MEMBER_ONLY = ("single-member", "more than one member", "one member only")


class ClusterUnsupported(Exception):
    """The store refused to start as a multi-member cluster (etcdlite before Raft landed)."""


def cluster_member_argv(kind: str, name: str, *, data_dir: Path | str, client_port: int, peer_port: int,
                        initial_cluster: str, initial_cluster_state: str = "new",
                        heartbeat_ms: int = 100, election_ms: int = 1000,
                        snapshot_count: int | None = None, pre_vote: bool = True) -> list[str]:
    """The command line of one member of a cluster, with etcd 3.4's flags (same for both kinds).

    ``kind`` is "etcd" (/usr/bin/etcd) or "etcdlite" (``python -m etcdlite``);
    ``initial_cluster`` is etcd's ``n1=http://127.0.0.1:P1,...``. Raises ValueError for another kind.
    ``pre_vote`` adds etcd's ``--pre-vote`` (off by default in 3.4): without it a
    lagging follower's rejected campaigns reset the others' election timers and
    a failover sometimes takes ~4 s; etcdlite always pre-votes (issue 3), so the
    flag is only passed to etcd.
    """
    if kind == "etcd":
        prog = [ETCD]
    elif kind == "etcdlite":
        prog = [sys.executable, "-m", "etcdlite"]
    else:
        raise ValueError(f"kind must be 'etcd' or 'etcdlite', not {kind!r}")
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    argv = [*prog, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", initial_cluster_state,
            "--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms)]
    if snapshot_count is not None:
        argv += ["--snapshot-count", str(snapshot_count)]
    if pre_vote and kind == "etcd":
        argv.append("--pre-vote")
    return argv


def etcdctl(endpoints: Sequence[str] | str, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 15.0, command_timeout: str = "5s") -> subprocess.CompletedProcess:
    """Run the real etcdctl 3.4 (ETCDCTL_API=3) against ``endpoints`` ("127.0.0.1:P" strings).

    Returns the CompletedProcess (text stdout/stderr). With ``check`` raises
    AssertionError carrying stderr when etcdctl exits non-zero.
    """
    eps = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    env = dict(os.environ, ETCDCTL_API="3")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    r = subprocess.run([ETCDCTL, f"--endpoints={eps}", f"--command-timeout={command_timeout}", *args],
                       input=input, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
    return r


@dataclass
class ClusterMember:
    """One member of an ``EtcdCluster``: its name, ports, data dir and newest process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen | None = None
    initial_cluster_state: str = "new"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """A running n-member cluster of etcd 3.4 or etcdlite processes (see ``etcd_cluster``).

    ``endpoints`` lists client addresses "127.0.0.1:P" in member order;
    ``members`` maps name ("n1".."nN") -> ClusterMember. Logs go to
    ``<tmp>/<name>.log`` (appended across restarts).
    """

    def __init__(self, tmp: Path, kind: str, n: int, *, snapshot_count: int | None = None,
                 heartbeat_ms: int = 100, election_ms: int = 1000):
        self.tmp, self.kind = tmp, kind
        self.snapshot_count, self.heartbeat_ms, self.election_ms = snapshot_count, heartbeat_ms, election_ms
        self.procs = ProcessGroup(tmp)
        self.members: dict[str, ClusterMember] = {}
        for i in range(1, n + 1):
            name = f"n{i}"
            self.members[name] = ClusterMember(name, free_port(), free_port(), tmp / f"{name}.data")

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members.values()]

    def live_endpoints(self) -> list[str]:
        """Client addresses of the members whose process is running."""
        return [m.endpoint for m in self.members.values() if m.alive]

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members.values())

    def start(self, name: str, *, initial_cluster_state: str | None = None) -> subprocess.Popen:
        """Start member ``name`` (again) with its data dir; returns the process without waiting."""
        m = self.members[name]
        if initial_cluster_state is not None:
            m.initial_cluster_state = initial_cluster_state
        argv = cluster_member_argv(self.kind, name, data_dir=m.data_dir, client_port=m.client_port,
                                   peer_port=m.peer_port, initial_cluster=self.initial_cluster(),
                                   initial_cluster_state=m.initial_cluster_state,
                                   heartbeat_ms=self.heartbeat_ms, election_ms=self.election_ms,
                                   snapshot_count=self.snapshot_count)
        m.proc = self.procs.spawn(name, argv)
        return m.proc

    def kill(self, name: str, sig: int = signal.SIGKILL, *, timeout: float = 10.0) -> None:
        """Send ``sig`` to member ``name``'s process (by PID) and wait for it to exit."""
        m = self.members[name]
        if m.proc is not None:
            stop_process(m.proc, sig=sig, timeout=timeout)

    def restart(self, name: str, *, timeout: float = 20.0) -> None:
        """Kill ``name`` if running (SIGTERM), start it with its data dir, wait until it is healthy."""
        self.kill(name, signal.SIGTERM)
        self.start(name)
        self.wait_healthy([name], timeout=timeout)

    def wipe(self, name: str) -> None:
        """Stop ``name`` (SIGKILL) and delete its data dir; it is not started again."""
        self.kill(name, signal.SIGKILL)
        shutil.rmtree(self.members[name].data_dir, ignore_errors=True)

    def log(self, name: str, chars: int = 3000) -> str:
        return self.procs.log(name, chars)

    def logs(self, chars: int = 1500) -> str:
        """Tail of every member's log, for assertion messages."""
        return "\n".join(f"--- {n} ---\n{self.log(n, chars)}" for n in self.members)

    def healthy(self, name: str) -> bool:
        """``etcdctl endpoint health`` on member ``name`` (a linearizable Range of "health") succeeds."""
        m = self.members[name]
        if not m.alive:
            return False
        return etcdctl(m.endpoint, "endpoint", "health", check=False, timeout=10,
                       command_timeout="2s").returncode == 0

    def wait_healthy(self, names: Sequence[str] | None = None, *, timeout: float = 30.0) -> None:
        """Wait until every member in ``names`` (default: all) answers ``endpoint health``.

        Raises ClusterUnsupported if a member exits saying it runs one member
        only, AssertionError (with the logs) if one exits otherwise or time runs out.
        """
        names = list(names or self.members)

        def ok() -> bool:
            for n in names:
                m = self.members[n]
                if m.proc is not None and m.proc.poll() is not None:
                    text = self.log(n)
                    if any(s in text for s in _SINGLE_MEMBER_ONLY):
                        raise ClusterUnsupported(text.strip().splitlines()[-1] if text.strip() else text)
                    raise AssertionError(f"{self.kind} member {n} exited {m.proc.returncode}:\n{text}")
            return all(self.healthy(n) for n in names)
        try:
            wait_for(f"{self.kind} members {names} healthy", ok, timeout, 0.2,
                     errors=(OSError, subprocess.TimeoutExpired))
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def status(self, name: str) -> dict | None:
        """``etcdctl endpoint status -w json`` of member ``name``: {"Endpoint", "Status": {header, leader, ...}}, or None."""
        m = self.members[name]
        if not m.alive:
            return None
        r = etcdctl(m.endpoint, "endpoint", "status", "-w", "json", check=False, timeout=10,
                    command_timeout="2s")
        if r.returncode != 0:
            return None
        rows = json.loads(r.stdout)
        return rows[0] if rows else None

    def leader(self) -> str | None:
        """Name of the member that says it is the leader (its header member_id equals its status leader), or None."""
        for name in self.members:
            st = self.status(name)
            if st is None:
                continue
            s = st["Status"]
            if s.get("leader") and s["header"]["member_id"] == s["leader"]:
                return name
        return None

    def wait_leader(self, *, timeout: float = 15.0) -> str:
        """Wait until some live member is the leader; returns its name."""
        return wait_for(f"a {self.kind} leader", self.leader, timeout, 0.1,
                        errors=(OSError, subprocess.TimeoutExpired, ValueError))

    def close(self) -> None:
        self.procs.close()


@contextlib.contextmanager
def etcd_cluster(tmp_path: Path | str, kind: str, n: int = 3, *, snapshot_count: int | None = None,
                 heartbeat_ms: int = 100, election_ms: int = 1000, timeout: float = 30.0) -> Iterator[EtcdCluster]:
    """Start an ``n``-member cluster of ``kind`` ("etcd" = /usr/bin/etcd 3.4, or "etcdlite") on free loopback ports.

    Members are "n1".."nN", each a real process started with etcd's flags
    (``cluster_member_argv``), data under ``tmp_path/<name>.data``. Yields once
    ``etcdctl endpoint health`` passes on every member. Skips the test if etcd
    or etcdctl is missing, or if etcdlite refuses more than one member (its
    Raft is not there yet). Every process is stopped by PID when the block ends.
    """
    tmp = Path(tmp_path)
    if not os.path.exists(ETCDCTL) or (kind == "etcd" and not os.path.exists(ETCD)):
        pytest.skip("etcd/etcdctl 3.4 not installed under /usr/bin")
    cluster = EtcdCluster(tmp, kind, n, snapshot_count=snapshot_count, heartbeat_ms=heartbeat_ms,
                          election_ms=election_ms)
    try:
        for name in cluster.members:
            cluster.start(name)
        try:
            cluster.wait_healthy(timeout=timeout)
        except ClusterUnsupported as e:
            pytest.skip(f"{kind} cannot run {n} members yet: {e}")
        yield cluster
    finally:
        cluster.close()


# --------------------------------------------------------------------------- nodes (root + Docker)

def docker_or_skip(what: str, image: str = "busybox:1.35"):
    """A docker SDK client when Docker answers and has ``image``; else pytest.skip naming ``what``."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        client.images.get(image)
        return client
    except Exception as e:  # noqa: BLE001 - any failure means "skip with a reason"
        pytest.skip(f"{what} need a running Docker with image {image}: {e}")


def node_or_skip(what: str, image: str = "busybox:1.35", *, kubectl: bool = False):
    """What ``node(...)`` needs, or pytest.skip naming ``what``: root (bridge, netns), /usr/bin/etcd,
    /usr/bin/kubectl when ``kubectl``, and Docker with ``image``. Returns the docker SDK client."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} need root (bridge, netns, Docker)")
    missing = [p for p, wanted in (("etcd", True), ("kubectl", kubectl)) if wanted and shutil.which(p) is None]
    if missing:
        pytest.skip(f"{what} need " + " and ".join(f"/usr/bin/{p}" for p in missing))
    return docker_or_skip(what, image)


class TestNode:
    """A control plane plus one real node (CRI shim + kubelet) started by ``node(...)``."""

    __test__ = False  # not a pytest test class

    def __init__(self, cp: ControlPlane, http, kubelet_args: list[str], kubelet_port: int, healthz_port: int):
        self.cp = cp
        self.procs = cp.procs
        self.api = cp.server
        self.kubeconfig = str(cp.kubeconfig)
        self.http = http
        self.kubelet_args = kubelet_args
        self.kubelet = f"http://127.0.0.1:{kubelet_port}"
        self.healthz = f"http://127.0.0.1:{healthz_port}"

    def logs(self, chars: int = 4000) -> str:
        """The kubelet's and the shim's log tails, for failure messages."""
        return (f"kubelet log:\n{self.procs.log('kubelet', chars)}\nshim log:\n{self.procs.log('shim', chars)}")


@contextlib.contextmanager
def node(tmp_path: Path | str, *, name: str, bridge: str, pod_cidr: str, docker_client,
         image: str = "busybox:1.35", kubelet_flags: Sequence[str] = (), store: str = "etcd",
         apiserver_args: Sequence[str] = (), shim_flags: Sequence[str] = ()) -> Iterator[TestNode]:
    """etcd + apiserver (``control_plane``) + the CRI shim + a kubelet named ``name`` on free ports,
    pods on the test-only ``bridge`` and ``pod_cidr`` (set on the Node as the controller-manager would).
    ``store`` and ``apiserver_args`` are passed to ``control_plane``; ``shim_flags`` are appended
    to the CRI shim's command line.

    Yields a TestNode once the node is registered. On exit stops every process and removes the
    containers labelled with the node and the bridge, whatever happened.
    """
    tmp = str(tmp_path)
    kubelet_port, healthz_port = free_port(), free_port()
    sock = os.path.join(tmp, "node", "cri.sock")
    os.makedirs(os.path.dirname(sock), exist_ok=True)
    try:
        with control_plane(tmp, store, user="system:node:" + name, kubeconfig_name="kubelet.kubeconfig",
                           apiserver_args=apiserver_args) as cp:
            procs = cp.procs
            procs.spawn("shim", [sys.executable, "-m", "kubelet.dockershim", "--listen", f"unix://{sock}",
                                 "--node-name", name, "--state-dir", os.path.join(tmp, "node", "shim"),
                                 "--cni-bin-dir", os.path.join(tmp, "node", "cni", "bin"),
                                 "--cni-conf-dir", os.path.join(tmp, "node", "cni", "net.d"),
                                 "--cni-bridge", bridge, "--pod-infra-container-image", image, *shim_flags])
            with httpx.Client(base_url=cp.server, timeout=10, trust_env=False) as http:
                wait_for("apiserver /healthz", lambda: http.get("/healthz").status_code == 200, 30)
                kubelet_args = [sys.executable, "-m", "kubelet", "--kubeconfig", str(cp.kubeconfig),
                                "--hostname-override", name, "--node-ip", "127.0.0.1",
                                "--container-runtime-endpoint", f"unix://{sock}",
                                "--root-dir", os.path.join(tmp, "node"), "--port", str(kubelet_port),
                                "--healthz-port", str(healthz_port), "--bridge-name", bridge, *kubelet_flags]
                procs.spawn("kubelet", kubelet_args)
                n = TestNode(cp, http, kubelet_args, kubelet_port, healthz_port)
                try:
                    wait_for("node registration", lambda: http.get(f"/api/v1/nodes/{name}").status_code == 200, 60)
                except AssertionError:
                    raise AssertionError("kubelet did not register\n" + n.logs()) from None
                answers: list[str] = []

                def set_pod_cidr() -> bool:
                    r = http.patch(f"/api/v1/nodes/{name}",
                                   json={"spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}},
                                   headers={"Content-Type": "application/merge-patch+json"})
                    answers.append(f"{r.status_code} {r.text[:300]}")
                    return r.status_code == 200
                # Retried as a client would: a store that just elected its leader may fail a first write.
                try:
                    wait_for("node podCIDR set", set_pod_cidr, 30, 0.5)
                except AssertionError as e:
                    raise AssertionError(f"{e}; answers: {answers}") from None
                if len(answers) > 1:
                    print(f"node {name}: podCIDR patch needed {len(answers)} attempts: {answers[:-1]}")
                yield n
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"io.kubeling.node={name}"}):
            c.remove(force=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10, check=False)


def start_scheduler_and_controllers(cp: ControlPlane, *, kubeconfig: Path | str | None = None,
                                    controller_args: Sequence[str] = (), timeout: float = 30.0) -> dict[str, str]:
    """Start ``python -m scheduler`` and ``python -m controllers`` (all controllers) in ``cp.procs``
    on free ports, as "scheduler" and "controller-manager"; wait for their /healthz.

    ``kubeconfig`` defaults to ``cp.kubeconfig``; ``controller_args`` are appended to the
    controller-manager's command line (e.g. ``--allocate-node-cidrs --cluster-cidr ...``).
    Returns {"scheduler": URL, "controller-manager": URL} of their health/metrics servers.
    """
    kc = str(kubeconfig or cp.kubeconfig)
    sched_port, cm_port = free_port(), free_port()
    cp.procs.spawn("scheduler", [sys.executable, "-m", "scheduler", "--kubeconfig", kc, "--bind-address",
                                 "127.0.0.1", "--secure-port", str(sched_port)])
    cp.procs.spawn("controller-manager", [sys.executable, "-m", "controllers", "--kubeconfig", kc,
                                          "--bind-address", "127.0.0.1", "--secure-port", str(cm_port),
                                          *controller_args])
    urls = {"scheduler": f"http://127.0.0.1:{sched_port}", "controller-manager": f"http://127.0.0.1:{cm_port}"}
    for name, url in urls.items():
        cp.procs.wait_ready(name, url=f"{url}/healthz", timeout=timeout)
    return urls


@contextlib.contextmanager
def secure_control_plane(tmp_path: Path | str, *, controllers: str = "",
                         apiserver_args: Sequence[str] = (), timeout: float = 40.0) -> Iterator[ControlPlane]:
    """etcd 3.4 + an HTTPS apiserver with kubeadm's PKI (``kubeling.pki.ensure`` under ``tmp/pki``),
    client certificates, bootstrap tokens, Node,RBAC and NodeRestriction, as the launcher runs it.

    ``kubeconfig`` is the admin's (system:masters, embedded certificates); ``extra["pki"]`` is the PKI
    dir. With ``controllers`` (a --controllers value, e.g. "csrapproving,csrsigning") a
    controller-manager runs as system:kube-controller-manager with the cluster CA as signing CA.
    Skips without /usr/bin/etcd; every process is stopped by PID when the block ends.
    """
    from kubeling import pki
    from kubeling.pki import flags
    tmp = Path(tmp_path)
    if not os.path.exists(ETCD):
        pytest.skip("etcd 3.4 is not installed at /usr/bin/etcd")
    p = tmp / "pki"
    pki.ensure(p, etcd_members=["default"], front_proxy=False)
    with ProcessGroup(tmp) as procs:
        port, peer, api_port = free_port(), free_port(), free_port()
        procs.spawn("etcd", store_argv("etcd", tmp / "etcd-data", port, peer))
        procs.wait_ready("etcd", port=port, timeout=timeout)
        server = f"https://127.0.0.1:{api_port}"
        procs.spawn("apiserver", [sys.executable, "-m", "apiserver", "--etcd-servers", f"http://127.0.0.1:{port}",
                                  "--bind-address", "127.0.0.1", "--secure-port", str(api_port),
                                  *flags.apiserver_flags(p)[:6], "--authorization-mode", "Node,RBAC",
                                  "--enable-bootstrap-token-auth", "--enable-admission-plugins", "NodeRestriction",
                                  *apiserver_args])
        ca = str(p / "ca.crt")
        verify = ssl.create_default_context(cafile=ca)
        wait_for("apiserver /readyz", lambda: procs.get("apiserver").poll() is None and httpx.get(
            f"{server}/readyz", verify=verify, timeout=2, trust_env=False).status_code == 200, timeout, 0.2,
            errors=(httpx.HTTPError,))
        kc = tmp / "admin.kubeconfig"
        pki.write_kubeconfig(kc, pki_dir=p, identity="admin", server=server)
        extra: dict = {"pki": p}
        if controllers:
            cm_kc, cm_port = tmp / "controller-manager.kubeconfig", free_port()
            pki.write_kubeconfig(cm_kc, pki_dir=p, identity="controller-manager", server=server)
            procs.spawn("controller-manager", [
                sys.executable, "-m", "controllers", "--kubeconfig", str(cm_kc), "--bind-address", "127.0.0.1",
                "--secure-port", str(cm_port), "--controllers", controllers, "--leader-elect=false",
                "--cluster-signing-cert-file", ca, "--cluster-signing-key-file", str(p / "ca.key")])
            procs.wait_ready("controller-manager", url=f"http://127.0.0.1:{cm_port}/healthz", timeout=timeout)
        yield ControlPlane(server=server, kubeconfig=kc, etcd_endpoint=f"http://127.0.0.1:{port}",
                           etcd_log=procs.log_path("etcd"), apiserver_log=procs.log_path("apiserver"), procs=procs,
                           tmp=tmp, extra=extra)


# --------------------------------------------------------------------------- DNS

class FakeResolver:
    """A UDP DNS resolver on ``host`` (a free port) for tests of forwarding: A
    queries for names in ``answers`` ({"example.org.": "192.0.2.77"}) get that
    address, everything else NXDOMAIN. Runs in a thread; ``close()`` stops it.
    ``seen`` lists the names asked. Never a real outside resolver."""

    def __init__(self, answers: dict[str, str] | None = None, *, host: str = "127.0.0.1"):
        import threading

        self.answers = {k.lower(): v for k, v in (answers or {}).items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset

        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
                q = dns.message.from_wire(data)
            except socket.timeout:
                continue
            except Exception:  # noqa: BLE001 - junk or a closed socket: ignore
                continue
            name = q.question[0].name.to_text().lower()
            self.seen.append(name)
            r = dns.message.make_response(q)
            if name in self.answers and q.question[0].rdtype == 1:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", self.answers[name]))
            elif name not in self.answers:
                r.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(r.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def deployed_cluster(home: Path, *up_args: str, ports: Sequence[int] = (2379, 6443, 10250),
                     timeout: float = 300) -> Iterator[dict]:
    """A cluster of the launcher (``python -m deploy up *up_args``) in the state dir ``home``:
    yields {"home", "env"} and runs ``deploy down`` on exit, whatever happened.

    Skips without root; fails with one clear line when Docker does not answer or one of the
    launcher's fixed ``ports`` is taken (a cluster is already up)."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root (network namespaces, iptables)")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        pytest.fail("Docker is not answering: run `make test` (it starts dockerd) or `python -m deploy prepare`")
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"127.0.0.1:{port} is in use: a kubeling cluster is already up (`make down` first)")
    env = {**os.environ, "KUBELING_HOME": str(home)}
    try:
        up = subprocess.run([sys.executable, "-m", "deploy", "up", *up_args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
        assert up.returncode == 0, f"deploy up {' '.join(up_args)} failed:\n{up.stdout}\n{up.stderr}"
        yield {"home": home, "env": env}
    finally:
        subprocess.run([sys.executable, "-m", "deploy", "down"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout)
