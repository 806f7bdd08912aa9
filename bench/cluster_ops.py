"""Operating figures of a local cluster (issue 9's benchmark).

- `deploy up` to ready for 1 node, and for HA=1 with 3 nodes (dependencies
  already installed, images present);
- the whole control plane's idle CPU (% of one core) and RSS over a window;
- recovery after kill -9 of each control-plane component: time until
  supervisord has it running and its health check answers again.

Targets (issue 9): up <= 10 s for 1 node; idle control plane <= 400 MiB RSS
and <= 5% of one core; every component back within 5 s of a crash.

    .venv/bin/python bench/cluster_ops.py [--idle-seconds 60] [--skip-ha]

Each cluster lives in a temporary KUBELING_HOME and is taken down at the end.
Needs the fixed ports of a local cluster (2379, 6443, ...) free.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.cluster import Cluster  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
CONTROL_PLANE = ("etcdlite", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "apiserver-lb")


def up(home: pathlib.Path, *args: str) -> float:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "deploy", "up", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "KUBELING_HOME": str(home)})
    if r.returncode:
        raise SystemExit(f"deploy up {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return time.monotonic() - t0


def down(home: pathlib.Path) -> None:
    subprocess.run([sys.executable, "-m", "deploy", "down"], cwd=REPO, capture_output=True, text=True,
                   timeout=600, env={**os.environ, "KUBELING_HOME": str(home)})


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in pathlib.Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            f = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in pathlib.Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def idle(cluster: Cluster, seconds: float) -> tuple[float, float, dict[str, float]]:
    """(CPU % of one core, RSS MiB, RSS per component) of the control plane over ``seconds``."""
    comps = [c for c in cluster.control_plane_components() if c.name.startswith(CONTROL_PLANE)]
    pids = {c.name: tree(cluster.pid_of(c)) for c in comps}
    every = [p for ps in pids.values() for p in ps]
    t0, c0 = time.monotonic(), cpu_ticks(every)
    time.sleep(seconds)
    cpu = (cpu_ticks(every) - c0) / CLK / (time.monotonic() - t0) * 100
    per = {n: rss_mib(ps) for n, ps in pids.items()}
    return cpu, sum(per.values()), per


def recovery(cluster: Cluster) -> list[tuple[str, float]]:
    """Seconds from kill -9 to healthy again, per control-plane component."""
    out = []
    for comp in cluster.control_plane_components():
        pid = cluster.pid_of(comp)
        if not pid:
            continue
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            new = cluster.pid_of(comp)
            if new and new != pid and comp.healthy():
                break
            time.sleep(0.05)
        out.append((comp.name, time.monotonic() - t0))
        time.sleep(1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--skip-ha", action="store_true")
    args = ap.parse_args()
    print(f"kubeling cluster operations — {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="kl-bench-ops-") as tmp:
        home = pathlib.Path(tmp) / "one"
        try:
            first = up(home)
            down(home)
            again = up(home)
            print(f"up, 1 node:           {first:5.1f} s first, {again:5.1f} s with state   (target <= 10 s)")
            cluster = Cluster(home)
            cpu, rss, per = idle(cluster, args.idle_seconds)
            print(f"idle control plane:   {cpu:5.1f} % of one core, {rss:6.1f} MiB RSS over "
                  f"{args.idle_seconds:.0f} s   (targets <= 5 %, <= 400 MiB)")
            print("   " + ", ".join(f"{n} {m:.0f} MiB" for n, m in per.items()))
            rec = recovery(cluster)
            print("recovery after kill -9 (target <= 5 s): "
                  + ", ".join(f"{n} {t:.1f} s" for n, t in rec))
        finally:
            down(home)
        if not args.skip_ha:
            home = pathlib.Path(tmp) / "ha"
            try:
                secs = up(home, "--ha", "--nodes", "3")
                print(f"up, HA=1 + 3 nodes:   {secs:5.1f} s")
                cluster = Cluster(home)
                cpu, rss, per = idle(cluster, args.idle_seconds)
                print(f"idle HA control plane: {cpu:5.1f} % of one core, {rss:6.1f} MiB RSS")
                rec = recovery(cluster)
                print("HA recovery after kill -9: " + ", ".join(f"{n} {t:.1f} s" for n, t in rec))
            finally:
                down(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
