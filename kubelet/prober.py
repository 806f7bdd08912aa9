"""Readiness and liveness probes of running containers.

Each probed container gets a worker task that waits initialDelaySeconds,
then probes every periodSeconds (exec through CRI ExecSync, httpGet and
tcpSocket against the pod IP, each bounded by timeoutSeconds) and flips its
result after failureThreshold consecutive failures or successThreshold
consecutive successes. A changed result asks the pod worker to sync: a
readiness change alters the pod's Ready condition, a liveness failure makes
the sync restart the container. Mirrors pkg/kubelet/prober (prober_manager.go,
worker.go, prober.go) and pkg/probe/{exec,http,tcp}.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Callable

import httpx

from kubelet.container import STATE_RUNNING, PodStatus
from kubelet.cri import CRIError, RemoteRuntime

log = logging.getLogger(__name__)

READINESS = "readiness"
LIVENESS = "liveness"


@dataclasses.dataclass
class ProbeResult:
    """Outcome of one probe run: ``ok`` and a human-readable ``message``."""

    ok: bool
    message: str = ""


def resolve_port(port, container: dict) -> int:
    """A probe's port: an int, a numeric string, or the name of a containerPort.
    Raises ValueError if it cannot be resolved."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in container ports")


async def run_probe(probe: dict, container: dict, *, runtime: RemoteRuntime, container_id: str,
                    pod_ip: str) -> ProbeResult:
    """Run ``probe`` once (exec / httpGet / tcpSocket); never raises."""
    timeout = max(int(probe.get("timeoutSeconds", 1) or 1), 1)
    try:
        if "exec" in probe:
            cmd = probe["exec"].get("command") or []
            resp = await runtime.exec_sync(container_id, cmd, timeout=timeout)
            out = (resp.stdout + resp.stderr).decode(errors="replace").strip()
            return ProbeResult(resp.exit_code == 0, out if resp.exit_code == 0 else
                               f"command {cmd!r} exited with {resp.exit_code}: {out[:200]}")
        if "httpGet" in probe:
            hg = probe["httpGet"]
            host = hg.get("host") or pod_ip
            port = resolve_port(hg.get("port"), container)
            scheme = (hg.get("scheme") or "HTTP").lower()
            path = hg.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            headers = {h["name"]: h.get("value", "") for h in hg.get("httpHeaders") or [] if h.get("name")}
            headers.setdefault("User-Agent", "kube-probe/1.32")
            async with httpx.AsyncClient(timeout=timeout, verify=False, follow_redirects=False,
                                         trust_env=False) as c:
                r = await c.get(f"{scheme}://{host}:{port}{path}", headers=headers)
            if 200 <= r.status_code < 400:
                return ProbeResult(True)
            return ProbeResult(False, f"HTTP probe failed with statuscode: {r.status_code}")
        if "tcpSocket" in probe:
            ts = probe["tcpSocket"]
            host = ts.get("host") or pod_ip
            port = resolve_port(ts.get("port"), container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            return ProbeResult(True)
        return ProbeResult(False, "probe has no handler (exec, httpGet or tcpSocket)")
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return ProbeResult(False, f"probe timed out after {timeout}s")
    except (CRIError, OSError, httpx.HTTPError, ValueError) as e:
        return ProbeResult(False, str(e) or type(e).__name__)


class _Worker:
    def __init__(self, kind: str, container_id: str, task: asyncio.Task | None = None):
        self.kind = kind
        self.container_id = container_id
        self.task = task
        self.ok = kind == LIVENESS  # readiness starts failing, liveness passing


class ProbeManager:
    """Keeps one probe worker per (pod uid, container name, kind).

    ``on_change(uid)`` is called when a result flips; ``recorder(pod, type,
    reason, message)`` posts Unhealthy events. ``update(pod, status)`` after
    every pod sync starts/stops workers to match the running containers.
    """

    def __init__(self, runtime: RemoteRuntime, *, on_change: Callable[[str], None],
                 recorder: Callable[[dict, str, str, str], None]):
        self.runtime = runtime
        self.on_change = on_change
        self.recorder = recorder
        self._workers: dict[tuple[str, str, str], _Worker] = {}

    def readiness(self, uid: str) -> dict[str, bool]:
        """container name -> readiness result for this pod's probed containers."""
        return {name: w.ok for (u, name, kind), w in self._workers.items() if u == uid and kind == READINESS}

    def liveness_failed(self, uid: str, name: str, container_id: str) -> bool:
        """True if the liveness probe of this very container has failed."""
        w = self._workers.get((uid, name, LIVENESS))
        return w is not None and w.container_id == container_id and not w.ok

    def update(self, pod: dict, status: PodStatus) -> None:
        """Start workers for running probed containers; stop stale ones."""
        uid = pod["metadata"]["uid"]
        wanted: dict[tuple[str, str, str], tuple[dict, dict, str]] = {}
        if not pod["metadata"].get("deletionTimestamp"):
            for c in pod.get("spec", {}).get("containers", []):
                latest = status.find(c["name"])
                if latest is None or latest.state != STATE_RUNNING:
                    continue
                for kind, field in ((READINESS, "readinessProbe"), (LIVENESS, "livenessProbe")):
                    if c.get(field):
                        wanted[(uid, c["name"], kind)] = (c, c[field], latest.id)
        for key in [k for k in self._workers if k[0] == uid]:
            w = self._workers[key]
            if key not in wanted or wanted[key][2] != w.container_id:
                self._stop(key)
        for key, (c, probe, cid) in wanted.items():
            if key not in self._workers:
                w = _Worker(key[2], cid)
                w.task = asyncio.get_running_loop().create_task(
                    self._run(pod, c, probe, w, status.ip), name=f"probe-{key}")
                self._workers[key] = w

    def remove_pod(self, uid: str) -> None:
        """Stop every worker of the pod."""
        for key in [k for k in self._workers if k[0] == uid]:
            self._stop(key)

    def _stop(self, key) -> None:
        w = self._workers.pop(key)
        if w.task is not None:
            w.task.cancel()

    async def close(self) -> None:
        """Stop all workers."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        self._workers.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, pod: dict, container: dict, probe: dict, w: _Worker, pod_ip: str) -> None:
        uid = pod["metadata"]["uid"]
        period = max(int(probe.get("periodSeconds", 10) or 10), 1)
        fail_thr = max(int(probe.get("failureThreshold", 3) or 3), 1)
        ok_thr = max(int(probe.get("successThreshold", 1) or 1), 1)
        await asyncio.sleep(max(int(probe.get("initialDelaySeconds", 0) or 0), 0))
        fails = oks = 0
        while True:
            res = await run_probe(probe, container, runtime=self.runtime, container_id=w.container_id,
                                  pod_ip=pod_ip)
            if res.ok:
                oks, fails = oks + 1, 0
            else:
                oks, fails = 0, fails + 1
                self.recorder(pod, "Warning", "Unhealthy",
                              f"{w.kind.capitalize()} probe failed: {res.message}")
            new = w.ok
            if res.ok and oks >= ok_thr:
                new = True
            elif not res.ok and fails >= fail_thr:
                new = False
            if new != w.ok:
                w.ok = new
                log.info("%s probe of %s/%s container %s: %s", w.kind,
                         pod["metadata"].get("namespace"), pod["metadata"]["name"], container["name"],
                         "success" if new else f"failure ({res.message})")
                self.on_change(uid)
            await asyncio.sleep(period)
