"""Issue 6's benchmark: pod startup latency on one node, and CNI ADD latency of our bridge plugin
against the reference plugin.

    .venv/bin/python bench/node_startup.py [--pods 30] [--rounds 1] [--cni-adds 20]

Pod startup latency is measured as the Kubernetes SLO defines it: from the
pod's creation (its creationTimestamp, taken from the create response) until
a watch observes it Running, the image being present. PODS pods bound to the
node are created at once; p50 / p99 / max are printed (target: p99 < 5 s,
heading for < 2 s).

The control plane (etcd 3.4 + apiserver) and one node (CRI shim over Docker +
kubelet) come from tests/support.py's ``node`` on free ports, with a
bench-only bridge ``klbench0`` and pod CIDR 10.244.252.0/24; everything is
removed afterwards. CNI: our bridge + host-local (the stub executable
answered by a running ``python -m cni.server``, as on a node, and the same
stub with no server, i.e. the standalone plugin) and the reference
/usr/lib/cni bridge + host-local each run CNI_ADDS ADD/DEL pairs in one
bench-only netns on bridge ``klbenchcni0`` (10.244.251.0/24), timed per
exec. Needs root and Docker; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import support  # noqa: E402
from cni import install  # noqa: E402
from cni.bridge import host_veth_name  # noqa: E402

NODE, BRIDGE, POD_CIDR, IMAGE = "klbench-node", "klbench0", "10.244.252.0/24", "busybox:1.35"
CNI_BRIDGE, CNI_SUBNET = "klbenchcni0", "10.244.251.0/24"
REFERENCE = "/usr/lib/cni"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def _ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_startup(n_pods: int, rounds: int) -> list[float]:
    """Startup latencies (s) of ``rounds`` x ``n_pods`` pods created at once on one real node."""
    docker_client = support.docker_or_skip("bench", IMAGE)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kubeling-bench-node-") as tmp, \
            support.node(tmp, name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR, docker_client=docker_client,
                         image=IMAGE) as n:
        http = n.http
        for r in range(rounds):
            tag = uuid.uuid4().hex[:6]
            rv = http.get("/api/v1/namespaces/default/pods", params={"limit": 1}).json()["metadata"]["resourceVersion"]
            running: dict[str, float] = {}
            done = threading.Event()

            def watch() -> None:
                params = {"watch": "true", "resourceVersion": rv, "labelSelector": f"bench={tag}",
                          "timeoutSeconds": "120"}
                with httpx.Client(base_url=n.api, timeout=None, trust_env=False) as c, \
                        c.stream("GET", "/api/v1/namespaces/default/pods", params=params) as resp:
                    for line in resp.iter_lines():
                        if not line:
                            continue
                        obj = json.loads(line)["object"]
                        name = obj["metadata"]["name"]
                        if obj.get("status", {}).get("phase") == "Running" and name not in running:
                            running[name] = time.time()
                            if len(running) == n_pods:
                                done.set()
                                return
            t = threading.Thread(target=watch, daemon=True)
            t.start()
            time.sleep(0.3)  # the watch is open
            created: dict[str, float] = {}
            for i in range(n_pods):
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": f"b-{tag}-{i}", "namespace": "default", "labels": {"bench": tag}},
                       "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}}
                resp = http.post("/api/v1/namespaces/default/pods", json=pod)
                resp.raise_for_status()
                # creationTimestamp has 1 s resolution; the response time is the sharper start mark
                created[pod["metadata"]["name"]] = max(_ts(resp.json()["metadata"]["creationTimestamp"]),
                                                       time.time() - resp.elapsed.total_seconds())
            if not done.wait(180):
                raise SystemExit(f"round {r}: only {len(running)}/{n_pods} pods Running after 180 s\n{n.logs()}")
            latencies += [running[name] - created[name] for name in created]
            http.delete("/api/v1/namespaces/default/pods", params={"labelSelector": f"bench={tag}"})
            support.wait_for("bench pods gone", lambda: not http.get(
                "/api/v1/namespaces/default/pods", params={"labelSelector": f"bench={tag}"}).json()["items"], 120)
    return latencies


def _run(plugin: str, command: str, conf: dict, cid: str, netns: str, cni_path: str) -> float:
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_PATH=cni_path)
    start = time.perf_counter()
    proc = subprocess.run([plugin], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=30)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{plugin} {command} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return elapsed


def cni_adds(count: int) -> dict[str, tuple[list[float], list[float]]]:
    """(ADD seconds, DEL seconds) per implementation over ``count`` ADD/DEL pairs each."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    ns = f"klbench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        with tempfile.TemporaryDirectory(prefix="kubeling-bench-cni-") as tmp:
            bin_dir, alone_dir = os.path.join(tmp, "bin"), os.path.join(tmp, "bin-standalone")
            install.install(bin_dir)
            install.install(alone_dir)
            sock = os.path.join(tmp, "cni.sock")
            server = subprocess.Popen([sys.executable, "-m", "cni.server", "--socket", sock, "--bin-dir", bin_dir],
                                      cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kinds = {"kubeling": (os.path.join(bin_dir, "bridge"), bin_dir),
                     "standalone": (os.path.join(alone_dir, "bridge"), alone_dir)}
            if os.path.exists(f"{REFERENCE}/bridge"):
                kinds["reference"] = (f"{REFERENCE}/bridge", REFERENCE)
            try:
                support.wait_for("CNI server", lambda: os.path.exists(os.path.join(bin_dir, ".kubeling-cni-server")),
                                 60)
                # Interleaved (one pair of each kind in turn) so that load changes on a shared machine hit
                # every kind alike; the standalone path costs seconds per exec when loaded: fewer pairs.
                out.update({kind: ([], []) for kind in kinds})
                deadline = time.monotonic() + 300
                for i in range(count):
                    if time.monotonic() > deadline:
                        break
                    for kind, (plugin, cni_path) in kinds.items():
                        if kind == "standalone" and i >= max(3, count // 4):
                            continue
                        adds, dels = _pair(kind, plugin, cni_path, i, tmp, ns)
                        out[kind][0].append(adds)
                        out[kind][1].append(dels)
            finally:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        for kind in ("kubeling", "standalone", "reference"):
            for i in range(count):
                subprocess.run(["ip", "link", "del", host_veth_name(f"{kind}{i}", "eth0")], capture_output=True,
                               timeout=10)
        subprocess.run(["ip", "link", "del", CNI_BRIDGE], capture_output=True, timeout=10)
    return out


def _pair(kind: str, plugin: str, cni_path: str, i: int, tmp: str, ns: str) -> tuple[float, float]:
    """One timed ADD/DEL pair (seconds) of one implementation, container ``<kind><i>``."""
    conf = {"cniVersion": "1.0.0", "name": f"klbench-{kind}", "type": "bridge", "bridge": CNI_BRIDGE,
            "isGateway": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": CNI_SUBNET}]],
                     "dataDir": os.path.join(tmp, f"ipam-{kind}")}}
    cid = f"{kind}{i}"
    return (_run(plugin, "ADD", conf, cid, f"/var/run/netns/{ns}", cni_path),
            _run(plugin, "DEL", conf, cid, f"/var/run/netns/{ns}", cni_path))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cni-adds", type=int, default=20)
    a = p.parse_args()
    if os.geteuid() != 0:
        print("error: needs root (Docker, netns, bridges)", file=sys.stderr)
        return 1
    a.pods, a.rounds, a.cni_adds = min(max(a.pods, 0), 200), min(a.rounds, 10), min(a.cni_adds, 200)
    if a.pods > 0:  # --pods 0: CNI figures only
        lat = pod_startup(a.pods, a.rounds)
        print(f"\npod startup latency, {a.pods} pods created at once on one node x {a.rounds} round(s) "
              "(SLO: p99 < 5 s)")
        print(f"  p50 {statistics.median(lat):.2f} s   p99 {pct(lat, 0.99):.2f} s   max {max(lat):.2f} s   "
              f"(n={len(lat)})")
    res = cni_adds(a.cni_adds)
    print(f"\nCNI ADD / DEL latency, bridge + host-local, one exec each ({a.cni_adds} pairs; standalone fewer)")
    print(f"  {'plugin':<10} {'ADD p50':>9} {'ADD p99':>9} {'DEL p50':>9}")
    for kind, (adds, dels) in res.items():
        if not adds:
            continue
        print(f"  {kind:<10} {statistics.median(adds) * 1000:>7.1f}ms {pct(adds, 0.99) * 1000:>7.1f}ms "
              f"{statistics.median(dels) * 1000:>7.1f}ms")
    print("  (kubeling: stub + running cni.server, as on a node; standalone: the same stub, no server; interleaved)")
    if "reference" in res:
        ratio = statistics.median(res["kubeling"][0]) / statistics.median(res["reference"][0])
        print(f"  ADD p50 kubeling/reference: {ratio:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
