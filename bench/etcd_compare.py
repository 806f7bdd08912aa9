"""The same load against a 3-member etcdlite and a 3-member real etcd 3.4, side by side (issue 3's benchmark).

    .venv/bin/python bench/etcd_compare.py                       # both kinds, full rows
    .venv/bin/python bench/etcd_compare.py --kinds etcd --quick  # one kind, short rows
    .venv/bin/python bench/etcd_compare.py --rss                 # also RSS after 100,000 keys
    .venv/bin/python bench/etcd_compare.py --quick --repeat 3    # kinds alternate 3 times; median table

Each kind runs as three member processes on loopback (tests/support.py's
EtcdCluster, etcd's flags), data dirs under one temp dir on the same disk.
Clients are grpc.aio coroutines in this process talking to the leader (as
the reference figures in /work/shared/reference/etcd-3.4-facts.md were
measured); on 2 cores the client competes with the members for CPU, equally
for both kinds. Every row is bounded by a count and by a time limit.

Rows: sequential puts (1 client), concurrent puts (16 and 64 clients),
linearizable range of 1 key and of 1000 keys, and watch delivery latency
(one writer, 100 watchers spread over the members). Printed: ops/s, p50 and
p99 in ms per kind, and etcdlite/etcd ratios (throughput and p99).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import support  # noqa: E402
from proto.etcdserverpb import rpc_pb2 as pb  # noqa: E402
from proto.etcdserverpb import rpc_pb2_grpc  # noqa: E402

VALUE = b"v" * 256


@dataclass
class Row:
    """One measured row: ``ops`` completed in ``seconds``; latencies in seconds, sorted."""

    ops: int
    seconds: float
    lat: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def pct(self, p: float) -> float:
        """The ``p`` quantile (0..1) of latency in ms (nan when empty)."""
        if not self.lat:
            return float("nan")
        return self.lat[min(len(self.lat) - 1, int(len(self.lat) * p))] * 1000


async def closed_loop(clients: int, op, *, count: int, seconds: float) -> Row:
    """Run ``clients`` coroutines each calling ``await op(client, i)`` in turn until ``count`` ops in total or ``seconds`` pass."""
    lat: list[float] = []
    deadline = time.perf_counter() + seconds
    issued = 0

    async def client(c: int) -> None:
        nonlocal issued
        while issued < count and time.perf_counter() < deadline:
            i = issued
            issued += 1
            t0 = time.perf_counter()
            await op(c, i)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return Row(len(lat), time.perf_counter() - t0, sorted(lat))


async def leader_endpoint(endpoints: list[str]) -> str:
    """The client address of the member that reports itself leader (Maintenance.Status)."""
    for ep in endpoints:
        async with grpc.aio.insecure_channel(ep) as ch:
            st = await rpc_pb2_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=5)
            if st.leader and st.leader == st.header.member_id:
                return ep
    raise RuntimeError("no member reports itself leader")


async def put_rows(kv, clients: int, *, count: int, seconds: float, tag: str) -> Row:
    async def op(c: int, i: int) -> None:
        await kv.Put(pb.PutRequest(key=b"/bench/%s/%d/%d" % (tag.encode(), c, i % 1000), value=VALUE), timeout=10)
    return await closed_loop(clients, op, count=count, seconds=seconds)


async def range_row(kv, *, prefix: bytes, count: int, seconds: float) -> Row:
    end = prefix[:-1] + bytes([prefix[-1] + 1])

    async def op(c: int, i: int) -> None:
        await kv.Range(pb.RangeRequest(key=prefix, range_end=end), timeout=10)
    return await closed_loop(1, op, count=count, seconds=seconds)


async def load_keys(kv, prefix: bytes, n: int, *, batch: int = 100) -> None:
    """Put ``n`` keys ``prefix%08d`` with 256-byte values, ``batch`` per Txn (etcd's --max-txn-ops is 128)."""
    for start in range(0, n, batch):
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=prefix + b"%08d" % i, value=VALUE))
               for i in range(start, min(n, start + batch))]
        await kv.Txn(pb.TxnRequest(success=ops), timeout=30)


