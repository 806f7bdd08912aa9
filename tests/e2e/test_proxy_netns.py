"""kube-proxy's iptables and nftables modes in a node network namespace of its own, as `make up NODES=3` runs it.

Every test runs once per mode (the ``mode`` fixture): iptables (chains
KLPXE-*) and nftables (table ``ip klpxe-proxy``). Needs root, iproute2,
iptables (nf_tables), nft. Everything lives in namespaces this module
creates, named ``kl-pxe-<id>-*`` and deleted at the end, also on failure;
the proxy's rules go into the node namespace only (chain prefix KLPXE as
well), so the host's tables are never touched:

    client netns C  eth0 10.250.77.1/24 --- ul0 10.250.77.2/24  node netns N  br0 10.244.77.1/24
    (another machine on the underlay;                           |-- pod netns P1 eth0 10.244.77.2
     routes 10.96/12 and 10.244/16 via N)                       `-- pod netns P2 eth0 10.244.77.3
    host kl-pxe-<id>h 10.251.K.1/30 --- hostlink 10.251.K.2/30 (N reaches the test apiserver)

Each pod runs a tiny Python server answering HTTP on 8080 and UDP on 9053
with "<pod> <client address>", so tests see which backend answered and
whether the client address was masqueraded.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

import support
from kubeling.client import Client, kubeconfig
from proxy.conntrack import Conntrack
from proxy.iptables.proxier import Proxier, cleanup_leftovers
from proxy.iptables.rules import RulesConfig
from proxy.iptables.runner import Iptables
from proxy.nftables import proxier as nftables_proxier
from proxy.nftables.runner import Nft, NftError

_missing = [t for t in ("ip", "iptables", "iptables-restore", "iptables-save", "nft") if not shutil.which(t)]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_missing),
    reason=f"kube-proxy netns e2e tests need root and {', '.join(_missing) or 'iproute2/iptables'}")

PREFIX = "KLPXE"
CONFIG = RulesConfig(cluster_cidr="10.244.0.0/16", chain_prefix=PREFIX, masquerade_bit=13)
NODE_UNDERLAY, CLIENT_IP, NODE_POD_GW = "10.250.77.2", "10.250.77.1", "10.244.77.1"
PODS = {"p1": "10.244.77.2", "p2": "10.244.77.3"}

SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9053))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080))
srv.listen(64)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.recv(4096)
        body = f"{name} {peer[0]}\n".encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
"""

# Run in a namespace: TCP GET or UDP ask, N times; prints one answer per line
# ("REFUSED"/"TIMEOUT" on failure), so one process start serves many requests.
CLIENT = r"""
import socket, sys
proto, host, port, n, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
for _ in range(n):
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=3) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            print(data.split(b"\r\n\r\n", 1)[1].decode().strip())
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", sport))
                s.settimeout(1)
                s.connect((host, port))
                s.send(b"ping")
                print(s.recv(2048).decode())
    except ConnectionRefusedError:
        print("REFUSED")
    except (socket.timeout, TimeoutError):
        print("TIMEOUT")
    except OSError as e:
        print("ERROR", e.errno)
"""


def sh(*cmd: str, check: bool = True, timeout: float = 15, input: str | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, input=input)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


class Topology:
    """Names of the namespaces and the host link of one test module."""

    def __init__(self, tag: str):
        self.tag = tag
        self.node, self.client = f"kl-pxe-{tag}-n", f"kl-pxe-{tag}-c"
        self.pods = {name: f"kl-pxe-{tag}-{name}" for name in PODS}
        self.host_if = f"kl-pxe-{tag}h"
        k = os.getpid() % 200 + 20
        self.host_ip, self.node_link_ip = f"10.251.{k}.1", f"10.251.{k}.2"
        self.servers: list[subprocess.Popen] = []
        self.mode = "iptables"  # set per test by the ``mode`` fixture

    def ask(self, proto: str, host: str, port: int, n: int = 1, *, netns: str | None = None,
            source_port: int = 0) -> list[str]:
        """Answers to n requests from ``netns`` (default: the client namespace); UDP
        requests all come from ``source_port`` (one conntrack flow) if given."""
        out = sh("ip", "netns", "exec", netns or self.client, sys.executable, "-c", CLIENT, proto, host, str(port),
                 str(n), str(source_port), timeout=10 + 4 * n)
        return out.splitlines()

    def our_rules(self) -> list[str]:
        """Our rules in the node netns in the current mode: iptables-save lines naming
        our chains (counters stripped), or the lines of our nft table ([] when absent)."""
        if self.mode == "nftables":
            out = subprocess.run(["ip", "netns", "exec", self.node, "nft", "list", "table", "ip", CONFIG.nftables_table],
                                 capture_output=True, text=True, timeout=15).stdout
            return out.splitlines()
        out = []
        for table in ("filter", "nat"):
            for line in sh("ip", "netns", "exec", self.node, "iptables-save", "-t", table).splitlines():
                if PREFIX in line:
                    out.append(f"{table} " + (line.split(" [")[0] if line.startswith(":") else line))
        return out


