"""kube-proxy's rules in the real kernel: a service IP reaches a "pod" in a netns.

Needs root, iproute2, iptables (nf_tables), busybox and curl-free httpx.
Creates only: netns "kltest-proxy-<pid>", bridge "kltestpx0" (10.244.254.1/24),
one veth pair, the route 10.96.254.0/24 via the bridge (so no test packet can
follow the default route off the machine) and iptables chains with the prefix
"KLTEST" (never KUBE: a dev cluster may be running beside). All removed in
finally, also on failure.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

import support
from kubeling.client import Client
from proxy.iptables.proxier import Proxier, cleanup_leftovers
from proxy.iptables.rules import RulesConfig
from proxy.iptables.runner import Iptables

_missing = [t for t in ("ip", "iptables", "iptables-restore", "busybox") if not shutil.which(t)]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_missing),
    reason=f"proxy e2e tests need root and {', '.join(_missing) or 'iproute2/iptables/busybox'}")

PREFIX = "KLTEST"
CONFIG = RulesConfig(cluster_cidr="10.244.0.0/16", chain_prefix=PREFIX, masquerade_bit=13)
BRIDGE = "kltestpx0"
HOST_IP, POD_IP = "10.244.254.1", "10.244.254.2"
SERVICE_IP, SERVICE_ROUTE = "10.96.254.10", "10.96.254.0/24"
PAGE = "hello from the kltest pod\n"


def sh(*cmd: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def ruleset() -> str:
    return sh("iptables-save").stdout


@pytest.fixture
def pod(tmp_path):
    """A netns on a test bridge running busybox httpd on POD_IP:8080."""
    pid = os.getpid()
    ns, host_if, pod_if = f"kltest-proxy-{pid}", f"kltpx{pid}h", f"kltpx{pid}p"
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE)
    httpd = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        sh("ip", "link", "set", host_if, "master", BRIDGE, "up")
        sh("ip", "link", "set", host_if, "type", "bridge_slave", "hairpin", "on")
        sh("ip", "link", "set", pod_if, "netns", ns)
        sh("ip", "-n", ns, "link", "set", pod_if, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", HOST_IP)
        sh("ip", "route", "add", SERVICE_ROUTE, "dev", BRIDGE)
        httpd = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "8080",
                                  "-h", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{POD_IP}:8080/", timeout=1).text == PAGE:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("busybox httpd in the test netns did not answer")
        yield ns
    finally:
        if httpd is not None:
            httpd.kill()
            httpd.wait(timeout=10)
        asyncio.run(cleanup_leftovers(CONFIG))
        sh("ip", "route", "del", SERVICE_ROUTE, "dev", BRIDGE, check=False)
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "kltest-web"},
           "spec": {"clusterIP": SERVICE_IP, "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                                         "protocol": "TCP"}]}}


def endpoints(*ips: str) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": "default", "name": "kltest-web"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}] if ips else []}


async def get_page(timeout: float = 3.0) -> str:
    async with httpx.AsyncClient(timeout=timeout) as c:
        return (await c.get(f"http://{SERVICE_IP}/")).text


async def assert_rejected() -> None:
    start = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        await get_page(timeout=5.0)
    assert time.monotonic() - start < 2.0, "REJECT should refuse at once, not time out"


def assert_no_leftovers() -> None:
    left = [line for line in ruleset().splitlines() if PREFIX in line]
    assert not left, f"leftover {PREFIX} rules/chains: {left}"


async def test_service_ip_reaches_pod_then_rejects_then_cleanup(pod):
    """Proxier.sync_proxy_rules against the real kernel: DNAT to the pod, REJECT
    without endpoints, idempotent jumps, and a cleanup that leaves nothing."""
    kube_before = sorted(line for line in ruleset().splitlines() if "KUBE" in line)
    state = {"eps": [endpoints(POD_IP)]}
    proxier = Proxier(list_services=lambda: [SERVICE], list_endpoints=lambda: state["eps"], config=CONFIG)
    await proxier.sync_proxy_rules()
    assert await get_page() == PAGE
    await proxier.sync_proxy_rules()  # a second sync changes nothing and duplicates no jump
    saved = ruleset()
    assert saved.count(f"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j {PREFIX}-SERVICES") == 1
    assert saved.count(f"-j {PREFIX}-FORWARD") == 1
    assert await get_page() == PAGE
    sep_chains = {line.split()[0][1:] for line in saved.splitlines() if line.startswith(f":{PREFIX}-SEP-")}
    assert len(sep_chains) == 1

    state["eps"] = []
    await proxier.sync_proxy_rules()
    saved = ruleset()
    assert "kltest-web:http has no endpoints" in saved
    assert not any(f":{c} " in saved for c in sep_chains), "stale SEP chain was not deleted"
    await assert_rejected()

    assert await cleanup_leftovers(CONFIG)
    assert_no_leftovers()
    # A cluster's own KUBE rules (if one runs beside the test) were not touched.
    assert sorted(line for line in ruleset().splitlines() if "KUBE" in line) == kube_before


async def test_restart_replaces_rules_of_crashed_proxy(pod):
    """Rules left by an earlier proxy (other endpoints, stale chains) are replaced by the first sync."""
    stale = Proxier(list_services=lambda: [SERVICE], list_endpoints=lambda: [endpoints("10.244.254.99")],
                    config=CONFIG)
    await stale.sync_proxy_rules()
    fresh = Proxier(list_services=lambda: [SERVICE], list_endpoints=lambda: [endpoints(POD_IP)], config=CONFIG)
    await fresh.sync_proxy_rules()
    assert "10.244.254.99" not in ruleset()
    assert await get_page() == PAGE
    assert await cleanup_leftovers(CONFIG)
    assert_no_leftovers()


# ---------------------------------------------------------------- with an apiserver

@pytest.fixture
def apiserver(tmp_path):
    """etcd (the reference binary) + our apiserver on free ports; yields the kubeconfig path."""
    try:
        import apiserver.__main__  # noqa: F401  (only to know it exists)
    except ImportError:
        pytest.skip("apiserver has no __main__ yet")
    with support.control_plane(tmp_path, kubeconfig_name="proxy.kubeconfig") as cp:
        yield cp.kubeconfig


async def test_proxy_process_with_apiserver(pod, apiserver, tmp_path):
    """`python -m proxy` against a real apiserver: Service + Endpoints created through
    the API make the page reachable; deleting the Endpoints gives REJECT; --cleanup
    removes everything."""
    health, metrics_port = support.free_port(), support.free_port()
    procs = support.ProcessGroup(tmp_path)
    proxy = procs.spawn("proxy", [
        sys.executable, "-m", "proxy", "--kubeconfig", str(apiserver), "--hostname-override", "kltest",
        "--cluster-cidr", "10.244.0.0/16", "--healthz-bind-address", f"127.0.0.1:{health}",
        "--metrics-bind-address", f"127.0.0.1:{metrics_port}", "--min-sync-period", "100ms",
        "--sync-period", "30s", "--chain-prefix", PREFIX, "--iptables-masquerade-bit", "13",
        # Only our labelled Service: not the test apiserver's default/kubernetes one.
        "--service-proxy-name", "kltest"])
    try:
        async with Client.from_kubeconfig(apiserver) as client:
            labelled = {**SERVICE, "metadata": {**SERVICE["metadata"],
                                                "labels": {"service.kubernetes.io/service-proxy-name": "kltest"}}}
            await client.create("services", labelled, namespace="default")
            await client.create("endpoints", endpoints(POD_IP), namespace="default")
            await asyncio.to_thread(procs.wait_ready, "proxy", url=f"http://127.0.0.1:{health}/healthz",
                                    timeout=20)
            page = await _eventually(get_page, 15)
            assert page == PAGE
            metrics_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in metrics_text
            assert not [line for line in ruleset().splitlines() if PREFIX in line and "10.96.0.1/32" in line], \
                "the test proxy must not program default/kubernetes"

            await client.delete("endpoints", "kltest-web", namespace="default")
            deadline = time.monotonic() + 15
            while "kltest-web:http has no endpoints" not in ruleset():
                assert time.monotonic() < deadline, "proxy did not resync after the Endpoints deletion"
                await asyncio.sleep(0.1)
            await assert_rejected()
            await client.delete("services", "kltest-web", namespace="default")
    finally:
        procs.close()
    assert proxy.returncode == 0, (tmp_path / "proxy.log").read_text()[-2000:]
    rc = subprocess.run([sys.executable, "-m", "proxy", "--cleanup", "--chain-prefix", PREFIX],
                        capture_output=True, text=True, timeout=30)
    assert rc.returncode == 0, rc.stderr
    assert_no_leftovers()


async def _eventually(fn, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_node_port_reaches_pod(pod):
    """A NodePort service answers on a local address of the node (the test bridge's IP)."""
    svc = {**SERVICE, "spec": {**SERVICE["spec"], "type": "NodePort",
                               "ports": [{**SERVICE["spec"]["ports"][0], "nodePort": 30954}]}}
    proxier = Proxier(list_services=lambda: [svc], list_endpoints=lambda: [endpoints(POD_IP)], config=CONFIG)
    await proxier.sync_proxy_rules()
    async with httpx.AsyncClient(timeout=3) as c:
        assert (await c.get(f"http://{HOST_IP}:30954/")).text == PAGE
    assert await cleanup_leftovers(CONFIG)
    assert_no_leftovers()


async def test_pod_reaches_itself_through_service_ip(pod):
    """Hairpin: the pod's own request to the service IP is DNATed back to it, and
    masqueraded (SEP's -s <endpoint> mark), so the reply comes back through the node."""
    proxier = Proxier(list_services=lambda: [SERVICE], list_endpoints=lambda: [endpoints(POD_IP)], config=CONFIG)
    await proxier.sync_proxy_rules()
    out = await asyncio.to_thread(sh, "ip", "netns", "exec", pod, "timeout", "5", "busybox", "wget", "-q",
                                  "-O", "-", f"http://{SERVICE_IP}/", check=False)
    assert out.stdout == PAGE, out.stderr
    assert await cleanup_leftovers(CONFIG)
    assert_no_leftovers()


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9053))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"pong:" + data, peer)
"""


async def test_multi_port_service_with_udp(pod):
    """One Service with a TCP and a UDP port: each reaches its own target port."""
    echo = subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, "-c", UDP_ECHO],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        svc = {**SERVICE, "spec": {**SERVICE["spec"], "ports": [
            SERVICE["spec"]["ports"][0], {"name": "dns", "port": 53, "targetPort": 9053, "protocol": "UDP"}]}}
        eps = endpoints(POD_IP)
        eps["subsets"][0]["ports"].append({"name": "dns", "port": 9053, "protocol": "UDP"})
        proxier = Proxier(list_services=lambda: [svc], list_endpoints=lambda: [eps], config=CONFIG)
        await proxier.sync_proxy_rules()
        assert await get_page() == PAGE

        def ask() -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                for _ in range(10):  # the echo server may still be starting
                    s.sendto(b"ping", (SERVICE_IP, 53))
                    try:
                        return s.recvfrom(2048)[0]
                    except (socket.timeout, ConnectionRefusedError):
                        continue
            return b""

        assert await asyncio.to_thread(ask) == b"pong:ping"
        assert await cleanup_leftovers(CONFIG)
        assert_no_leftovers()
    finally:
        echo.kill()
        echo.wait(timeout=10)
