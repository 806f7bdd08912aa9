"""Issue 6's benchmark: pod startup latency on one node, and CNI ADD latency of our bridge plugin
against the reference plugin.

    .venv/bin/python bench/node_startup.py [--pods 30] [--rounds 1] [--cni-adds 20] [--trace]

Pod startup latency is measured as the Kubernetes SLO defines it: from the
pod's creation (its creationTimestamp, taken from the create response) until
a watch observes it Running, the image being present. PODS pods bound to the
node are created at once, once the node is Ready; p50 / p99 / max are printed
(target: p99 < 5 s, heading for < 2 s). ``--trace`` also prints, per round,
when each stage happened across pods (Docker's create/start events of the
sandbox and app containers, the kubelet's first status write and Running on
the watch), the kubelet's sync and PLEG counts, and the CPU seconds of every
component (kubelet, shim, CNI server, apiserver, etcd, dockerd, containerd).

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


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its reaped children in seconds (nan if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _kubelet_metrics(n) -> dict[str, float]:
    """The kubelet's counters the trace compares before/after a round (sums and counts of histograms)."""
    want = ("kubelet_pod_worker_duration_seconds_count", "kubelet_pod_worker_duration_seconds_sum",
            "kubelet_pod_start_duration_seconds_count", "kubelet_pod_start_duration_seconds_sum",
            "kubelet_pleg_relist_duration_seconds_count", "kubelet_pleg_relist_duration_seconds_sum")
    out = dict.fromkeys(want, 0.0)
    try:
        text = httpx.get(f"{n.healthz}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in out or name.startswith("kubelet_pleg_events_total{"):
            out[name] = float(value)
    return out


def _pids(n) -> dict[str, int]:
    """Component name -> pid: the node's processes, the shim's CNI server, dockerd and containerd."""
    out = {name: p.pid for name, p in n.cp.procs.procs if p.poll() is None}
    for name in ("dockerd", "containerd"):
        r = subprocess.run(["pidof", name], capture_output=True, text=True, timeout=5)
        if r.stdout.split():
            out[name] = int(r.stdout.split()[0])
    if "shim" in out:
        r = subprocess.run(["pgrep", "-P", str(out["shim"])], capture_output=True, text=True, timeout=5)
        for pid in r.stdout.split():
            out["cni-server"] = int(pid)
    return out


class Trace:
    """Per-pod stage timestamps of one round (``--trace``): Docker's container events of the node
    (sandbox and app container create/start) and the pod's status changes seen on the watch."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, float]] = {}  # pod name -> stage -> time.time()
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    def mark(self, pod: str, stage: str, t: float) -> None:
        self.events.setdefault(pod, {}).setdefault(stage, t)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", f"label=io.kubeling.node={NODE}"], stdout=subprocess.PIPE, text=True)

        def read() -> None:
            for line in self.proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                kind = "sandbox" if attrs.get("io.kubeling.type") == "podsandbox" else "app"
                action = ev.get("Action") or ev.get("status") or ""
                if action in ("create", "start"):
                    self.mark(attrs.get("io.kubernetes.pod.name", "?"), f"{kind} {action}",
                              ev["timeNano"] / 1e9)
        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def report(self, created: dict[str, float], running: dict[str, float]) -> None:
        stages = ["created", "sandbox create", "sandbox start", "app create", "app start", "first status",
                  "running seen"]
        for name, t in created.items():
            self.mark(name, "created", t)
            if name in running:
                self.mark(name, "running seen", running[name])
        print("\nper-stage times (s) across pods: from creation (median / max), and stage-to-stage (median / max)")
        prev = "created"
        for st in stages[1:]:
            abs_ = [ev[st] - ev["created"] for ev in self.events.values() if st in ev and "created" in ev]
            rel = [ev[st] - ev[prev] for ev in self.events.values() if st in ev and prev in ev]
            if abs_:
                print(f"  {st:<15} at {statistics.median(abs_):6.2f} / {max(abs_):6.2f}   "
                      f"after {prev:<15} {statistics.median(rel):6.2f} / {max(rel):6.2f}")
            prev = st
        order = sorted(self.events.items(), key=lambda kv: kv[1].get("running seen", 0))
        print("  slowest pods: " + "; ".join(
            f"{n}: " + " ".join(f"{ev.get(st, float('nan')) - ev.get('created', 0):.2f}" for st in stages[1:])
            for n, ev in order[-3:]))


def pod_startup(n_pods: int, rounds: int, *, trace: bool = False, shim_flags: list[str] | None = None) -> list[float]:
    """Startup latencies (s) of ``rounds`` x ``n_pods`` pods created at once on one real node;
    ``trace`` prints per-stage times and CPU seconds per component of each round."""
    docker_client = support.docker_or_skip("bench", IMAGE)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kubeling-bench-node-") as tmp, \
            support.node(tmp, name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR, docker_client=docker_client,
                         image=IMAGE, shim_flags=shim_flags or ()) as n:
        http = n.http

        def node_ready() -> bool:
            conds = http.get(f"/api/v1/nodes/{NODE}").json().get("status", {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        # The SLO is about pods on a ready node: pods created before the kubelet has its pod CIDR
        # wait for the network, which is node start-up, not pod start-up.
        support.wait_for("node Ready", node_ready, 60, 0.2)
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
                        if tr is not None and obj.get("status", {}).get("conditions"):
                            tr.mark(name, "first status", time.time())
                        if obj.get("status", {}).get("phase") == "Running" and name not in running:
                            running[name] = time.time()
                            if len(running) == n_pods:
                                done.set()
                                return
            tr = Trace() if trace else None
            if tr is not None:
                tr.start()
                pids = _pids(n)
                cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                metrics0 = _kubelet_metrics(n)
                wall0 = time.time()
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
                if tr is not None:
                    tr.stop()
                raise SystemExit(f"round {r}: only {len(running)}/{n_pods} pods Running after 180 s\n{n.logs()}")
            latencies += [running[name] - created[name] for name in created]
            if tr is not None:
                wall = time.time() - wall0
                tr.stop()
                tr.report(created, running)
                m = {k: v - metrics0.get(k, 0.0) for k, v in _kubelet_metrics(n).items()}
                syncs, pleg = m["kubelet_pod_worker_duration_seconds_count"], m["kubelet_pleg_relist_duration_seconds_count"]
                starts = m["kubelet_pod_start_duration_seconds_count"]
                print(f"  kubelet: {syncs:.0f} pod syncs (mean {m['kubelet_pod_worker_duration_seconds_sum'] / max(syncs, 1):.2f} s), "
                      f"{pleg:.0f} PLEG relists (mean {m['kubelet_pleg_relist_duration_seconds_sum'] / max(pleg, 1) * 1000:.0f} ms), "
                      f"kubelet_pod_start_duration_seconds mean {m['kubelet_pod_start_duration_seconds_sum'] / max(starts, 1):.2f} s "
                      f"over {starts:.0f}; PLEG events " + ", ".join(
                          f"{k.split(chr(34))[1]} {v:.0f}" for k, v in sorted(m.items()) if "pleg_events" in k))
                print(f"  CPU s over {wall:.1f} s wall (load average {os.getloadavg()[0]:.1f}): " + ", ".join(
                    f"{k} {cpu_seconds(p) - cpu0[k]:.2f}" for k, p in pids.items()))
            http.delete("/api/v1/namespaces/default/pods", params={"labelSelector": f"bench={tag}"})
            support.wait_for("bench pods gone", lambda: not http.get(
                "/api/v1/namespaces/default/pods", params={"labelSelector": f"bench={tag}"}).json()["items"], 120)
            # Pods with a 0 s grace period leave the API at once (as upstream); the kubelet tears them
            # down after. The next round starts on a node that is done with that, not in the middle of it.
            support.wait_for("bench containers removed", lambda: not [
                c for c in docker_client.containers.list(all=True, filters={"label": "io.kubernetes.pod.namespace=default"})
                if c.labels.get("io.kubernetes.pod.name", "").startswith(f"b-{tag}-")], 120, 0.5)
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
    p.add_argument("--trace", action="store_true", help="per-stage pod times and CPU seconds per component")
    p.add_argument("--max-concurrent-starts", type=int, default=None,
                   help="the CRI shim's --max-concurrent-starts (default: the shim's)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("error: needs root (Docker, netns, bridges)", file=sys.stderr)
        return 1
    a.pods, a.rounds, a.cni_adds = min(max(a.pods, 0), 200), min(a.rounds, 10), min(a.cni_adds, 200)
    if a.pods > 0:  # --pods 0: CNI figures only
        lat = pod_startup(a.pods, a.rounds, trace=a.trace, shim_flags=[] if a.max_concurrent_starts is None else
                          ["--max-concurrent-starts", str(a.max_concurrent_starts)])
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
    if "reference" in res and res["reference"][0] and res["kubeling"][0]:
        ratio = statistics.median(res["kubeling"][0]) / statistics.median(res["reference"][0])
        print(f"  ADD p50 kubeling/reference: {ratio:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