@pytest.fixture(scope="module")
def topo():
    t = Topology(uuid.uuid4().hex[:6])
    try:
        n = t.node
        for ns in (n, t.client, *t.pods.values()):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", n, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", n, "addr", "add", f"{NODE_POD_GW}/24", "dev", "br0")
        sh("ip", "-n", n, "link", "set", "br0", "up")
        # As on every kubeling node (DESIGN "Node networking facts"): the service
        # CIDR is routed, so an unprogrammed service IP reaches the REJECT rules.
        sh("ip", "-n", n, "route", "add", "10.96.0.0/12", "dev", "br0")
        for name, pod_ns in t.pods.items():
            sh("ip", "-n", n, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
            sh("ip", "-n", n, "link", "set", f"v{name}", "master", "br0", "up")
            sh("ip", "-n", n, "link", "set", f"v{name}", "type", "bridge_slave", "hairpin", "on")
            sh("ip", "-n", pod_ns, "addr", "add", f"{PODS[name]}/24", "dev", "eth0")
            sh("ip", "-n", pod_ns, "link", "set", "eth0", "up")
            sh("ip", "-n", pod_ns, "route", "add", "default", "via", NODE_POD_GW)
        sh("ip", "-n", n, "link", "add", "ul0", "type", "veth", "peer", "name", "eth0", "netns", t.client)
        sh("ip", "-n", n, "addr", "add", f"{NODE_UNDERLAY}/24", "dev", "ul0")
        sh("ip", "-n", n, "link", "set", "ul0", "up")
        sh("ip", "-n", t.client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", t.client, "link", "set", "eth0", "up")
        for cidr in ("10.96.0.0/12", "10.244.0.0/16"):
            sh("ip", "-n", t.client, "route", "add", cidr, "via", NODE_UNDERLAY)
        sh("ip", "link", "add", t.host_if, "type", "veth", "peer", "name", "hostlink", "netns", n)
        sh("ip", "addr", "add", f"{t.host_ip}/30", "dev", t.host_if)
        sh("ip", "link", "set", t.host_if, "up")
        sh("ip", "-n", n, "addr", "add", f"{t.node_link_ip}/30", "dev", "hostlink")
        sh("ip", "-n", n, "link", "set", "hostlink", "up")
        for name, pod_ns in t.pods.items():
            t.servers.append(subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-c", SERVER, name],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name, ip in PODS.items():
            support.wait_for(f"server in {name}", lambda ip=ip: t.ask("tcp", ip, 8080, netns=n)[0].startswith("p"),
                             timeout=20, interval=0.2)
        yield t
    finally:
        for proc in t.servers:
            support.stop_process(proc, sig=signal.SIGKILL)
        for ns in (t.node, t.client, *t.pods.values()):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", t.host_if], capture_output=True, timeout=30)


def svc(name: str, ip: str, *ports: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": name,
                         "labels": {"service.kubernetes.io/service-proxy-name": "kl-pxe"}},
            "spec": {"clusterIP": ip, "ports": list(ports), **spec}}


def eps(name: str, ips: list[str], *ports: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": "default", "name": name},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": list(ports)}] if ips else []}


HTTP = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
HTTP_EP = {"name": "http", "port": 8080, "protocol": "TCP"}


