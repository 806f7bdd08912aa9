"""kube-proxy sync cost as services grow, against the real kernel, in the iptables
mode (iptables-nft) and the nftables mode (nft).

For each size (default 100, 1,000 and 5,000 services with 10 hollow endpoints
each: addresses nothing answers on), inside a throwaway network namespace
"kl-pxb-<pid>-<n>" that the bench creates and deletes in ``finally`` (the
host's tables are never touched), it drives the Proxier directly from Python
(no apiserver: the informer path is left out, its cost is the watch event
decode plus one dict replacement per change) and prints:

- the first full sync: listing what exists (iptables: chains; nftables: chain
  and set names), render (parse + rules text) and apply (iptables-restore,
  or one ``nft -f -``), and the ruleset's size in lines and bytes (nftables:
  also the chains, sets/maps and set elements in the table);
- a second full sync with the chains in place (what every --sync-period does);
- a one-endpoint change (one Endpoints object replaced by one with another
  address), timed from ``runner.run()`` -- what the informer handler calls --
  to the tool done, through the same BoundedFrequencyRunner as the daemon
  (min-sync-period 1 s, the change arriving after it has elapsed): with
  partial syncs (the default in both modes) and with every sync full
  (``minimize=False``), median and max of N changes.

    sudo .venv/bin/python bench/proxy_sync.py [--mode iptables|nftables|both] [--changes N]
        [--iptables-max N] [--timeout S] [SERVICES ...]

``--mode both`` (the default) runs the iptables mode only up to
``--iptables-max`` services (default 1,000: at 5,000 one iptables-restore
took 148-184 s, iptables-nft 1.8.9's quadratic chain lookups).

Prints figures only; nothing here asserts on timing. Every restore has a
timeout (a size that hits it prints "timeout").
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time

from proxy.bounded_frequency_runner import BoundedFrequencyRunner
from proxy.conntrack import Conntrack
from proxy.iptables.proxier import Proxier
from proxy.iptables.rules import RulesConfig
from proxy.iptables.runner import Iptables, IptablesError
from proxy.nftables import proxier as nftables_proxier
from proxy.nftables.runner import Nft, NftError
from proxy.syncstats import SyncStats

ENDPOINTS = 10
MIN_SYNC = 1.0


def service(i: int) -> dict:
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}"},
            "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80}]}}


def endpoints(i: int, per_service: int = ENDPOINTS, *, salt: int = 0) -> dict:
    ips = []
    for k in range(per_service):
        j = i * per_service + k + salt * 7919
        ips.append(f"10.{244 + j // 62500 % 4}.{j // 250 % 250}.{j % 250 + 1}")
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "http", "port": 8080}]}]}


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, timeout=30, capture_output=True)


async def measure_changes(proxier: Proxier, eps: list[dict], n_changes: int, n: int,
                          cpu_out: list[float] | None = None) -> list[float]:
    """Latency (s) of ``n_changes`` one-endpoint changes through a BoundedFrequencyRunner;
    the CPU seconds (python + tools) of each go to ``cpu_out``."""
    runner = BoundedFrequencyRunner("bench", proxier.sync_proxy_rules, min_interval=MIN_SYNC,
                                    max_interval=3600.0)
    runner.mark_ran(time.monotonic())
    task = asyncio.create_task(runner.loop())
    out = []
    try:
        for c in range(n_changes):
            await asyncio.sleep(MIN_SYNC + 0.05)  # steady state: min-sync-period has passed
            before = proxier.last_stats
            i = (c * 7) % n
            eps[i] = endpoints(i, salt=c + 1)  # a new object, as an informer stores it
            t0, cpu0 = time.monotonic(), sum(cpu())
            runner.run()
            deadline = t0 + 900
            while proxier.last_stats is before:
                if time.monotonic() > deadline:
                    raise TimeoutError("sync did not finish in 900 s")
                await asyncio.sleep(0.002)
            out.append(proxier.last_stats.done_at - t0)
            if cpu_out is not None:
                cpu_out.append(sum(cpu()) - cpu0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


def fmt(stats: SyncStats | None) -> str:
    if stats is None:
        return "timeout"
    return f"list {stats.save_seconds:6.2f}  render {stats.render_seconds:6.2f}  apply {stats.restore_seconds:7.2f}"


def cpu() -> tuple[float, float]:
    """(CPU seconds of this process, of its finished children: the tools), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


async def timed_sync(proxier) -> tuple[SyncStats, float, str]:
    """One sync: (stats, wall seconds, "cpu: python X s + tools Y s") -- CPU time is
    what to compare on a loaded machine, where wall time mostly measures the queue."""
    (me0, kids0), t0 = cpu(), time.monotonic()
    stats = await proxier.sync_proxy_rules()
    wall = time.monotonic() - t0
    me1, kids1 = cpu()
    return stats, wall, f"cpu: python {me1 - me0:.2f} s + tools {kids1 - kids0:.2f} s"


