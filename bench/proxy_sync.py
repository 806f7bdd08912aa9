"""How long one kube-proxy sync takes as services grow: render time (pure) and,
as root, the real iptables-restore inside a scratch network namespace
("kltest-pxbench-<pid>", deleted afterwards; the host's rules are never touched).

    .venv/bin/python bench/proxy_sync.py [SERVICES ...]

Prints figures only; nothing here asserts on timing.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from proxy.iptables.rules import RulesConfig, render_rules
from proxy.iptables.runner import Iptables
from proxy.serviceport import build_endpoints_map, build_service_map


def cluster(n: int, per_service: int = 3) -> tuple[list[dict], list[dict]]:
    svcs, eps = [], []
    for i in range(n):
        name = f"svc-{i}"
        svcs.append({"metadata": {"namespace": "bench", "name": name},
                     "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                              "ports": [{"name": "http", "port": 80}]}})
        eps.append({"metadata": {"namespace": "bench", "name": name},
                    "subsets": [{"addresses": [{"ip": f"10.244.{(i * per_service + k) // 250}."
                                                      f"{(i * per_service + k) % 250 + 1}"}
                                               for k in range(per_service)],
                                 "ports": [{"name": "http", "port": 8080}]}]})
    return svcs, eps


async def main(sizes: list[int]) -> None:
    ns = f"kltest-pxbench-{os.getpid()}"
    root = os.geteuid() == 0
    if root:
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        ipt = Iptables(netns=ns)
        print(f"{'services':>9} {'rules':>7} {'render ms':>10} {'restore ms':>11}")
        for n in sizes:
            svcs, eps = cluster(n)
            t0 = time.perf_counter()
            text = render_rules(build_service_map(svcs), build_endpoints_map(eps),
                                RulesConfig(cluster_cidr="10.244.0.0/16"))
            render_ms = (time.perf_counter() - t0) * 1000
            restore = "(needs root)"
            if root:
                t0 = time.perf_counter()
                await ipt.restore(text)
                restore = f"{(time.perf_counter() - t0) * 1000:.1f}"
            print(f"{n:>9} {text.count(chr(10) + '-A '):>7} {render_ms:>10.1f} {restore:>11}")
    finally:
        if root:
            subprocess.run(["ip", "netns", "del", ns], timeout=10, check=False)


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [10, 100, 1000]))
