"""Supervision of a local cluster's processes by supervisord (the `supervisor` package).

The seeds' node runs "supervisord ... [which] monitors both the kubelet and
docker processes ... will try to restart them if they fail, and log events";
the launcher does the same for every component: it writes
``<home>/supervisord.conf`` with one ``[program:x]`` per component
(``autorestart``, back-off on fast failures, the whole process group
stopped and killed together so a shim's CNI server goes with it), starts
``supervisord`` once, and drives it over its XML-RPC unix socket:
start in dependency order (the launcher waits for each one's health),
status (pid, state, uptime, restarts), stop and shutdown.

Restarts are counted from supervisord's own log ("spawned: 'x'" lines),
since supervisor does not keep a counter.
"""
from __future__ import annotations

import configparser
import io
import pathlib
import re
import shlex
import subprocess
import sys
import time
import xmlrpc.client

from deploy import procs

CONF = "supervisord.conf"


class SupervisorError(Exception):
    """supervisord could not be started or reached (message says which file to read)."""


def render_conf(programs: list[tuple[str, list[str]]], *, home: pathlib.Path) -> str:
    """supervisord.conf text for ``programs`` ((name, argv) in start order; stopped in reverse)."""
    run, logs = home / "run", home / "logs"
    cp = configparser.RawConfigParser()
    cp.optionxform = str
    cp["unix_http_server"] = {"file": str(run / "supervisor.sock"), "chmod": "0700"}
    cp["supervisord"] = {"logfile": str(logs / "supervisord.log"), "logfile_maxbytes": "0",
                         "pidfile": str(run / "supervisord.pid"), "childlogdir": str(logs), "loglevel": "info"}
    cp["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"}
    cp["supervisorctl"] = {"serverurl": f"unix://{run / 'supervisor.sock'}"}
    for i, (name, argv) in enumerate(programs):
        cp[f"program:{name}"] = {
            "command": shlex.join(argv), "priority": str(100 + i), "autostart": "false",
            "autorestart": "true", "startsecs": "1", "startretries": "100",
            "stopsignal": "TERM", "stopwaitsecs": "15", "stopasgroup": "true", "killasgroup": "true",
            "redirect_stderr": "true", "stdout_logfile": str(logs / f"{name}.log"),
            "stdout_logfile_maxbytes": "50MB", "stdout_logfile_backups": "2",
        }
    out = io.StringIO()
    cp.write(out)
    return out.getvalue()


class Supervisor:
    """The supervisord of one cluster state dir ``home``."""

    def __init__(self, home: pathlib.Path):
        self.home = home
        self.conf = home / CONF
        self.sock = home / "run" / "supervisor.sock"
        self.pidfile = home / "run" / "supervisord.pid"
        self.log = home / "logs" / "supervisord.log"

    def rpc(self):
        """The ``supervisor`` XML-RPC namespace (calls raise OSError when supervisord is gone)."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        """True when our supervisord answers on its socket."""
        if not procs.alive(procs.read_pid(self.pidfile), "supervisord"):
            return False
        try:
            return self.rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def ensure(self, programs: list[tuple[str, list[str]]], *, timeout: float = 20) -> None:
        """Write the conf for ``programs`` and start supervisord, or, when it runs, load the
        changes (programs added, removed or with a new command line; a changed one is stopped).
        Raises SupervisorError."""
        for d in (self.home / "run", self.home / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_conf(programs, home=self.home))
        if self.running():
            try:
                added, changed, removed = self.rpc().reloadConfig()[0]
                for name in changed + removed:
                    self._stop(name)
                    self.rpc().removeProcessGroup(name)
                for name in changed + added:
                    self.rpc().addProcessGroup(name)
            except (OSError, xmlrpc.client.Error) as e:
                raise SupervisorError(f"supervisord reload failed: {e}; see {self.log}") from e
            return
        self.sock.unlink(missing_ok=True)
        r = subprocess.run([str(pathlib.Path(sys.executable).with_name("supervisord")), "-c", str(self.conf)],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise SupervisorError(f"supervisord did not start: {(r.stderr or r.stdout).strip()[-300:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.1)
        raise SupervisorError(f"supervisord not answering after {timeout:.0f}s; see {self.log}")

    def info(self, name: str) -> dict:
        """supervisor's getProcessInfo for ``name`` ({} when unknown or supervisord is down)."""
        try:
            return self.rpc().getProcessInfo(name)
        except (OSError, xmlrpc.client.Error):
            return {}

    def start(self, name: str) -> None:
        """Start ``name`` without waiting (the caller waits for health). Raises SupervisorError."""
        try:
            self.rpc().startProcess(name, False)
        except xmlrpc.client.Fault as e:
            if "ALREADY_STARTED" not in e.faultString:
                raise SupervisorError(f"start {name}: {e.faultString}") from e
        except OSError as e:
            raise SupervisorError(f"start {name}: {e}") from e

    def _stop(self, name: str) -> None:
        try:
            self.rpc().stopProcess(name, True)
        except xmlrpc.client.Fault as e:
            if "NOT_RUNNING" not in e.faultString and "BAD_NAME" not in e.faultString:
                raise

    def shutdown(self, *, timeout: float = 60) -> list[str]:
        """Stop every program (reverse start order) and supervisord itself; returns what was stopped."""
        if not self.running():
            return []
        stopped = []
        try:
            infos = sorted(self.rpc().getAllProcessInfo(), key=lambda i: i["name"])
            for result in self.rpc().stopAllProcesses(True):
                if result.get("status") == 80:  # SUCCESS
                    pid = next((i["pid"] for i in infos if i["name"] == result["name"]), 0)
                    stopped.append(f"stopped {result['name']} (pid {pid})")
            pid = procs.read_pid(self.pidfile)
            self.rpc().shutdown()
        except (OSError, xmlrpc.client.Error) as e:
            raise SupervisorError(f"supervisord shutdown failed: {e}; see {self.log}") from e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procs.alive(pid, "supervisord"):
            time.sleep(0.1)
        stopped.append(f"stopped supervisord (pid {pid})")
        return stopped

    def restarts(self) -> dict[str, int]:
        """Per program, how often supervisord started it again after its first start in this log."""
        counts: dict[str, int] = {}
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return counts
        # Each `up` may start a program once by hand; restarts are spawns beyond the first
        # since the last supervisord start.
        text = text[text.rfind("supervisord started with pid"):] if "supervisord started with pid" in text else text
        for name in re.findall(r"spawned: '([^']+)' with pid", text):
            counts[name] = counts.get(name, 0) + 1
        return {k: v - 1 for k, v in counts.items()}
