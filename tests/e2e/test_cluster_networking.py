"""Cluster networking end to end (issue 7's acceptance test): three nodes in
network namespaces on one machine, real Docker, real iptables, real kubectl.

`python -m deploy up --nodes 3` (what `make up NODES=3` runs) starts a whole
cluster in a temporary state directory: each node is a netns on the underlay
bridge with its own kubelet, CRI shim, kube-proxy and host-gw route
controller; the cluster DNS runs on the host at the underlay address behind
the kube-dns Service. A Deployment spread over the three nodes is reached
pod to pod across nodes (no NAT), by service name through the cluster DNS,
and through a NodePort at every node's address. `deploy down` runs in any
case and the last test checks it left nothing behind.

Every test runs twice, with kube-proxy in iptables mode and in nftables mode
(``make up PROXY_MODE=nftables``; the backends and the ruleset are then read
from the ``ip kube-proxy`` table).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

import support
from kubeling import config

REPO = pathlib.Path(__file__).resolve().parents[2]
NODES = ["node1", "node2", "node3"]

pytestmark = pytest.mark.e2e

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: busybox:1.35
        command: ["sh", "-c", "echo hello from $(hostname) > /www/index.html; exec httpd -f -v -p 80 -h /www"]
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


_wait = support.wait_for


def in_netns(node: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/run/netns/kl-{node}", "--", *argv], capture_output=True,
                          text=True, timeout=timeout)


def host_state() -> dict:
    """What of kubeling's shows on the host: netns, links, routes, iptables chains."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    chains = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return {
        "netns": sorted(n.split()[0] for n in netns.splitlines() if n.startswith("kl-node")),
        "links": sorted(m for m in re.findall(r"^\d+: ([^:@]+)", links, re.M)
                        if m.startswith(("kl-", config.BRIDGE_NAME))),
        "routes": [r for r in routes.splitlines() if "proto 76" in r or "10.244.0.0/16" in r
                   or r.startswith(("unreachable 10.96.0.0/12", "10.250.0.0/24"))],
        "chains": sorted(set(re.findall(r"^:(KUBE-[A-Z0-9-]+)", chains, re.M))),
    }


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def cluster(request, tmp_path_factory):
    """One 3-node cluster per kube-proxy mode (pytest runs every test of this file against the
    first, takes it down, then the second)."""
    before = host_state()
    if before["netns"] or any(link.startswith("kl-underlay") for link in before["links"]):
        pytest.fail(f"a multi-node kubeling cluster already exists on this host: {before}")
    with support.deployed_cluster(tmp_path_factory.mktemp("cluster3"), "--nodes", "3",
                                  "--proxy-mode", request.param, ports=(2379, 6443)) as c:
        c["before"] = before
        yield c


def kubectl(cluster, *args: str, timeout: float = 90, check: bool = True, stdin: str | None = None):
    kc = str(cluster["home"] / "admin.kubeconfig")
    r = subprocess.run(["kubectl", "--kubeconfig", kc, *args], capture_output=True, text=True, timeout=timeout,
                       input=stdin, env={**cluster["env"], "HOME": str(cluster["home"])})
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def ready_pods(cluster, n: int) -> list[dict] | None:
    items = json.loads(kubectl(cluster, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    pods = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p.get("status", {}).get("conditions", []))]
    return ready if len(pods) == n and len(ready) == n else None


@pytest.fixture(scope="module")
def web(cluster):
    kubectl(cluster, "apply", "-f", "-", stdin=WEB)
    pods = _wait("3 web pods Ready", lambda: ready_pods(cluster, 3), 120)
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    return {"pods": pods, "by_node": by_node}


