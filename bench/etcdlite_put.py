"""Put throughput and latency of etcdlite (or any etcd v3 endpoint), printed
next to etcd 3.4's figures measured on this machine kind
(/work/shared/reference/etcd-3.4-facts.md).

    .venv/bin/python bench/etcdlite_put.py                 # starts its own etcdlite
    .venv/bin/python bench/etcdlite_put.py --endpoint 127.0.0.1:2379 --seconds 5

Clients are grpc.aio coroutines in one process, each doing sequential Puts of
256-byte values; with 2 cores the client competes with the server for CPU,
as it did for the etcd figures.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proto.etcdserverpb import rpc_pb2 as pb  # noqa: E402
from proto.etcdserverpb import rpc_pb2_grpc  # noqa: E402

ETCD_34 = {1: "1080/s p50 0.83 ms p99 2.36 ms", 16: "3751/s p99 11.1 ms"}


async def run(endpoint: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        value = os.urandom(128).hex().encode()
        lat: list[float] = []
        deadline = time.perf_counter() + seconds

        async def client(i: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await kv.Put(pb.PutRequest(key=b"/bench/%d/%d" % (i, n % 1000), value=value))
                lat.append(time.perf_counter() - t0)
                n += 1

        await kv.Put(pb.PutRequest(key=b"/bench/warmup", value=value))
        await asyncio.gather(*(client(i) for i in range(clients)))
        return len(lat), sorted(lat)


def pct(sorted_lat: list[float], p: float) -> float:
    return sorted_lat[min(len(sorted_lat) - 1, int(len(sorted_lat) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", help="host:port of a running server (default: start etcdlite)")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    proc = None
    tmp = tempfile.TemporaryDirectory()
    endpoint = args.endpoint
    if endpoint is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        endpoint = f"127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "etcdlite", "--data-dir", tmp.name,
                                 "--listen-client-urls", f"http://{endpoint}",
                                 "--advertise-client-urls", f"http://{endpoint}"],
                                cwd=Path(__file__).resolve().parents[1],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
    try:
        for clients in (1, 16):
            n, lat = asyncio.run(run(endpoint, clients, args.seconds))
            print(f"{clients:>2} client(s): {n / args.seconds:7.0f} puts/s  p50 {pct(lat, 0.5):6.2f} ms  "
                  f"p99 {pct(lat, 0.99):6.2f} ms   | etcd 3.4: {ETCD_34[clients]}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
