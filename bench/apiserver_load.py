"""Load on the apiserver over a 3-member etcdlite and over a 3-member real etcd 3.4 (issue 4's benchmark).

    .venv/bin/python bench/apiserver_load.py                          # both stores, full rows
    .venv/bin/python bench/apiserver_load.py --stores etcd --quick    # one store, short rows
    .venv/bin/python bench/apiserver_load.py --profile /tmp/prof      # also py-spy the apiserver

Each store runs as three member processes on loopback (tests/support.py's
etcd_cluster), with one ``python -m apiserver`` over all three
(support.start_apiserver). Clients run in this process on raw asyncio
HTTP/1.1 keep-alive connections, one per simulated client (RawHTTP):
httpx.AsyncClient costs milliseconds of client CPU per request and, with
16+ concurrent requests on one pool, stalls for hundreds of ms, so it
measured itself rather than the apiserver (it is used for setup only).
On 2 cores the clients compete with the apiserver and the members for CPU,
equally for both stores. Every load loop is bounded by a count and by a
time limit.

Rows:
(a) pod creates/s with p50/p99 latency at 1, 16 and 64 concurrent clients;
(b) LIST of the pods of one namespace (5,000 pods) from the watch cache
    (``resourceVersion=0``, time to the last byte over HTTP) and consistent
    (``resourceVersion`` unset: a quorum read of the revision, then the cache,
    see apiserver/storage/cacher.py Cacher.wait_fresh), against "store": our
    apiserver never lists from etcd while its cache keeps up, so "store" is
    the work it would do to answer from etcd, done in this process with the
    apiserver's own code: Etcd3Store.list (paged Range + JSON decode) plus
    the JSON encode of the list with its codec (no HTTP, so the ratio
    understates the cache's advantage). Median of N;
(c) watch fan-out: 100 and 1,000 watchers on one namespace's pods, each its
    own HTTP connection; latency = from the create's response to the last
    watcher receiving the event, p50/p99 over the writes;
(d) apiserver RSS (/proc/PID/status VmRSS) once the store holds 10,000 pods.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
import support  # noqa: E402
from etcd_compare import Row, closed_loop, rss_mib  # noqa: E402

from apiserver.storage import codec, etcd3  # noqa: E402

TARGETS = {
    "create": "etcdlite3, 64 clients: >= 500/s, p99 <= 100 ms",
    "list": "cached >= 10x faster than store",
    "watch": "1,000 watchers: p99 <= 200 ms",
    "rss": "<= 300 MiB at 10,000 pods",
}


def pod(name: str) -> bytes:
    """A small Pod body (one container), pre-encoded so the client spends its CPU on HTTP only."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "labels": {"app": "bench", "tier": "load"}},
                       "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                                "command": ["sleep", "3600"],
                                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}},
                      separators=(",", ":")).encode()


HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class RawHTTP:
    """One HTTP/1.1 keep-alive connection to the apiserver (a light client for load rows).

    ``await request(method, path, body)`` -> (status, body bytes); reads
    Content-Length or chunked bodies; reconnects once when the server closed
    an idle connection. Not for streaming (watches use RawWatcher).
    """

    def __init__(self, server: str):
        self.host, port = server.removeprefix("http://").split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: application/json\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            self.writer.write(head + body)
            try:
                return await self._response()
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, chunked = None, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length or 0)
        parts = []
        for _ in range(1_000_000):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Clients:
    """``n`` RawHTTP connections to ``server``, one per simulated client."""

    def __init__(self, server: str, n: int = 64):
        self.conns = [RawHTTP(server) for _ in range(n)]

    def close(self) -> None:
        for c in self.conns:
            c.close()


class Errors:
    """Counts of failed requests per row (a row with errors is flagged in the table)."""

    def __init__(self):
        self.n: dict[str, int] = {}
        self.last: dict[str, str] = {}

    def add(self, row: str, why: str) -> None:
        self.n[row] = self.n.get(row, 0) + 1
        self.last[row] = why[:200]