def proxier(topo: Topology, state: dict, **kw) -> Proxier | nftables_proxier.Proxier:
    sources = dict(list_services=lambda: state["svcs"], list_endpoints=lambda: state["eps"], config=CONFIG,
                   conntrack=Conntrack(netns=topo.node))
    if topo.mode == "nftables":
        return nftables_proxier.Proxier(**sources, nft=Nft(netns=topo.node), **kw)
    return Proxier(**sources, iptables=Iptables(netns=topo.node), **kw)


# What marks one endpoint of the web service's node port in our_rules() per mode: its
# SEP chain, or (nftables, no per-endpoint chains) its element of nodeport-endpoints-tcp.
ENDPOINT_CHAIN = {"iptables": ":KLPXE-SEP-", "nftables": "30777 . "}


@pytest.fixture(params=["iptables", "nftables"])
def mode(request, topo) -> str:
    topo.mode = request.param
    yield request.param
    topo.mode = "iptables"


async def cleanup(topo: Topology) -> bool:
    if topo.mode == "nftables":
        return await nftables_proxier.cleanup_leftovers(CONFIG, nft=Nft(netns=topo.node))
    return await cleanup_leftovers(CONFIG, iptables=Iptables(netns=topo.node))


@pytest.fixture
def clean(topo, mode):
    yield topo
    assert asyncio.run(cleanup(topo))
    assert topo.our_rules() == []


