"""A real stub resolver (busybox 1.35's nslookup in a container) against the
cluster DNS process: search path + ndots:5 as the kubelet writes for
ClusterFirst pods, a service name that resolves and a missing one that
gets NXDOMAIN ("can't find").

The server listens on port 53 (resolv.conf has no port) of an address on a
bridge this test creates (``kl-dnse-<hex>``, removed in the finally); the
container shares the host's network namespace. Needs root and Docker.
"""
from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import sys

import httpx
import pytest

import support

from kubeling.client import Client

pytestmark = pytest.mark.e2e


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _nslookup(server: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "host", "--dns", server,
                           "--dns-search", "default.svc.cluster.local", "--dns-option", "ndots:5",
                           "busybox:1.35", "/bin/busybox", "timeout", "10", "/bin/busybox", "nslookup", name],
                          capture_output=True, text=True, timeout=60)


def test_busybox_nslookup(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the busybox DNS test needs root (it creates a bridge)")
    support.docker_or_skip("the busybox DNS test")
    bridge = f"kl-dnse-{secrets.token_hex(3)}"
    addr = f"10.250.99.{random.randint(2, 250)}"
    upstream = support.FakeResolver()
    created = False
    try:
        r = _ip("link", "add", bridge, "type", "bridge")
        assert r.returncode == 0, r.stderr
        created = True
        for args in (("addr", "add", f"{addr}/32", "dev", bridge), ("link", "set", bridge, "up")):
            r = _ip(*args)
            assert r.returncode == 0, r.stderr
        with support.control_plane(tmp_path) as cp:
            async def create():
                async with Client.from_kubeconfig(cp.kubeconfig) as c:
                    svc = await c.create("services", {"metadata": {"name": "web"},
                                                      "spec": {"ports": [{"name": "http", "port": 80}]}},
                                         namespace="default")
                    return svc["spec"]["clusterIP"]
            cluster_ip = asyncio.run(create())
            health = support.free_port()
            cp.procs.spawn("dns", [sys.executable, "-m", "addons.dns", "--kubeconfig", str(cp.kubeconfig),
                                   "--bind-address", addr, "--port", "53", "--cluster-domain", "cluster.local",
                                   "--service-ip", "10.96.0.10", "--upstream", upstream.address,
                                   "--health-port", str(health), "--metrics-port", "0"])
            proc = cp.procs.get("dns")

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"dns exited {proc.returncode}: {cp.procs.log('dns')}")
                return httpx.get(f"http://{addr}:{health}/readyz", timeout=1, trust_env=False).status_code == 200
            support.wait_for("dns ready", ready, 30, 0.1, errors=(OSError, httpx.HTTPError))

            found = _nslookup(addr, "web")
            assert found.returncode == 0, found.stdout + found.stderr + cp.procs.log("dns")
            assert cluster_ip in found.stdout and "web.default.svc.cluster.local" in found.stdout, found.stdout

            missing = _nslookup(addr, "missing")
            out = missing.stdout + missing.stderr
            assert missing.returncode != 0 and "can't find" in out and "NXDOMAIN" in out, out
    finally:
        upstream.close()
        if created:
            _ip("link", "del", bridge)