def exec_in(cluster, pod: dict, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return kubectl(cluster, "exec", pod["metadata"]["name"], "--", *argv, check=check)


def test_nodes_ready_in_their_own_netns_with_underlay_addresses(cluster):
    nodes = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
    got = {n["metadata"]["name"]: [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
           for n in nodes}
    assert got == {"node1": ["10.250.0.11"], "node2": ["10.250.0.12"], "node3": ["10.250.0.13"]}
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
    assert len(set(cidrs.values())) == 3
    # host-gw: node1 routes the other nodes' pod CIDRs via their underlay addresses.
    routes = in_netns("node1", "ip", "route").stdout
    for other in ("node2", "node3"):
        assert f"{cidrs[other]} via {got[other][0]} dev eth0 proto 76" in routes, routes
    assert f"{cidrs['node1']} dev {config.BRIDGE_NAME}" in routes


def test_deployment_spreads_and_pods_talk_across_nodes_without_nat(cluster, web):
    assert sorted(web["by_node"]) == NODES, "one web pod per node (topology spread over kubernetes.io/hostname)"
    client, server = web["by_node"]["node1"], web["by_node"]["node3"]
    out = exec_in(cluster, client, "timeout", "5", "wget", "-qO-", f"http://{server['status']['podIP']}/").stdout
    assert out.strip() == f"hello from {server['metadata']['name']}"
    # The server saw the client's pod IP as the source: no NAT between pods.
    logs = kubectl(cluster, "logs", server["metadata"]["name"]).stdout
    assert f"{client['status']['podIP']}]" in logs, logs
    # Nodes and the host reach every pod too.
    for pod in web["pods"]:
        r = subprocess.run(["curl", "-s", "--max-time", "3", f"http://{pod['status']['podIP']}/"],
                           capture_output=True, text=True, timeout=10)
        assert r.stdout.strip() == f"hello from {pod['metadata']['name']}"


def test_service_names_resolve_through_cluster_dns(cluster, web):
    client = web["by_node"]["node1"]
    resolv = exec_in(cluster, client, "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {config.CLUSTER_DNS_IP}" in resolv and "search default.svc.cluster.local" in resolv
    names = {p["metadata"]["name"] for p in web["pods"]}
    for url in ("http://web.default.svc.cluster.local/", "http://web/"):
        out = exec_in(cluster, client, "timeout", "5", "wget", "-qO-", url).stdout.strip()
        assert out.startswith("hello from ") and out.split()[-1] in names, (url, out)
    svc_ip = json.loads(kubectl(cluster, "get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    out = exec_in(cluster, client, "nslookup", "web.default.svc.cluster.local", check=False).stdout
    assert f"Address: {svc_ip}" in out, out
    # A headless service's name resolves to its pods' IPs.
    out = exec_in(cluster, client, "nslookup", "web-headless.default.svc.cluster.local", check=False).stdout
    assert {p["status"]["podIP"] for p in web["pods"]} <= set(re.findall(r"Address: (\S+)", out)), out
    # A missing service is NXDOMAIN.
    r = exec_in(cluster, client, "nslookup", "missing.default.svc.cluster.local", check=False)
    assert r.returncode != 0 and "NXDOMAIN" in r.stdout + r.stderr, r.stdout + r.stderr


def test_nodeport_answers_at_every_node_address(cluster, web):
    svc = json.loads(kubectl(cluster, "get", "svc", "web-np", "-o", "json").stdout)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    names = {p["metadata"]["name"] for p in web["pods"]}
    for i in range(1, 4):
        url = f"http://{config.underlay_ip(i)}:{node_port}/"

        def get(url=url):
            r = subprocess.run(["curl", "-s", "--max-time", "2", url], capture_output=True, text=True, timeout=10)
            return r.stdout.strip() if r.stdout.strip().split()[-1:] and r.stdout.split()[-1] in names else None
        _wait(f"NodePort {url}", get, 10)


def proxy_mode(cluster) -> str:
    """The kube-proxy mode the launcher ran (``PROXY_MODE=nftables`` runs this file in nftables mode)."""
    from deploy.cluster import Cluster

    return Cluster(cluster["home"]).proxy_mode


def service_backends(cluster, node: str, service: str) -> set[str]:
    """The DNAT targets ("ip:port") kube-proxy programmed in ``node``'s netns for ``service``."""
    if proxy_mode(cluster) == "iptables":
        rules = in_netns(node, "iptables-save", "-t", "nat").stdout
        return set(re.findall(rf'--comment "{re.escape(service)}" .*-j DNAT .*--to-destination (\S+)', rules))
    # nftables: a service port without affinity is elements "<cluster IP> . <port> . <i> : <ip> . <port>"
    # of the service-endpoints-<proto> map.
    ns, name = service.split("/")
    ip = json.loads(kubectl(cluster, "get", "service", name, "-n", ns, "-o", "json").stdout)["spec"]["clusterIP"]
    text = in_netns(node, "nft", "list", "map", "ip", "kube-proxy", "service-endpoints-tcp").stdout
    return {f"{a}:{p}" for a, p in re.findall(rf"{re.escape(ip)} \. \d+ \. \d+ : ([\d.]+) \. (\d+)", text)}


def test_scaling_changes_backends_on_every_node_within_2s(cluster, web):
    kubectl(cluster, "scale", "deployment/web", "--replicas=5")
    pods = _wait("5 web pods Ready", lambda: ready_pods(cluster, 5), 120, interval=0.1)
    t_ready = time.monotonic()
    want = {f"{p['status']['podIP']}:80" for p in pods}

    def programmed():
        return all(service_backends(cluster, n, "default/web") == want for n in NODES)
    _wait("every node's kube-proxy to DNAT to the 5 pods", programmed, 10, interval=0.1)
    took = time.monotonic() - t_ready
    print(f"\n[networking] 5 pods Ready -> backends on all 3 nodes in {took:.2f}s")
    assert took < 2.0, f"backends changed {took:.2f}s after the pods were Ready (want < 2 s)"
    kubectl(cluster, "scale", "deployment/web", "--replicas=3")
    pods = _wait("back to 3 web pods", lambda: ready_pods(cluster, 3), 120)
    want = {f"{p['status']['podIP']}:80" for p in pods}
    _wait("backends back to 3", lambda: all(service_backends(cluster, n, "default/web") == want for n in NODES), 10)


def our_rules(cluster, node: str) -> list[str]:
    """node's KUBE-* rules and chains (iptables mode) or its ``ip kube-proxy`` table (nftables
    mode), counters dropped, in a stable order."""
    if proxy_mode(cluster) == "nftables":
        text = in_netns(node, "nft", "list", "table", "ip", "kube-proxy").stdout
        return sorted(re.sub(r"counter packets \d+ bytes \d+", "counter", ln).strip() for ln in text.splitlines())
    out = []
    for line in in_netns(node, "iptables-save").stdout.splitlines():
        if line.startswith("#") or "KUBE-" not in line:
            continue
        out.append(re.sub(r"\[\d+:\d+\]", "", line))
    return sorted(out)


def test_kube_proxy_kill_9_is_restarted_by_the_supervisor_with_the_same_rules(cluster, web):
    from deploy.cluster import Cluster

    svc_ip = json.loads(kubectl(cluster, "get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    before = our_rules(cluster, "node1")
    assert any(svc_ip in r for r in before)
    launcher = Cluster(cluster["home"])
    comp = next(c for c in launcher.components() if c.name == "kube-proxy-node1")
    pid = launcher.pid_of(comp)
    assert pid
    os.kill(pid, signal.SIGKILL)
    new_pid = _wait("supervisord to restart kube-proxy-node1",
                    lambda: (launcher.pid_of(comp) not in (0, pid) and comp.healthy() and launcher.pid_of(comp)), 30)
    assert launcher.supervisor.restarts().get("kube-proxy-node1", 0) >= 1
    assert new_pid != pid
    time.sleep(2.5)  # past one min-sync-period, so the new proxy has rewritten its ruleset
    assert our_rules(cluster, "node1") == before
    r = in_netns("node1", "curl", "-s", "--max-time", "3", f"http://{svc_ip}/")
    assert r.stdout.startswith("hello from "), r.stdout + r.stderr


def test_zz_down_leaves_nothing_behind(cluster):
    down = subprocess.run([sys.executable, "-m", "deploy", "down"], cwd=REPO, env=cluster["env"],
                          capture_output=True, text=True, timeout=240)
    assert down.returncode == 0, down.stdout + down.stderr
    after = host_state()
    assert after["netns"] == [] and after["links"] == [] and after["routes"] == [], after
    assert after["chains"] == cluster["before"]["chains"], after
    for node in NODES:
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.kubeling.node={node}"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        assert left == [], f"containers of {node} left: {left}"
