"""Plumbing shared by the tests that start real control-plane processes.

Several integration and e2e test files need the same things: a free
loopback port, a bounded poll, processes whose output goes to a log file
and which are stopped by PID even when a test fails, and an etcd (or
etcdlite) + ``python -m apiserver`` pair with an admin kubeconfig. They
live here once; ``tests/conftest.py`` puts this directory on ``sys.path``
so a test imports it as ``import support``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
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


@contextlib.contextmanager
def control_plane(tmp_path: Path | str, store: str = "etcd", *, apiserver_args: Sequence[str] = (),
                  user: str = "test", kubeconfig_name: str = "admin.kubeconfig",
                  timeout: float = 30.0) -> Iterator[ControlPlane]:
    """Start ``store`` ("etcd" = /usr/bin/etcd 3.4, or "etcdlite") and ``python -m apiserver`` on free ports.

    Data, logs (``<store>.log``, ``apiserver.log``) and the kubeconfig go
    under ``tmp_path``. Skips the test if etcd is wanted but not installed.
    Every process is stopped by PID when the block ends, even on failure.
    """
    tmp = Path(tmp_path)
    if store == "etcd" and not os.path.exists(ETCD):
        pytest.skip("etcd 3.4 is not installed at /usr/bin/etcd")
    with ProcessGroup(tmp) as procs:
        port, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{port}"
        procs.spawn(store, store_argv(store, tmp / f"{store}-data", port, peer))
        procs.wait_ready(store, port=port, timeout=timeout)
        api_port = free_port()
        server = f"http://127.0.0.1:{api_port}"
        procs.spawn("apiserver", [sys.executable, "-m", "apiserver", "--etcd-servers", etcd_url,
                                  "--bind-address", "127.0.0.1", "--secure-port", str(api_port),
                                  *apiserver_args])
        procs.wait_ready("apiserver", url=f"{server}/readyz", timeout=timeout)
        kc = tmp / kubeconfig_name
        _kubeconfig.write(kc, server=server, user=user)
        yield ControlPlane(server=server, kubeconfig=kc, etcd_endpoint=etcd_url, etcd_log=procs.log_path(store),
                           apiserver_log=procs.log_path("apiserver"), procs=procs, tmp=tmp)