async def ensure_namespace(http: httpx.AsyncClient, name: str) -> None:
    r = await http.post("/api/v1/namespaces", content=json.dumps({"metadata": {"name": name}}), headers=HEADERS)
    if r.status_code not in (201, 409):
        raise RuntimeError(f"create namespace {name}: {r.status_code} {r.text[:200]}")


async def create_row(cl: Clients, ns: str, clients: int, *, count: int, seconds: float,
                     tag: str, errs: Errors) -> Row:
    """Closed loop of pod creates in ``ns``: ``clients`` at once, ``count`` in all or ``seconds``."""
    path = f"/api/v1/namespaces/{ns}/pods"

    async def op(c: int, i: int) -> None:
        try:
            status, body = await cl.conns[c].request("POST", path, pod(f"{tag}-{i}"))
        except (OSError, asyncio.IncompleteReadError) as e:
            errs.add(tag, repr(e))
            return
        if status != 201:
            errs.add(tag, f"{status} {body[:200]!r}")
    return await closed_loop(clients, op, count=count, seconds=seconds)


async def fill(cl: Clients, ns: str, n: int, *, tag: str, seconds: float, errs: Errors) -> int:
    """Create ``n`` pods in ``ns`` with 64 clients (bounded by ``seconds``); returns how many were created."""
    deadline = time.perf_counter() + seconds
    done = 0
    for attempt in range(5):  # top up what failed
        left = deadline - time.perf_counter()
        if done >= n or left <= 0:
            break
        t = f"{tag}{attempt}"
        row = await create_row(cl, ns, len(cl.conns), count=n - done, seconds=left, tag=t, errs=errs)
        done += row.ops - errs.n.get(t, 0)
    return done


async def timed_get(conn: RawHTTP, path: str) -> tuple[float, bytes]:
    """Seconds from sending a GET to its last body byte, and the body."""
    t0 = time.perf_counter()
    status, body = await conn.request("GET", path)
    dt = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return dt, body


async def list_rows(pid: int, conn: RawHTTP, etcd_servers: list[str], ns: str, *, expect: int,
                    repeats: int) -> dict[str, float | int]:
    """Median seconds of ``repeats`` LISTs of ``ns``'s pods: cached (rv=0), consistent (rv unset), store.

    First waits (at most 30 s) until the cache lists ``expect`` pods; "lag" is how long that took
    after the last create's response (the watch cache trailing etcd under load).
    """
    url = f"/api/v1/namespaces/{ns}/pods"
    t0 = time.perf_counter()
    for _ in range(30000):  # a one-item page says how many the cache holds, cheaply
        _, body = await timed_get(conn, url + "?resourceVersion=0&limit=1")
        page = json.loads(body)
        if len(page["items"]) + int(page["metadata"].get("remainingItemCount", 0)) >= expect \
                or time.perf_counter() - t0 > 30:
            break
        await asyncio.sleep(0.005)
    lag = time.perf_counter() - t0
    _, body = await timed_get(conn, url + "?resourceVersion=0")
    out: dict[str, float | int] = {"items": len(json.loads(body)["items"]), "bytes": len(body), "lag": lag}
    for name, query in (("cache", "?resourceVersion=0"), ("consistent", "")):
        times = []
        cpu0 = cpu_seconds(pid)
        for _ in range(repeats):
            times.append((await timed_get(conn, url + query))[0])
        out[name] = statistics.median(times)
        out[name + " min"] = min(times)
        out[name + " cpu"] = (cpu_seconds(pid) - cpu0) / repeats
    store = etcd3.Etcd3Store(etcd_servers)
    try:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            kvs, rev = await store.list(f"/registry/pods/{ns}/")
            codec.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rev)},
                         "items": [kv.obj for kv in kvs]})
            times.append(time.perf_counter() - t0)
            if len(kvs) != out["items"]:
                out["store_items"] = len(kvs)
        out["store"] = statistics.median(times)
        out["store min"] = min(times)
    finally:
        await store.close()
    return out


