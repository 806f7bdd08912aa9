"""Cluster DNS queries per second and latency, asked "from a pod".

Starts etcd 3.4 + ``python -m apiserver`` + ``python -m addons.dns`` on free
ports (tests/support.py), creates N ClusterIP Services each with an
EndpointSlice of 3 endpoints, then runs a bounded load generator (a fixed
number of queries and a time limit; it stops by itself) with K queries in
flight over UDP. As root the generator runs inside a network namespace made
here (``kl-dnsb-<hex>``, a veth to a bridge ``kl-dnsb-<hex>`` carrying the
server's address), so queries cross a veth as a pod's do; all of it is
removed in the ``finally``. Without root it runs on loopback and says so.

Query mix: ``--nx-ratio`` of the queries are the first search-path
expansion of a name from another namespace (``svc-i.bench.bench.svc.cluster.local``,
NXDOMAIN), the rest ``svc-i.bench.svc.cluster.local`` (an A answer).

    .venv/bin/python bench/dns_qps.py [--services 1000] [--queries 50000] [--concurrency 32]
                                      [--duration 30] [--nx-ratio 0.2] [--compare-cache] [--churn 20]
                                      [--no-reference]

``--compare-cache`` runs the load twice, with the answer cache and with
``--cache-size 0`` (the server parses and encodes every answer).
``--churn R`` adds a run during which R EndpointSlices a second are patched
through the apiserver (endpoint churn, as rolling pods cause): each event
drops the cached answers of its Service only. The
reference row is a minimal asyncio UDP responder sending one canned answer
(no parsing, no lookup): the ceiling of this harness and of asyncio on this
machine. No CoreDNS binary exists on this machine, so there is no CoreDNS
figure to compare with. Prints figures only; nothing asserts on timing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DOMAIN = "cluster.local"
NAMESPACE = "bench"


# ----------------------------------------------------------------------------- load generator

def _query(name: str) -> bytes:
    from dnslib import DNSRecord
    return DNSRecord.question(name, "A").pack()


def generate(server: str, names: list[str], *, queries: int, concurrency: int, duration: float,
             loss_timeout: float = 1.0) -> dict:
    """Send ``queries`` A queries for random ``names`` to ``server`` (HOST:PORT) over UDP,
    ``concurrency`` in flight, for at most ``duration`` s. Returns counts and latencies (s)."""
    host, port = server.rsplit(":", 1)
    templates = [_query(n)[2:] for n in names]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    in_flight: dict[int, float] = {}
    latencies: list[float] = []
    mix = {"answer": 0, "nxdomain": 0, "nodata": 0, "other": 0, "timeout": 0}
    sent = 0
    next_id = random.randrange(65536)
    rng = random.Random(1)
    start = time.perf_counter()
    deadline = start + duration

    def send_one() -> None:
        nonlocal sent, next_id
        for _ in range(65536):
            next_id = (next_id + 1) & 0xFFFF
            if next_id not in in_flight:
                break
        tmpl = templates[rng.randrange(len(templates))]
        try:
            sock.send(struct.pack("!H", next_id) + tmpl)
        except BlockingIOError:
            return
        in_flight[next_id] = time.perf_counter()
        sent += 1

    while time.perf_counter() < deadline:
        while len(in_flight) < concurrency and sent < queries:
            send_one()
        if not in_flight:
            break
        ready, _, _ = select.select([sock], [], [], 0.2)
        now = time.perf_counter()
        if ready:
            for _ in range(4096):
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                t = in_flight.pop(struct.unpack("!H", data[:2])[0], None)
                if t is None:
                    continue
                now = time.perf_counter()
                latencies.append(now - t)
                rcode, ancount = data[3] & 0x0F, struct.unpack("!H", data[6:8])[0]
                if rcode == 0:
                    mix["answer" if ancount else "nodata"] += 1
                elif rcode == 3:
                    mix["nxdomain"] += 1
                else:
                    mix["other"] += 1
        for qid in [q for q, t in in_flight.items() if now - t > loss_timeout]:
            del in_flight[qid]
            mix["timeout"] += 1
    elapsed = time.perf_counter() - start
    mix["timeout"] += len(in_flight)
    sock.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")
    return {"sent": sent, "answered": len(latencies), "elapsed": elapsed, "qps": len(latencies) / elapsed,
            "p50_ms": pct(0.50) * 1000, "p99_ms": pct(0.99) * 1000, "mix": mix}


# ----------------------------------------------------------------------------- reference responder

def respond(address: str) -> None:
    """A minimal asyncio UDP responder: one pre-encoded answer, ID patched. Runs until killed."""
    from dnslib import QTYPE, RR, A, DNSRecord
    host, port = address.rsplit(":", 1)
    q = DNSRecord.question(f"svc-0.{NAMESPACE}.svc.{DOMAIN}", "A")
    r = q.reply()
    r.add_answer(RR(q.q.qname, QTYPE.A, ttl=5, rdata=A("10.96.0.1")))
    canned = r.pack()[2:]

    class P(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.t = transport

        def datagram_received(self, data, addr):
            self.t.sendto(data[:2] + canned, addr)

    async def main():
        await asyncio.get_running_loop().create_datagram_endpoint(P, local_addr=(host, int(port)))
        await asyncio.Event().wait()
    asyncio.run(main())


# ----------------------------------------------------------------------------- driver

def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=20, check=check)


class PodNetns:
    """A netns ``kl-dnsb-<hex>`` with eth0 (veth) on a bridge ``kl-dnsb-<hex>`` holding ``server_ip``."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.name = f"kl-dnsb-{tag}"
        self.bridge = f"kl-dnsb-{tag}"
        self.veth = f"kl-dnsb-{tag}h"
        # A 10.250.X.0/24 no route on the host uses yet (10.250.0.1 is the cluster DNS's own address).
        routes = _sh("ip", "-4", "route", "show", "table", "all", check=False).stdout
        octet = next((o for o in random.sample(range(100, 250), 150) if f"10.250.{o}." not in routes), 251)
        self.server_ip, self.pod_ip = f"10.250.{octet}.1", f"10.250.{octet}.2"

    def __enter__(self) -> "PodNetns":
        try:
            _sh("ip", "netns", "add", self.name)
            _sh("ip", "link", "add", self.bridge, "type", "bridge")
            _sh("ip", "addr", "add", f"{self.server_ip}/24", "dev", self.bridge)
            _sh("ip", "link", "set", self.bridge, "up")
            _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            _sh("ip", "link", "set", self.veth, "master", self.bridge, "up")
            _sh("ip", "-n", self.name, "addr", "add", f"{self.pod_ip}/24", "dev", "eth0")
            _sh("ip", "-n", self.name, "link", "set", "eth0", "up")
            _sh("ip", "-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        _sh("ip", "link", "del", self.veth, check=False)
        _sh("ip", "link", "del", self.bridge, check=False)
        _sh("ip", "netns", "del", self.name, check=False)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _create_objects(kubeconfig: Path, n: int, *, parallel: int = 16) -> float:
    from kubeling.client import ApiError, Client
    start = time.perf_counter()
    async with Client.from_kubeconfig(kubeconfig) as c:
        try:
            await c.create("namespaces", {"metadata": {"name": NAMESPACE}})
        except ApiError as e:
            if e.code != 409:
                raise
        sem = asyncio.Semaphore(parallel)

        async def one(i: int) -> None:
            async with sem:
                name = f"svc-{i}"
                await c.create("services", {"metadata": {"name": name, "namespace": NAMESPACE},
                                            "spec": {"ports": [{"name": "http", "port": 80}]}}, namespace=NAMESPACE)
                eps = [{"addresses": [f"10.244.{(3 * i + k) // 250 % 250}.{(3 * i + k) % 250 + 1}"],
                        "conditions": {"ready": True}} for k in range(3)]
                await c.create("endpointslices", {"metadata": {"name": f"{name}-1", "namespace": NAMESPACE,
                                                               "labels": {"kubernetes.io/service-name": name}},
                                                  "addressType": "IPv4", "endpoints": eps,
                                                  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                               namespace=NAMESPACE)
        await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start


def _churn(kubeconfig: Path, n: int, rate: float, stop: threading.Event, counter: list[int]) -> None:
    """Patch ``rate`` random EndpointSlices a second (a new endpoint address) until ``stop``."""
    from kubeling.client import Client

    async def main() -> None:
        rng = random.Random(3)
        async with Client.from_kubeconfig(kubeconfig) as c:
            next_at = time.monotonic()
            while not stop.is_set():
                i = rng.randrange(n)
                eps = [{"addresses": [f"10.245.{rng.randrange(250)}.{rng.randrange(1, 250)}"],
                        "conditions": {"ready": True}}]
                await c.patch("endpointslices", f"svc-{i}-1", {"endpoints": eps}, namespace=NAMESPACE)
                counter[0] += 1
                next_at += 1.0 / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    asyncio.run(main())


def _run_generator(netns: PodNetns | None, server: str, names_file: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--generate", server, "--names", str(names_file),
           "--queries", str(args.queries), "--concurrency", str(args.concurrency), "--duration", str(args.duration)]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns.name, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(label: str, res: dict, cpu: float | None) -> str:
    m = res["mix"]
    cores = f"{cpu / res['elapsed']:.2f}" if cpu is not None else "-"
    return (f"{label:<44} {res['answered']:>8} {res['qps']:>9.0f} {res['p50_ms']:>8.2f} {res['p99_ms']:>8.2f} "
            f"{cores:>6}  answer={m['answer']} nxdomain={m['nxdomain']} nodata={m['nodata']} "
            f"other={m['other']} timeout={m['timeout']}")


def drive(args) -> None:
    import httpx
    import support

    root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="kl-dnsb-") as tmp:
        tmp_path = Path(tmp)
        netns_cm = PodNetns() if root else None
        upstream = support.FakeResolver()  # never a real outside resolver
        try:
            if netns_cm is not None:
                netns_cm.__enter__()
            server_ip = netns_cm.server_ip if netns_cm else "127.0.0.1"
            where = (f"inside netns {netns_cm.name} ({netns_cm.pod_ip}, veth -> bridge {netns_cm.bridge} "
                     f"-> server {server_ip})" if netns_cm else "on loopback in the host netns (not root: no netns)")
            with support.control_plane(tmp_path, timeout=60) as cp:
                took = asyncio.run(_create_objects(cp.kubeconfig, args.services))
                print(f"created {args.services} services + {args.services} EndpointSlices (3 endpoints each) "
                      f"in {took:.1f}s")
                rng = random.Random(7)
                names = []
                for _ in range(2000):
                    i = rng.randrange(args.services)
                    nx = rng.random() < args.nx_ratio
                    names.append(f"svc-{i}.{NAMESPACE}.{NAMESPACE + '.' if nx else ''}svc.{DOMAIN}.")
                names_file = tmp_path / "names.json"
                names_file.write_text(json.dumps(names))
                print(f"load generator: {where}; {args.queries} queries max, {args.concurrency} in flight, "
                      f"{args.duration:.0f}s limit, {args.nx_ratio:.0%} NXDOMAIN names, over UDP")
                print(f"{'server':<44} {'answered':>8} {'qps':>9} {'p50 ms':>8} {'p99 ms':>8} {'cores':>6}  mix")
                variants = [("addons.dns (answer cache)", [], 0.0)]
                if args.churn:
                    variants.append((f"addons.dns (churn {args.churn:g}/s)", [], args.churn))
                if args.compare_cache:
                    variants.append(("addons.dns (--cache-size 0)", ["--cache-size", "0"], 0.0))
                for label, extra, churn in variants:
                    port, health = support.free_port(), support.free_port()
                    name = f"dns{len(extra)}"
                    proc = cp.procs.spawn(name, [sys.executable, "-m", "addons.dns", "--kubeconfig",
                                                 str(cp.kubeconfig), "--bind-address", server_ip,
                                                 "--port", str(port), "--service-ip", "10.96.0.10",
                                                 "--upstream", upstream.address, "--health-port", str(health),
                                                 "--metrics-port", "0", "--no-register", *extra])
                    url = f"http://{server_ip}:{health}/readyz"
                    support.wait_for("dns ready", lambda: proc.poll() is None and httpx.get(
                        url, timeout=1, trust_env=False).status_code == 200, 60, 0.2,
                        errors=(OSError, httpx.HTTPError))
                    stop, done = threading.Event(), [0]
                    churner = None
                    if churn:
                        churner = threading.Thread(target=_churn, args=(cp.kubeconfig, args.services, churn,
                                                                        stop, done), daemon=True)
                        churner.start()
                    cpu0 = _cpu_seconds(proc.pid)
                    try:
                        res = _run_generator(netns_cm, f"{server_ip}:{port}", names_file, args)
                    finally:
                        stop.set()
                        if churner is not None:
                            churner.join(10)
                    cpu = _cpu_seconds(proc.pid) - cpu0
                    if churn:
                        label += f" [{done[0] / res['elapsed']:.0f} patches/s seen]"
                    print(_row(label, res, cpu), flush=True)
                    cp.procs.stop(name)
                if not args.no_reference:
                    port = support.free_port()
                    proc = cp.procs.spawn("responder", [sys.executable, str(Path(__file__).resolve()),
                                                        "--respond", f"{server_ip}:{port}"])
                    time.sleep(1.0)
                    cpu0 = _cpu_seconds(proc.pid)
                    res = _run_generator(netns_cm, f"{server_ip}:{port}", names_file, args)
                    print(_row("reference: canned responder", res, _cpu_seconds(proc.pid) - cpu0), flush=True)
                    cp.procs.stop("responder")
                print("reference: no CoreDNS binary on this machine, so no CoreDNS figure; "
                      "the canned responder is the asyncio/harness ceiling. Target: 5,000 queries/s on 2 cores.")
                print("figures on a shared 2-core machine are noisy: compare rows of one run, not runs.")
        finally:
            upstream.close()
            if netns_cm is not None:
                netns_cm.__exit__()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=50000, help="queries per run (the generator stops then)")
    ap.add_argument("--concurrency", type=int, default=32, help="queries in flight")
    ap.add_argument("--duration", type=float, default=30.0, help="time limit per run, seconds")
    ap.add_argument("--nx-ratio", type=float, default=0.2)
    ap.add_argument("--compare-cache", action="store_true", help="also run with --cache-size 0")
    ap.add_argument("--churn", type=float, default=0.0, help="also run while patching this many slices/s")
    ap.add_argument("--no-reference", action="store_true", help="skip the canned-responder reference row")
    ap.add_argument("--generate", metavar="HOST:PORT", help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    ap.add_argument("--respond", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.respond:
        respond(args.respond)
    elif args.generate:
        names = json.loads(Path(args.names).read_text())
        print(json.dumps(generate(args.generate, names, queries=args.queries, concurrency=args.concurrency,
                                  duration=args.duration)))
    else:
        drive(args)


if __name__ == "__main__":
    main()
