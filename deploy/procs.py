"""Starting, finding and stopping the processes of a local cluster by pid file.

Each component runs as its own session leader with stdout/stderr appended to
``<home>/logs/<name>.log`` and its pid in ``<home>/run/<name>.pid``. A pid is
trusted only while ``/proc/<pid>/cmdline`` still shows the expected command,
so a recycled pid is never signalled.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
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


def start(name: str, argv: list[str], *, log_dir: pathlib.Path, run_dir: pathlib.Path,
          env: dict | None = None) -> subprocess.Popen:
    """Start ``argv`` detached (own session), logging to ``log_dir/<name>.log``;
    returns the Popen (its pid is also written to ``run_dir/<name>.pid``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
    (run_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc


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