async def watch_row(endpoints: list[str], leader: str, *, watchers: int, puts: int, interval: float,
                    seconds: float) -> Row:
    """Delivery latency: ``watchers`` Watch streams (round-robin over members) on one prefix, one writer.

    Each put carries its send time; a watcher's latency sample is receive
    time minus that. ``ops`` counts delivered events, ``seconds`` the put phase.
    """
    prefix = b"/bench/watch/"
    channels = [grpc.aio.insecure_channel(ep) for ep in endpoints]
    lat: list[float] = []
    created = 0
    all_created = asyncio.Event()
    stop = asyncio.Event()

    async def requests():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=prefix, range_end=b"/bench/watch0"))
        await stop.wait()

    async def watcher(i: int) -> None:
        nonlocal created
        call = rpc_pb2_grpc.WatchStub(channels[i % len(channels)]).Watch(requests())
        try:
            async for resp in call:
                if resp.created:
                    created += 1
                    if created == watchers:
                        all_created.set()
                now = time.perf_counter()
                for ev in resp.events:
                    lat.append(now - float(ev.kv.value))
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass

    tasks = [asyncio.create_task(watcher(i)) for i in range(watchers)]
    try:
        await asyncio.wait_for(all_created.wait(), 30)
        async with grpc.aio.insecure_channel(leader) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            t0 = time.perf_counter()
            deadline = t0 + seconds
            for i in range(puts):
                if time.perf_counter() >= deadline:
                    break
                await kv.Put(pb.PutRequest(key=prefix + b"%d" % (i % 10), value=b"%.9f" % time.perf_counter()),
                             timeout=10)
                await asyncio.sleep(interval)
            elapsed = time.perf_counter() - t0
            want = (i + 1) * watchers
            settle = time.perf_counter() + 5
            while len(lat) < want and time.perf_counter() < settle:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()
    return Row(len(lat), elapsed, sorted(lat))


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench_kind(cluster: support.EtcdCluster, *, quick: bool, rss: bool) -> dict[str, Row | float]:
    """All rows against one running cluster; returns row name -> Row (and "rss" -> MiB if asked)."""
    s = 2.0 if quick else 6.0
    n = 1 if quick else 4   # count bound = n * a few thousand
    out: dict[str, Row | float] = {}
    leader = await leader_endpoint(cluster.endpoints)
    async with grpc.aio.insecure_channel(leader) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        await kv.Put(pb.PutRequest(key=b"/bench/warmup", value=VALUE), timeout=10)
        out["put, 1 client"] = await put_rows(kv, 1, count=2000 * n, seconds=s, tag="p1")
        out["put, 16 clients"] = await put_rows(kv, 16, count=8000 * n, seconds=s, tag="p16")
        out["put, 64 clients"] = await put_rows(kv, 64, count=10000 * n, seconds=s, tag="p64")
        await load_keys(kv, b"/bench/r1000/", 1000)
        out["range 1 key, 1 client"] = await range_row(kv, prefix=b"/bench/r1000/00000001", count=3000 * n,
                                                       seconds=s)
        out["range 1000 keys, 1 client"] = await range_row(kv, prefix=b"/bench/r1000/", count=500 * n, seconds=s)
    out["watch, 100 watchers"] = await watch_row(cluster.endpoints, leader, watchers=100,
                                                 puts=50 if quick else 200, interval=0.02, seconds=s + 4)
    if rss:
        async with grpc.aio.insecure_channel(leader) as ch:
            await load_keys(rpc_pb2_grpc.KVStub(ch), b"/bench/rss/", 100_000)
        await asyncio.sleep(1)
        out["rss"] = max(rss_mib(m.proc.pid) for m in cluster.members.values())
    return out


def run_kind(kind: str, base: Path, *, quick: bool, rss: bool, tag: str = "") -> dict | str:
    """Start a 3-member ``kind`` cluster under ``base``, bench it, stop it; a string says why it could not run."""
    tmp = base / f"{kind}{tag}"
    tmp.mkdir()
    cluster = support.EtcdCluster(tmp, kind, 3)
    try:
        for name in cluster.members:
            cluster.start(name)
        try:
            cluster.wait_healthy(timeout=30)
        except support.ClusterUnsupported as e:
            return f"cannot start 3 members yet: {e}"
        except AssertionError as e:
            return f"did not become healthy: {str(e).splitlines()[0]}"
        return asyncio.run(bench_kind(cluster, quick=quick, rss=rss))
    finally:
        cluster.close()


