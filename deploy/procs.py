"""Finding and stopping processes recorded in pid files (dockerd when kubeling started it,
and the components of a cluster started before supervisord ran them).

A pid is trusted only while ``/proc/<pid>/cmdline`` still shows the expected
command, so a recycled pid is never signalled.
"""
from __future__ import annotations

import os
import pathlib
import signal
import time


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces, or "" when it is gone."""
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, expect: str) -> bool:
    """True when ``pid`` runs and its command line contains ``expect``."""
    if pid <= 0:
        return False
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except OSError:
        return False
    return expect in cmdline(pid)


def read_pid(pidfile: pathlib.Path) -> int:
    """The pid recorded in ``pidfile`` (0 if absent or unreadable)."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return 0


def stop_pid(pid: int, *, expect: str, timeout: float = 10) -> bool:
    """SIGTERM ``pid`` (if it still runs ``expect``), SIGKILL after ``timeout`` s.
    Returns True when a process was stopped."""
    if not alive(pid, expect):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, expect):
            _reap(pid)
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(50):
        if not alive(pid, expect):
            break
        time.sleep(0.1)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