class RawWatcher:
    """One watch as a raw HTTP/1.1 connection; records when each marker (pod name) first arrives."""

    NAME = re.compile(rb'"name":"(fan\d+x\d+y)"')

    def __init__(self):
        self.seen: dict[bytes, float] = {}
        self.ready = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None

    async def run(self, host: str, port: int, path: str) -> None:
        reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode())
        tail = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.perf_counter()
            if not self.ready.is_set():
                if not data.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"watch refused: {data[:200]!r}")
                self.ready.set()
            buf = tail + data
            for m in self.NAME.finditer(buf):
                self.seen.setdefault(m.group(1), now)
            tail = buf[-64:]

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


async def watch_row(pid: int, http: httpx.AsyncClient, conn: RawHTTP, server: str, ns: str, watchers: int, *,
                    writes: int, interval: float, seconds: float) -> tuple[Row, int, float, Row]:
    """Fan-out: ``watchers`` watches of ``ns``'s pods, ``writes`` creates; per write the time from the
    create's response to the last watcher's receipt. Returns (Row over writes, events missed, apiserver
    CPU seconds per write (create and fan-out), Row of the same from the create's request being sent)."""
    host, port = server.removeprefix("http://").split(":")
    r = await http.get(f"/api/v1/namespaces/{ns}/pods", params={"limit": "1"})
    rv = r.json()["metadata"]["resourceVersion"]
    path = f"/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=600"
    ws = [RawWatcher() for _ in range(watchers)]
    lat: list[float] = []
    from_send: list[float] = []
    missed = 0
    try:
        for i, w in enumerate(ws):
            w.task = asyncio.create_task(w.run(host, int(port), path))
            if i % 50 == 49:
                await asyncio.sleep(0.01)  # let the accept queue drain
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in ws)), 60)
        await asyncio.sleep(0.5)
        cpu0 = cpu_seconds(pid)
        t_start = time.perf_counter()
        for i in range(writes):
            if time.perf_counter() - t_start > seconds:
                break
            name = f"fan{watchers}x{i}y"
            t_send = time.perf_counter()
            status, body = await conn.request("POST", f"/api/v1/namespaces/{ns}/pods", pod(name))
            t_resp = time.perf_counter()
            if status != 201:
                raise RuntimeError(f"create {name}: {status} {body[:200]!r}")
            key = name.encode()
            deadline = t_resp + 10
            while time.perf_counter() < deadline and not all(key in w.seen for w in ws):
                await asyncio.sleep(0.002)
                for w in ws:
                    if w.task.done() and w.task.exception() is not None:
                        raise RuntimeError(f"watcher failed: {w.task.exception()!r}")
            got = [w.seen[key] for w in ws if key in w.seen]
            missed += watchers - len(got)
            if got:
                lat.append(max(got) - t_resp)
                from_send.append(max(got) - t_send)
            await asyncio.sleep(interval)
        elapsed = time.perf_counter() - t_start
        cpu = (cpu_seconds(pid) - cpu0) / max(len(lat), 1)
    finally:
        for w in ws:
            w.close()
        await asyncio.gather(*(w.task for w in ws if w.task), return_exceptions=True)
    return Row(len(lat), elapsed, sorted(lat)), missed, cpu, Row(len(lat), elapsed, sorted(from_send))


async def pod_count(http: httpx.AsyncClient) -> int:
    r = await http.get("/api/v1/pods", params={"resourceVersion": "0", "limit": "1"})
    meta = r.json()["metadata"]
    return 1 + int(meta.get("remainingItemCount", 0)) if r.json()["items"] else 0