CREATED: list[str] = []  # namespaces to delete even when the bench is killed with SIGTERM


def make_proxier(mode: str, ns: str, svcs: list[dict], eps: list[dict], timeout: float):
    config = RulesConfig(cluster_cidr="10.244.0.0/14")
    common = dict(list_services=lambda: svcs, list_endpoints=lambda: eps, config=config,
                  conntrack=Conntrack(netns=ns), full_sync_period=3600.0)
    if mode == "nftables":
        return nftables_proxier.Proxier(**common, nft=Nft(netns=ns, timeout=timeout))
    return Proxier(**common, iptables=Iptables(netns=ns, timeout=timeout), jump_check_period=3600.0)


async def bench_size(mode: str, n: int, args: argparse.Namespace) -> None:
    ns = f"kl-pxb-{os.getpid()}-{mode[:3]}-{n}"
    sh("ip", "netns", "add", ns)
    CREATED.append(ns)
    try:
        svcs = [service(i) for i in range(n)]
        eps = [endpoints(i) for i in range(n)]
        proxier = make_proxier(mode, ns, svcs, eps, args.timeout)
        try:
            first, first_total, first_cpu = await timed_sync(proxier)
        except (IptablesError, NftError) as e:
            print(f"{mode:>8} {n:>6} services: first full sync failed: {e}", flush=True)
            return
        objects = ""
        if mode == "nftables":  # lines say little here: map elements go 1,000 to a line
            chains, sets = await proxier.nft.list_names(proxier.config.nftables_table)
            objects = f", {len(chains)} chains, {len(sets)} sets and maps, {len(proxier._applied.elements)} elements"
        print(f"{mode:>8} {n:>6} services x {ENDPOINTS} endpoints: ruleset {first.lines} lines, "
              f"{first.bytes / 1e6:.2f} MB{objects}", flush=True)
        print(f"        first full sync    {fmt(first)}   total {first_total:7.2f} s  ({first_cpu})", flush=True)
        proxier.force_full_sync()
        again, again_total, again_cpu = await timed_sync(proxier)
        print(f"        full resync        {fmt(again)}   total {again_total:7.2f} s  ({again_cpu}; chains in place, "
              "renderings cached)", flush=True)
        partial_cpu: list[float] = []
        partial = await measure_changes(proxier, eps, args.changes, n, partial_cpu)
        last = proxier.last_stats
        print(f"        1-endpoint change, partial sync: median {statistics.median(partial):.3f} s, "
              f"max {max(partial):.3f} s over {len(partial)} changes, median cpu {statistics.median(partial_cpu):.3f} s "
              f"(last: {last.written} service port rewritten, {last.lines} lines, {fmt(last)})", flush=True)
        if not args.full_changes:
            return
        proxier.minimize = False
        full = await measure_changes(proxier, eps, args.full_changes, n)
        print(f"        1-endpoint change, full sync:    median {statistics.median(full):.3f} s, "
              f"max {max(full):.3f} s over {len(full)} changes ({fmt(proxier.last_stats)})", flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30, check=False)


def conditions() -> str:
    ipt = subprocess.run(["iptables", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return (f"{os.cpu_count()} cores, load average {load}, kernel {platform.release()}, {ipt}, {nft}, "
            f"Python {platform.python_version()}, min-sync-period {MIN_SYNC:g}s")


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sizes", nargs="*", type=int, default=[100, 1000, 5000])
    p.add_argument("--changes", type=int, default=5, help="one-endpoint changes timed with partial syncs")
    p.add_argument("--full-changes", type=int, default=2, help="... and with full syncs (0: skip)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per iptables/nft call")
    p.add_argument("--mode", choices=("iptables", "nftables", "both"), default="both")
    p.add_argument("--iptables-max", type=int, default=1000,
                   help="with --mode both, the largest size run in the iptables mode")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("proxy_sync bench needs root (network namespaces, iptables)", file=sys.stderr)
        return 1
    print("conditions:", conditions(), flush=True)
    for n in args.sizes:
        for mode in ("iptables", "nftables") if args.mode == "both" else (args.mode,):
            if mode == "iptables" and args.mode == "both" and n > args.iptables_max:
                print(f"iptables {n:>6} services: skipped (over --iptables-max {args.iptables_max})", flush=True)
                continue
            await bench_size(mode, n, args)
    print("conditions at end:", conditions(), flush=True)
    return 0


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(asyncio.run(main()))
    finally:
        for name in CREATED:
            subprocess.run(["ip", "netns", "del", name], timeout=30, check=False, capture_output=True)
