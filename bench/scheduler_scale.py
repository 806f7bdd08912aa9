"""Scheduler and controller-manager at scale on hollow nodes (issue 5's benchmark).

    .venv/bin/python bench/scheduler_scale.py            # 10,000 pods onto 1,000 hollow nodes
    .venv/bin/python bench/scheduler_scale.py --quick    # 1,000 pods onto 100 hollow nodes
    .venv/bin/python bench/scheduler_scale.py --nodes 500 --pods 5000 --replicas 500 --store etcd
    .venv/bin/python bench/scheduler_scale.py --nodes 200 --pods 2000 --throughput-only
    .venv/bin/python bench/scheduler_scale.py --nodes 200 --pods 2000 --profile-scheduler sched.prof

Starts etcdlite (or etcd 3.4) + apiserver + controller-manager + one
``python -m kubelet.hollow`` process on free loopback ports (tests/support.py),
then three phases, each bounded by a time limit:

1. throughput: PODS pods are created with no scheduler running, then the
   scheduler starts; printed: scheduler start -> all bound, and first ->
   last binding as pods/s (the scheduler's own rate, as scheduler_perf's
   SchedulingThroughput), and the scheduler's CPU milliseconds per pod from
   its first binding to its last, which unlike pods/s hardly depends on how
   loaded the machine is. ``--throughput-only`` stops here; ``--profile-scheduler
   FILE`` runs the scheduler under cProfile and writes its stats to FILE.
2. latency: PODS/5 more pods are created (64 creators) while the scheduler
   runs; per pod, creation (answer of the POST) -> binding seen on a watch;
   printed p50 / p99 in ms.
3. controllers: a Deployment of REPLICAS replicas; printed the time until
   availableReplicas == REPLICAS and every pod Running.

Then the peak RSS (VmHWM) of the scheduler, controller-manager, apiserver
and hollow processes. Targets are printed beside the figures; nothing here
asserts on timing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import support  # noqa: E402
from kubeling.client import ApiError, Client, Informer  # noqa: E402

NS = "bench"
TARGET_PODS_PER_S = 300
TARGET_DEPLOYMENT_S = 60


def peak_rss_mb(pid: int) -> float:
    """VmHWM of ``pid`` in MiB (nan if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (nan if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


PROCS: support.ProcessGroup | None = None  # the run's processes, checked while waiting
RESTART_ARGV: dict[str, list[str]] = {}    # components restarted when they exit 1 (lost leadership)
RESTARTS: dict[str, int] = {}
COMPONENTS = ("scheduler", "controller-manager", "apiserver", "hollow")


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "sched"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


class Tracker:
    """Times (monotonic) at which this process saw each pod of NS bound and Running, from one informer."""

    def __init__(self, client: Client):
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.informer = Informer(client, "pods", namespace=NS)
        self.informer.add_handlers(on_add=self._seen, on_update=lambda old, new: self._seen(new))

    def _seen(self, p: dict) -> None:
        name, now = p["metadata"]["name"], time.monotonic()
        if p["spec"].get("nodeName") and name not in self.bound:
            self.bound[name] = now
        if (p.get("status") or {}).get("phase") == "Running" and name not in self.running:
            self.running[name] = now


async def create_pods(client: Client, names: list[str], *, concurrency: int = 64) -> dict[str, float]:
    """POST the pods, ``concurrency`` at a time; returns name -> monotonic time of the answer."""
    created: dict[str, float] = {}
    it = iter(names)

    async def worker() -> None:
        for name in it:
            for attempt in range(5):
                try:
                    await client.create("pods", pod(name), namespace=NS)
                    break
                except ApiError as e:
                    if e.code == 409:
                        break
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            created[name] = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return created


async def wait_until(what: str, fn, timeout: float, interval: float = 0.05, *, detail=lambda: "") -> float:
    """Poll ``fn()`` until truthy; returns the monotonic time it became so. SystemExit
    after ``timeout`` (with ``detail()`` in the message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return time.monotonic()
        for name, proc in list(PROCS.procs) if PROCS else ():
            if proc.poll() is None or proc is not PROCS.get(name):
                continue
            if proc.returncode == 1 and name in RESTART_ARGV and RESTARTS.get(name, 0) < 3:
                # Lost its lease (e.g. the apiserver stalled past the renew deadline) and
                # exited 1, as upstream does: restart it, as kubelet would a static pod.
                RESTARTS[name] = RESTARTS.get(name, 0) + 1
                print(f"{name} exited 1 ({PROCS.log(name, 300).strip().splitlines()[-1][:160]}); restarting",
                      flush=True)
                PROCS.spawn(name, RESTART_ARGV[name])
                continue
            raise SystemExit(f"{name} exited {proc.returncode} while waiting for {what}:\n{PROCS.log(name)}")
        await asyncio.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what} {detail()}")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else float("nan")


async def run(args: argparse.Namespace, cp: support.ControlPlane) -> None:
    global PROCS
    PROCS = cp.procs
    kc = str(cp.kubeconfig)
    py = sys.executable
    client = Client.from_kubeconfig(kc)
    tracker = Tracker(client)
    tasks = []
    try:
        await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        cm_port, hollow_port, sched_port = support.free_port(), support.free_port(), support.free_port()
        RESTART_ARGV["controller-manager"] = [
            py, "-m", "controllers", "--kubeconfig", kc, "--secure-port", str(cm_port), "--allocate-node-cidrs",
            "--cluster-cidr", "10.128.0.0/9", "--node-cidr-mask-size", "24"]
        RESTART_ARGV["scheduler"] = [py, *(["-m", "cProfile", "-o", args.profile_scheduler] if args.profile_scheduler
                                           else []),
                                     "-m", "scheduler", "--kubeconfig", kc, "--secure-port", str(sched_port)]
        cp.procs.spawn("controller-manager", RESTART_ARGV["controller-manager"])
        t0 = time.monotonic()
        cp.procs.spawn("hollow", [py, "-m", "kubelet.hollow", "--kubeconfig", kc, "--count", str(args.nodes),
                                  "--name-prefix", "hollow-", "--cpu", "32", "--memory", "128Gi", "--pods", "110",
                                  "--healthz-port", str(hollow_port)])
        cp.procs.wait_ready("controller-manager", url=f"http://127.0.0.1:{cm_port}/healthz", timeout=60)
        cp.procs.wait_ready("hollow", url=f"http://127.0.0.1:{hollow_port}/healthz", timeout=60 + args.nodes / 5)
        print(f"{args.nodes} hollow nodes registered in {time.monotonic() - t0:.1f}s", flush=True)
        tasks.append(asyncio.ensure_future(tracker.informer.run()))
        await tracker.informer.wait_synced(30)

        # 1. throughput: pods first, then the scheduler.
        names = [f"t-{i}" for i in range(args.pods)]
        t0 = time.monotonic()
        await create_pods(client, names)
        create_s = time.monotonic() - t0
        print(f"created {args.pods} pods in {create_s:.1f}s ({args.pods / create_s:.0f}/s), no scheduler running",
              flush=True)
        store = "etcdlite" if args.store == "etcdlite" else "etcd"
        pids = {n: cp.procs.get(n).pid for n in ("controller-manager", "apiserver", "hollow", store)}
        cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
        t_start = time.monotonic()
        sched_pid = cp.procs.spawn("scheduler", RESTART_ARGV["scheduler"]).pid
        # The scheduler's CPU from its first binding to its last (startup and the
        # informers' initial lists left out): CPU ms per pod does not depend on the
        # machine's load, pods/s does.
        await wait_until("a first pod bound", lambda: tracker.bound, 120, interval=0.01)
        sched_cpu_first, bound_first = cpu_seconds(sched_pid), len(tracker.bound)
        await wait_until(f"{args.pods} pods bound", lambda: all(n in tracker.bound for n in names),
                         120 + args.pods / 10)
        sched_cpu_steady = cpu_seconds(sched_pid) - sched_cpu_first
        bound = [tracker.bound[n] for n in names]
        first, last = min(bound), max(bound)
        pids["scheduler"] = cp.procs.get("scheduler").pid
        cpu1 = {n: cpu_seconds(pid) - cpu0.get(n, 0.0) for n, pid in pids.items()}
        steady = args.pods / (last - first) if last > first else float("nan")
        cpu_ms_per_pod = sched_cpu_steady * 1000 / max(1, args.pods - bound_first)
        print(f"throughput phase: {steady:.0f} pods/s first->last binding, scheduler CPU "
              f"{cpu_ms_per_pod:.2f} ms/pod (load average {os.getloadavg()[0]:.1f})", flush=True)
        print("CPU ms per pod over the whole phase (incl. the scheduler's start): " + ", ".join(
            f"{n} {v * 1000 / args.pods:.2f}" for n, v in cpu1.items()), flush=True)
        if args.profile_scheduler:
            cp.procs.stop("scheduler", timeout=120)  # cProfile writes its file on the way out
            print(f"scheduler profile in {args.profile_scheduler}", flush=True)
        if args.throughput_only:
            return

        # 2. latency: pods created while the scheduler runs.
        lat_names = [f"l-{i}" for i in range(max(1, args.pods // 5))]
        created = await create_pods(client, lat_names)
        await wait_until(f"{len(lat_names)} pods bound", lambda: all(n in tracker.bound for n in lat_names),
                         120 + len(lat_names) / 20)
        lat = [(tracker.bound[n] - created[n]) * 1000 for n in lat_names]
        lat_rate = len(lat_names) / (max(tracker.bound[n] for n in lat_names) - min(created.values()))
        await wait_until("bench pods Running", lambda: all(n in tracker.running for n in names + lat_names),
                         120 + args.pods / 20, interval=0.2)

        # 3. controller-manager: a Deployment of REPLICAS.
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "scale"},
               "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": "scale"}},
                        "template": {"metadata": {"labels": {"app": "scale"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                                              "resources": {"requests": {"cpu": "10m"}}}]}}}}
        t0 = time.monotonic()
        await client.create("deployments", dep, namespace=NS)
        dep_state = {}

        async def poll_deployment() -> None:
            while True:
                d = await client.get("deployments", "scale", namespace=NS)
                dep_state.update(d.get("status") or {})
                await asyncio.sleep(0.25)
        poller = asyncio.ensure_future(poll_deployment())
        tasks.append(poller)

        def dep_done() -> bool:
            running = sum(1 for n in tracker.running if n.startswith("scale-"))
            return dep_state.get("availableReplicas") == args.replicas and running >= args.replicas
        await wait_until(f"{args.replicas} replicas available", dep_done, 60 + args.replicas / 5, interval=0.1,
                         detail=lambda: f"(status {dep_state}, pods bound "
                         f"{sum(1 for n in tracker.bound if n.startswith('scale-'))}, running "
                         f"{sum(1 for n in tracker.running if n.startswith('scale-'))})")
        dep_s = time.monotonic() - t0

        rss = {n: peak_rss_mb(cp.procs.get(n).pid) for n in COMPONENTS}
        print()
        print(f"{'figure':<52} {'value':>12}   target")
        rows = [
            ("scheduler start -> all bound (s)", f"{last - t_start:.1f}", ""),
            ("scheduler CPU per pod, first->last binding (ms)", f"{cpu_ms_per_pod:.2f}", ""),
            (f"throughput: {args.pods} pods, first->last binding (pods/s)", f"{steady:.0f}",
             f">= {TARGET_PODS_PER_S}"),
            (f"latency phase: {len(lat_names)} pods created+bound (pods/s)", f"{lat_rate:.0f}", ""),
            ("per-pod creation -> bound p50 (ms)", f"{statistics.median(lat):.0f}", ""),
            ("per-pod creation -> bound p99 (ms)", f"{pct(lat, 0.99):.0f}", ""),
            (f"Deployment of {args.replicas}: all Running+available (s)", f"{dep_s:.1f}",
             f"< {TARGET_DEPLOYMENT_S}"),
            *((f"peak RSS {n} (MiB)", f"{v:.0f}", "") for n, v in rss.items()),
            *((f"CPU s of {n} in the throughput phase", f"{v:.1f}", "") for n, v in cpu1.items()),
        ]
        for name, value, target in rows:
            print(f"{name:<52} {value:>12}   {target}")
        if RESTARTS:
            print(f"restarts after lost leadership: {RESTARTS}")
        print(f"\n({args.nodes} hollow nodes, store {args.store}; figures from a shared, noisy machine)")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 pods onto 100 nodes, Deployment of 1,000")
    p.add_argument("--nodes", type=int, help="hollow nodes (default 1000; --quick 100)")
    p.add_argument("--pods", type=int, help="pods of the throughput phase (default 10000; --quick 1000)")
    p.add_argument("--replicas", type=int, default=1000, help="replicas of the Deployment phase (default 1000)")
    p.add_argument("--store", choices=("etcdlite", "etcd"), default="etcdlite", help="the apiserver's store")
    p.add_argument("--throughput-only", action="store_true", help="stop after the throughput phase")
    p.add_argument("--profile-scheduler", metavar="FILE",
                   help="run the scheduler under cProfile, stats written to FILE (implies --throughput-only)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with the components' logs")
    args = p.parse_args()
    args.nodes = args.nodes or (100 if args.quick else 1000)
    if args.profile_scheduler:
        args.profile_scheduler = str(Path(args.profile_scheduler).resolve())
        args.throughput_only = True
    args.pods = args.pods or (1000 if args.quick else 10000)
    if not (1 <= args.nodes <= 5000 and 1 <= args.pods <= 50000 and 1 <= args.replicas <= 20000):
        raise SystemExit("--nodes 1..5000, --pods 1..50000, --replicas 1..20000")
    if args.pods * 1.2 + args.replicas > args.nodes * 110:
        raise SystemExit("not enough pod capacity: need pods*1.2 + replicas <= nodes*110")
    tmp = Path(tempfile.mkdtemp(prefix="kubeling-schedbench-"))
    print(f"bench: {args.nodes} hollow nodes, {args.pods} pods, Deployment of {args.replicas}; logs in {tmp}",
          flush=True)
    try:
        with support.control_plane(tmp, store=args.store, timeout=60) as cp:
            asyncio.run(run(args, cp))
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