@dataclass
class Median:
    """Per-row medians over repeated runs (the rate and each quantile separately)."""

    runs: list[Row]

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    def pct(self, p: float) -> float:
        return statistics.median(r.pct(p) for r in self.runs)


def medians(runs: list[dict | str]) -> dict | str:
    """One result per kind from its repeated runs (a string if none completed)."""
    ok = [r for r in runs if isinstance(r, dict)]
    if not ok:
        return runs[-1]
    out: dict = {name: Median([r[name] for r in ok]) for name in ok[0] if name != "rss"}
    if "rss" in ok[0]:
        out["rss"] = max(r["rss"] for r in ok)
    return out


def table(results: dict[str, dict | str]) -> str:
    kinds = list(results)
    rows = next((list(r) for r in results.values() if isinstance(r, dict)), [])
    rows = [r for r in rows if r != "rss"]
    head = f"{'row':<26}" + "".join(f"{k + ' ops/s':>15}{'p50 ms':>9}{'p99 ms':>9}" for k in kinds)
    both = kinds == ["etcd", "etcdlite"] or sorted(kinds) == ["etcd", "etcdlite"]
    ok = both and all(isinstance(results[k], dict) for k in kinds)
    if ok:
        head += f"{'lite/etcd ops':>15}{'lite/etcd p99':>15}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r:<26}"
        for k in kinds:
            res = results[k]
            if isinstance(res, dict):
                row = res[r]
                line += f"{row.rate:>15.0f}{row.pct(0.5):>9.2f}{row.pct(0.99):>9.2f}"
            else:
                line += f"{'-':>15}{'-':>9}{'-':>9}"
        if ok:
            e, lt = results["etcd"][r], results["etcdlite"][r]
            line += f"{lt.rate / e.rate if e.rate else float('nan'):>15.2f}"
            line += f"{lt.pct(0.99) / e.pct(0.99):>15.2f}"
        lines.append(line)
    for k in kinds:
        res = results[k]
        if isinstance(res, str):
            lines.append(f"note: {k} rows skipped: {res}")
        elif "rss" in res:
            lines.append(f"{k}: max member RSS after 100,000 keys of 256 B: {res['rss']:.0f} MiB")
    lines.append("(watch row: ops/s = events delivered per second over all watchers; p50/p99 = put -> event latency)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="etcd,etcdlite", help="comma-separated: etcd, etcdlite")
    ap.add_argument("--quick", action="store_true", help="2 s per row instead of 6 s")
    ap.add_argument("--rss", action="store_true", help="also load 100,000 keys and print the largest member RSS")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the kinds N times, alternating (a shared machine is noisy); "
                         "prints each run and the per-row medians")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in ("etcd", "etcdlite"):
            print(f"etcd_compare: unknown kind {k!r} (etcd, etcdlite)", file=sys.stderr)
            return 2
    if "etcd" in kinds and not os.path.exists(support.ETCD):
        print("etcd_compare: /usr/bin/etcd not installed", file=sys.stderr)
        return 2
    runs: dict[str, list[dict | str]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="etcd-compare-", dir="/var/tmp") as base:
        for n in range(max(1, args.repeat)):
            for k in kinds:
                print(f"benchmarking {k} (3 members), run {n + 1}...", file=sys.stderr, flush=True)
                (Path(base) / k).mkdir(exist_ok=True)
                runs[k].append(run_kind(k, Path(base) / k, quick=args.quick, rss=args.rss, tag=str(n)))
            if args.repeat > 1:
                print(f"run {n + 1}:\n" + table({k: runs[k][n] for k in kinds}), flush=True)
    if args.repeat > 1:
        print(f"median of {args.repeat} runs:")
    print(table({k: medians(runs[k]) for k in kinds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