async def bench_store(server: str, etcd_servers: list[str], apiserver_pid: int, *, quick: bool) -> dict:
    """Every row against one running apiserver; returns row name -> Row / dict / float."""
    out: dict = {"errors": Errors()}
    errs: Errors = out["errors"]
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=60, trust_env=False) as http:
        for ns in ("bench", "list", "fanout", "rss"):
            await ensure_namespace(http, ns)
        cl = Clients(server, 64)
        try:
            per_row, secs = (300, 5.0) if quick else (2000, 20.0)
            # warm-up: connections, code paths, the first Txns
            await create_row(cl, "bench", 64, count=200, seconds=10, tag="warm", errs=errs)
            for c in (1, 16, 64):
                print(f"  creates, {c} clients...", file=sys.stderr, flush=True)
                cpu0 = cpu_seconds(apiserver_pid)
                row = await create_row(cl, "bench", c, count=per_row, seconds=secs, tag=f"c{c}", errs=errs)
                out[f"create, {c} clients"] = row
                out[f"create cpu, {c} clients"] = (cpu_seconds(apiserver_pid) - cpu0) / max(row.ops, 1)
            n_list = 1000 if quick else 5000
            print(f"  filling {n_list} pods for LIST...", file=sys.stderr, flush=True)
            filled = await fill(cl, "list", n_list, tag="l", seconds=300, errs=errs)
            out["list"] = await list_rows(apiserver_pid, cl.conns[0], etcd_servers, "list", expect=filled,
                                          repeats=3 if quick else 11)
            for w in (100, 1000):
                print(f"  watch fan-out, {w} watchers...", file=sys.stderr, flush=True)
                out[f"watch, {w} watchers"] = await watch_row(apiserver_pid, http, cl.conns[0], server, "fanout", w,
                                                              writes=5 if quick else 20, interval=0.1, seconds=60)
            target = 3000 if quick else 10000
            have = await pod_count(http)
            if have < target:
                print(f"  filling to {target} pods for RSS...", file=sys.stderr, flush=True)
                await fill(cl, "rss", target - have, tag="r", seconds=600, errs=errs)
            await asyncio.sleep(1.0)
            out["pods"] = await pod_count(http)
        finally:
            cl.close()
        out["rss"] = rss_mib(apiserver_pid)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_profiler(pid: int, out: Path) -> subprocess.Popen | None:
    """``py-spy record`` of ``pid`` into ``out`` (raw collapsed stacks), if py-spy is installed."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print("py-spy not installed (.venv/bin/pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-r", "200", "--format", "raw", "-o", str(out),
                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_store(kind: str, base: Path, *, quick: bool, profile: Path | None, tree: Path | None = None) -> dict | str:
    """Start a 3-member ``kind`` ("etcdlite3" or "etcd") and an apiserver (from checkout ``tree`` if given),
    bench them, stop them."""
    tmp = base / kind
    tmp.mkdir()
    member_kind = "etcdlite" if kind == "etcdlite3" else "etcd"
    try:
        with support.etcd_cluster(tmp, member_kind, 3, timeout=60) as cluster, \
                support.ProcessGroup(tmp, cwd=tree or support.REPO) as procs:
            etcd_urls = [f"http://{e}" for e in cluster.endpoints]
            server = support.start_apiserver(procs, etcd_urls, timeout=60)
            pid = procs.get("apiserver").pid
            prof = start_profiler(pid, profile / f"{kind}.txt") if profile else None
            try:
                return asyncio.run(bench_store(server, etcd_urls, pid, quick=quick))
            finally:
                if prof is not None:
                    prof.send_signal(2)
                    try:
                        prof.wait(30)
                    except subprocess.TimeoutExpired:
                        prof.kill()
                        prof.wait(5)
    except BaseException as e:  # pytest.skip (missing etcd) is a BaseException
        if isinstance(e, KeyboardInterrupt):
            raise
        text = [ln for ln in str(e).splitlines() if ln.strip()]
        return f"{type(e).__name__}: " + " | ".join(text[:2] + text[-2:] if len(text) > 4 else text)


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def table(results: dict[str, dict | str]) -> str:
    kinds = list(results)
    lines = []
    w = 30
    head = f"{'row':<{w}}" + "".join(f"{k:>26}" for k in kinds) + "   target"
    lines += [head, "-" * len(head)]

    def line(label: str, cell, target: str = "") -> None:
        cells = []
        for k in kinds:
            res = results[k]
            cells.append(f"{'-' if isinstance(res, str) else cell(res):>26}")
        lines.append(f"{label:<{w}}" + "".join(cells) + (f"   {target}" if target else ""))

    for c in (1, 16, 64):
        name = f"create, {c} clients"
        line(name + " /s p50 p99", lambda r, n=name: f"{r[n].rate:.0f}/s {r[n].pct(.5):.1f} {r[n].pct(.99):.1f}ms",
             TARGETS["create"] if c == 64 else "")
    for c in (1, 16, 64):
        line(f"  apiserver CPU ms/create, {c}", lambda r, c=c: ms(r[f"create cpu, {c} clients"]))
    line("LIST pods (items, MiB)", lambda r: f"{r['list']['items']}, {r['list']['bytes'] / 2**20:.1f}")
    line("cache lag after the fill ms", lambda r: ms(r["list"]["lag"]))
    line("LIST cache rv=0 ms (min)", lambda r: f"{ms(r['list']['cache'])} ({ms(r['list']['cache min'])})")
    line("  apiserver CPU ms/LIST", lambda r: ms(r["list"]["cache cpu"]))
    line("LIST consistent rv='' ms (min)",
         lambda r: f"{ms(r['list']['consistent'])} ({ms(r['list']['consistent min'])})")
    line("LIST store (range+decode+enc)", lambda r: f"{ms(r['list']['store'])} ({ms(r['list']['store min'])})")
    line("LIST store / cache", lambda r: f"{r['list']['store'] / r['list']['cache']:.1f}x", TARGETS["list"])
    for n in (100, 1000):
        name = f"watch, {n} watchers"
        line(name + " p50 p99", lambda r, n=name: f"{r[n][0].pct(.5):.1f} {r[n][0].pct(.99):.1f}ms"
             + (f" ({r[n][1]} missed)" if r[n][1] else ""), TARGETS["watch"] if n == 1000 else "")
        line("  from the request sent, p50 p99", lambda r, n=name: f"{r[n][3].pct(.5):.1f} {r[n][3].pct(.99):.1f}ms")
        line(f"  apiserver CPU ms/write, {n}", lambda r, n=name: ms(r[n][2]))
    line("apiserver RSS MiB (pods)", lambda r: f"{r['rss']:.0f} ({r['pods']})", TARGETS["rss"])
    for k in kinds:
        res = results[k]
        if isinstance(res, str):
            lines.append(f"note: {k} skipped: {res}")
        else:
            for row, n in res["errors"].n.items():
                lines.append(f"note: {k} {row}: {n} failed requests, last: {res['errors'].last[row]}")
    lines.append("(watch: from a create's response to the last watcher's receipt, over the writes, <= 0 when every "
                 "watcher had the event before the writer had its response; LIST store = "
                 "Etcd3Store.list + JSON encode in the bench process, no HTTP; apiserver CPU = its user+system "
                 "CPU time per operation, /proc/PID/stat, steadier than rates on a shared machine)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="etcdlite3,etcd", help="comma-separated: etcdlite3, etcd")
    ap.add_argument("--quick", action="store_true", help="short rows (300 creates / 5 s, 1,000-pod LIST, "
                                                         "5 writes per fan-out, RSS at 3,000 pods)")
    ap.add_argument("--profile", type=Path, help="directory for py-spy raw profiles of the apiserver")
    ap.add_argument("--tree", type=Path, help="run the apiserver from this checkout (e.g. a `git worktree` of an "
                                              "older commit, for before/after figures in the same conditions)")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    for k in kinds:
        if k not in ("etcdlite3", "etcd"):
            print(f"apiserver_load: unknown store {k!r} (etcdlite3, etcd)", file=sys.stderr)
            return 2
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory(prefix="apiserver-load-", dir="/var/tmp") as base:
        for k in kinds:
            print(f"benchmarking the apiserver over {k} (3 members)...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            results[k] = run_store(k, Path(base), quick=args.quick, profile=args.profile, tree=args.tree)
            print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