async def test_cluster_ip_and_node_port_at_underlay_address(clean):
    """A NodePort service answers at the node's underlay address from another machine
    (masqueraded: the pod sees the node's address), its cluster IP answers from there too
    (masqueraded, the client is outside the cluster CIDR) and from a pod (not masqueraded)."""
    topo = clean
    state = {"svcs": [svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort")],
             "eps": [eps("web", [PODS["p1"]], HTTP_EP)]}
    await proxier(topo, state).sync_proxy_rules()
    assert topo.ask("tcp", NODE_UNDERLAY, 30777) == [f"p1 {NODE_POD_GW}"]
    assert topo.ask("tcp", "10.96.77.10", 80) == [f"p1 {NODE_POD_GW}"]
    assert topo.ask("tcp", "10.96.77.10", 80, netns=topo.pods["p2"]) == [f"p1 {PODS['p2']}"]
    # Hairpin: p1 reaches itself through the service IP (masqueraded by its SEP chain).
    assert topo.ask("tcp", "10.96.77.10", 80, netns=topo.pods["p1"]) == [f"p1 {NODE_POD_GW}"]


async def test_nodeport_addresses_limit_where_node_ports_answer(clean):
    """With --nodeport-addresses 10.250.77.0/24 the node port answers on the underlay
    address and not on the pod gateway address."""
    topo = clean
    state = {"svcs": [svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort")],
             "eps": [eps("web", [PODS["p1"]], HTTP_EP)]}

    async def node_ips():
        return [NODE_UNDERLAY]

    await proxier(topo, state, node_ips=node_ips).sync_proxy_rules()
    assert topo.ask("tcp", NODE_UNDERLAY, 30777) == [f"p1 {NODE_POD_GW}"]
    assert topo.ask("tcp", NODE_POD_GW, 30777, netns=topo.pods["p2"]) == ["REFUSED"]


async def test_udp_service_and_conntrack_flush(clean):
    """A UDP service port reaches its endpoint; when the endpoint moves, the stale
    conntrack flow is flushed so the same client socket reaches the new one."""
    topo = clean
    dns = {"name": "dns", "port": 53, "targetPort": 9053, "protocol": "UDP"}
    dns_ep = {"name": "dns", "port": 9053, "protocol": "UDP"}
    state = {"svcs": [svc("dns", "10.96.77.53", dns)], "eps": [eps("dns", [PODS["p1"]], dns_ep)]}
    p = proxier(topo, state)
    await p.sync_proxy_rules()
    sport = {"iptables": 40053, "nftables": 40054}[topo.mode]  # the other mode's flow is still in conntrack
    assert topo.ask("udp", "10.96.77.53", 53, 3, source_port=sport) == [f"p1 {NODE_POD_GW}"] * 3
    state["eps"] = [eps("dns", [PODS["p2"]], dns_ep)]
    await p.sync_proxy_rules()
    # p1 still runs: without the flush this flow would keep reaching it.
    answers = topo.ask("udp", "10.96.77.53", 53, 2, source_port=sport)
    assert answers == [f"p2 {NODE_POD_GW}"] * 2, answers


async def test_no_endpoints_is_rejected_at_once(clean):
    topo = clean
    state = {"svcs": [svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort")], "eps": []}
    await proxier(topo, state).sync_proxy_rules()
    start = time.monotonic()
    assert topo.ask("tcp", "10.96.77.10", 80) == ["REFUSED"]
    assert topo.ask("tcp", NODE_UNDERLAY, 30777) == ["REFUSED"]
    assert time.monotonic() - start < 5, "REJECT must refuse at once, not time out"


async def test_session_affinity_sticks_and_random_spreads(clean):
    """Two endpoints: without affinity 30 requests reach both; with ClientIP affinity
    every request of one client reaches the same one."""
    topo = clean
    two = [eps("web", [PODS["p1"], PODS["p2"]], HTTP_EP)]
    state = {"svcs": [svc("web", "10.96.77.10", HTTP)], "eps": two}
    p = proxier(topo, state)
    await p.sync_proxy_rules()
    assert {a.split()[0] for a in topo.ask("tcp", "10.96.77.10", 80, 30)} == {"p1", "p2"}
    state["svcs"] = [svc("web", "10.96.77.10", HTTP, sessionAffinity="ClientIP",
                         sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})]
    await p.sync_proxy_rules()
    answers = topo.ask("tcp", "10.96.77.10", 80, 15)
    assert len(set(answers)) == 1 and len(answers) == 15, answers


async def test_several_ports_with_named_target_port(clean):
    """One Service, a TCP port whose targetPort is the name "web" and a UDP port: each
    reaches the port the Endpoints give for its port name (what the endpoints
    controller resolved the named target port to)."""
    topo = clean
    state = {"svcs": [svc("multi", "10.96.77.20", {"name": "http", "port": 80, "targetPort": "web"},
                          {"name": "dns", "port": 53, "targetPort": 9053, "protocol": "UDP"})],
             "eps": [eps("multi", [PODS["p2"]], HTTP_EP, {"name": "dns", "port": 9053, "protocol": "UDP"})]}
    await proxier(topo, state).sync_proxy_rules()
    assert topo.ask("tcp", "10.96.77.20", 80) == [f"p2 {NODE_POD_GW}"]
    assert topo.ask("udp", "10.96.77.20", 53) == [f"p2 {NODE_POD_GW}"]


async def test_nftables_partial_sync_notices_a_deleted_table(topo):
    """nftables mode: partial syncs do not redeclare the table, so one after someone
    deleted it fails, and the next sync is a full one that brings the service back."""
    topo.mode = "nftables"
    try:
        state = {"svcs": [svc("web", "10.96.77.10", HTTP)], "eps": [eps("web", [PODS["p1"]], HTTP_EP)]}
        p = proxier(topo, state)
        await p.sync_proxy_rules()
        sh("ip", "netns", "exec", topo.node, "nft", "delete", "table", "ip", CONFIG.nftables_table)
        with pytest.raises(NftError):
            await p.sync_proxy_rules()
        assert (await p.sync_proxy_rules()).full
        assert topo.ask("tcp", "10.96.77.10", 80) == [f"p1 {NODE_POD_GW}"]
    finally:
        assert await cleanup(topo)
        topo.mode = "iptables"


async def test_nftables_replaces_a_table_it_cannot_flush_into_shape(topo):
    """nftables mode over a table left by something else (a base chain at another
    priority, a stray chain and set): the first full sync fails, the retry deletes
    and recreates the table in one transaction, and the service works."""
    topo.mode = "nftables"
    table = CONFIG.nftables_table
    try:
        sh("ip", "netns", "exec", topo.node, "nft", "-f", "-", input=(
            f"add table ip {table}\n"
            f"add chain ip {table} filter-input {{ type filter hook input priority 0 ; }}\n"
            f"add chain ip {table} endpoint-STALE-x\nadd set ip {table} affinity-STALE-x {{ type ipv4_addr ; }}\n"))
        state = {"svcs": [svc("web", "10.96.77.10", HTTP)], "eps": [eps("web", [PODS["p2"]], HTTP_EP)]}
        p = proxier(topo, state)
        with pytest.raises(NftError):
            await p.sync_proxy_rules()
        assert (await p.sync_proxy_rules()).full
        assert topo.ask("tcp", "10.96.77.10", 80) == [f"p2 {NODE_POD_GW}"]
        rules = "\n".join(topo.our_rules())
        assert "STALE" not in rules and "type filter hook input priority -110" in rules
    finally:
        assert await cleanup(topo)
        topo.mode = "iptables"


def nft_table_json(topo: Topology) -> list:
    """Our nft table as sorted ``nft -j`` objects without handles, set and map elements
    sorted (their listing order is the kernel's hash order, which partial and full
    syncs need not share)."""
    out = sh("ip", "netns", "exec", topo.node, "nft", "-j", "list", "table", "ip", CONFIG.nftables_table)
    objs = []
    for obj in json.loads(out)["nftables"]:
        for kind, body in obj.items():
            if isinstance(body, dict):
                body.pop("handle", None)  # a rewritten rule gets a new one
                if kind in ("set", "map") and "elem" in body:
                    body["elem"] = sorted(body["elem"], key=json.dumps)
        objs.append(json.dumps(obj, sort_keys=True))
    return sorted(objs)


async def test_nftables_partial_syncs_end_where_a_full_sync_does(topo):
    """nftables mode: partial syncs through endpoint-count changes (the service moves
    between the shared service-dnat-tcp-<n> chains, its map elements are replaced),
    a new node port, ClientIP affinity on and off, and a removed service leave the
    table a full sync writes, and traffic follows each change."""
    topo.mode = "nftables"
    web = svc("web", "10.96.77.10", HTTP)
    web_np = svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort")
    sticky = svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort", sessionAffinity="ClientIP")
    other = svc("other", "10.96.77.11", HTTP)
    both, only_p2 = eps("web", [PODS["p1"], PODS["p2"]], HTTP_EP), eps("web", [PODS["p2"]], HTTP_EP)
    steps = [([web, other], [both, eps("other", [PODS["p1"]], HTTP_EP)], {"p1", "p2"}),
             ([web, other], [only_p2, eps("other", [PODS["p1"]], HTTP_EP)], {"p2"}),
             ([web_np, other], [both, eps("other", [PODS["p1"]], HTTP_EP)], {"p1", "p2"}),
             ([sticky, other], [both], None),
             ([web_np], [only_p2], {"p2"})]
    try:
        state = {"svcs": steps[0][0], "eps": steps[0][1]}
        p = proxier(topo, state)
        assert (await p.sync_proxy_rules()).full
        for svcs, endpoints, reached in steps[1:]:
            state["svcs"], state["eps"] = svcs, endpoints
            assert not (await p.sync_proxy_rules()).full
            answers = {a.split()[0] for a in topo.ask("tcp", "10.96.77.10", 80, 12)}
            assert answers == reached if reached else len(answers) == 1, answers
            partial = nft_table_json(topo)
            p.force_full_sync()
            assert (await p.sync_proxy_rules()).full
            assert nft_table_json(topo) == partial
        assert topo.ask("tcp", NODE_UNDERLAY, 30777) == [f"p2 {NODE_POD_GW}"]
        assert not any("10.96.77.11" in obj for obj in nft_table_json(topo))  # the removed service left nothing
    finally:
        assert await cleanup(topo)
        topo.mode = "iptables"


# ---------------------------------------------------------------- python -m proxy in the node netns

@pytest.fixture
def apiserver(topo, tmp_path):
    """etcd + our apiserver on free ports, listening on loopback and the host end of the host link."""
    with support.control_plane(tmp_path, kubeconfig_name="admin.kubeconfig",
                               apiserver_args=["--bind-address", f"127.0.0.1,{topo.host_ip}"]) as cp:
        port = cp.server.rsplit(":", 1)[1]
        node_kc = tmp_path / "kube-proxy.kubeconfig"
        kubeconfig.write(node_kc, server=f"http://{topo.host_ip}:{port}", user="system:kube-proxy")
        yield cp, node_kc


def start_proxy(procs: support.ProcessGroup, topo: Topology, kubeconfig, health: int, name: str, *,
                metrics: int | None = None):
    return procs.spawn(name, [
        "ip", "netns", "exec", topo.node, sys.executable, "-m", "proxy", "--kubeconfig", str(kubeconfig),
        "--hostname-override", "kl-pxe", "--cluster-cidr", "10.244.0.0/16",
        "--healthz-bind-address", f"{topo.node_link_ip}:{health}", "--metrics-bind-address", f"{topo.node_link_ip}:{metrics}" if metrics else "",
        "--min-sync-period", "100ms", "--sync-period", "30s", "--chain-prefix", PREFIX,
        "--iptables-masquerade-bit", "13", "--service-proxy-name", "kl-pxe",
        "--nodeport-addresses", "10.250.77.0/24", "--proxy-mode", topo.mode])


async def test_kill9_restart_gives_identical_rules_then_cleanup(topo, mode, apiserver, tmp_path):
    """`python -m proxy` in the node netns: a Service made through the API answers at the
    node port; after kill -9 and a restart the ruleset of our chains is identical;
    an Endpoints change made while no proxy ran is applied by the restarted one;
    `--cleanup` leaves no chain with our prefix."""
    cp, node_kc = apiserver
    health = support.free_port()
    procs = support.ProcessGroup(tmp_path)
    try:
        async with Client.from_kubeconfig(cp.kubeconfig) as client:
            await client.create("services", svc("web", "10.96.77.10", {**HTTP, "nodePort": 30777}, type="NodePort"),
                                namespace="default")
            await client.create("endpoints", eps("web", [PODS["p1"]], HTTP_EP), namespace="default")
            metrics_port = support.free_port()
            first = start_proxy(procs, topo, node_kc, health, "proxy", metrics=metrics_port)
            await asyncio.to_thread(procs.wait_ready, "proxy", url=f"http://{topo.node_link_ip}:{health}/healthz",
                                    timeout=30)
            assert topo.ask("tcp", NODE_UNDERLAY, 30777) == [f"p1 {NODE_POD_GW}"]
            text = httpx.get(f"http://{topo.node_link_ip}:{metrics_port}/metrics", timeout=5).text
            assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in text
            # Only the labelled Service: not the test apiserver's default/kubernetes.
            assert not any("10.96.0.1/32" in line or "10.96.0.1 " in line for line in topo.our_rules())
            before = topo.our_rules()
            assert any(ENDPOINT_CHAIN[mode] in line for line in before)

            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert topo.our_rules() == before  # the kernel keeps the rules of a dead proxy
            start_proxy(procs, topo, node_kc, health, "proxy2")
            await asyncio.to_thread(procs.wait_ready, "proxy2", url=f"http://{topo.node_link_ip}:{health}/healthz",
                                    timeout=30)
            assert topo.our_rules() == before

            procs.get("proxy2").send_signal(signal.SIGKILL)
            procs.get("proxy2").wait(timeout=10)
            obj = await client.get("endpoints", "web", namespace="default")
            obj["subsets"] = eps("web", [PODS["p2"]], HTTP_EP)["subsets"]
            await client.replace("endpoints", obj)
            start_proxy(procs, topo, node_kc, health, "proxy3")
            await asyncio.to_thread(procs.wait_ready, "proxy3", url=f"http://{topo.node_link_ip}:{health}/healthz",
                                    timeout=30)
            assert topo.ask("tcp", NODE_UNDERLAY, 30777) == [f"p2 {NODE_POD_GW}"]
            after = topo.our_rules()
            assert not any(PODS["p1"] in line for line in after), "the crashed proxy's endpoint chain was kept"
            assert sum(line.count(ENDPOINT_CHAIN[mode]) for line in after) == 1
    finally:
        procs.close()
    out = subprocess.run(["ip", "netns", "exec", topo.node, sys.executable, "-m", "proxy", "--cleanup",
                          "--chain-prefix", PREFIX], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert topo.our_rules() == []
