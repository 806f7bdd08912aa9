"""kubectl top and kubectl logs against real processes: etcd, apiserver, CRI shim over Docker, kubelet.

Needs root and a running Docker with busybox:1.35 (skips otherwise). The
kubelet's /stats/summary (CRI ListContainerStats over cgroup v1) feeds the
apiserver's metrics.k8s.io, which ``kubectl top pods`` / ``top nodes`` read;
logs go apiserver -> kubelet /containerLogs with tailLines, sinceSeconds and
follow. Test-only names: node "tltest-kubelet", bridge "tltestkl0", pod CIDR
10.244.250.0/24. Processes stop by PID (kubectl -f by its own process
group), containers are removed by the shim's node label, the bridge deleted.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid

import httpx
import pytest

import support
from support import wait_for

NODE = "tltest-kubelet"
BRIDGE = "tltestkl0"
POD_CIDR = "10.244.250.0/24"
IMAGE = "busybox:1.35"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """etcd + apiserver + shim + kubelet on free ports and a running pod printing a line a second."""
    docker_client = support.node_or_skip("top/logs e2e tests", IMAGE, kubectl=True)
    with support.node(tmp_path_factory.mktemp("toplogs"), name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR,
                      docker_client=docker_client, image=IMAGE, kubelet_flags=["--sync-frequency", "2"]) as n:
        http, tmp = n.http, str(n.cp.tmp)
        name = f"talk-{uuid.uuid4().hex[:6]}"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "talk", "image": IMAGE, "command": ["sh", "-c"],
                                        "args": ["i=0; while true; do echo line $i; i=$((i+1)); sleep 0.5; "
                                                 "done"]}]}}
        r = http.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text

        def running():
            p = http.get(f"/api/v1/namespaces/default/pods/{name}").json()
            return p if p.get("status", {}).get("phase") == "Running" else None
        try:
            wait_for("pod Running", running, 60)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{n.logs()}") from None
        home = os.path.join(tmp, "kubectl-home")
        os.makedirs(home, exist_ok=True)
        yield {"http": http, "procs": n.procs, "kubeconfig": n.kubeconfig, "home": home, "pod": name,
               "kubelet": n.kubelet}
        http.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})


def kubectl_argv(cluster, *args) -> list[str]:
    return [KUBECTL, "--kubeconfig", cluster["kubeconfig"], "--cache-dir", os.path.join(cluster["home"], "cache"),
            *args]


def kubectl(cluster, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(kubectl_argv(cluster, *args), capture_output=True, text=True, timeout=timeout,
                       env={"HOME": cluster["home"], "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}"
    return r


def test_kubelet_stats_summary(cluster):
    """/stats/summary has node cpu/memory and the pod's container with a cpu rate and working set."""
    s = httpx.get(cluster["kubelet"] + "/stats/summary", timeout=10, trust_env=False).json()
    node = s["node"]
    assert node["nodeName"] == NODE
    assert node["cpu"]["usageCoreNanoSeconds"] > 0 and node["cpu"]["usageNanoCores"] >= 0
    assert node["memory"]["workingSetBytes"] > 0 and node["memory"]["usageBytes"] >= node["memory"]["workingSetBytes"]
    pod = next(p for p in s["pods"] if p["podRef"]["name"] == cluster["pod"])
    assert pod["podRef"]["namespace"] == "default" and pod["podRef"]["uid"]
    c = next(c for c in pod["containers"] if c["name"] == "talk")
    assert c["cpu"]["usageCoreNanoSeconds"] > 0 and "usageNanoCores" in c["cpu"]
    assert c["memory"]["workingSetBytes"] > 0
    text = httpx.get(cluster["kubelet"] + "/metrics/resource", timeout=10, trust_env=False).text
    assert "node_cpu_usage_seconds_total " in text
    assert f'container_memory_working_set_bytes{{container="talk",namespace="default",pod="{cluster["pod"]}"}}' in text


def test_kubectl_top_pods_and_nodes(cluster):
    r = kubectl(cluster, "top", "pods", "-n", "default")
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"], r.stdout
    row = next(line.split() for line in lines[1:] if line.split()[0] == cluster["pod"])
    assert row[1].endswith("m") and row[2].endswith("Mi"), row
    r = kubectl(cluster, "top", "pod", cluster["pod"], "--containers")
    assert "talk" in r.stdout, r.stdout
    r = kubectl(cluster, "top", "nodes")
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "CPU(cores)", "CPU(%)"], r.stdout
    row = next(line.split() for line in lines[1:] if line.split()[0] == NODE)
    assert row[1].endswith("m") and row[3].endswith("Mi") and row[4].endswith("%"), row


def test_kubectl_logs_tail_since(cluster):
    wait_for("a few lines", lambda: cluster["http"].get(
        f"/api/v1/namespaces/default/pods/{cluster['pod']}/log").text.count("\n") >= 3, 20)
    r = kubectl(cluster, "logs", cluster["pod"], "--tail=2")
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("line ") for line in lines), r.stdout
    r = kubectl(cluster, "logs", cluster["pod"], "--since=1h")
    assert r.stdout.startswith("line 0\n"), r.stdout[:200]
    # sinceSeconds=1 keeps only the last second or so (a line every 0.5 s)
    text = cluster["http"].get(f"/api/v1/namespaces/default/pods/{cluster['pod']}/log",
                               params={"sinceSeconds": "1"}).text
    assert 0 < text.count("\n") <= 4 and "line 0\n" not in text, text
    text = cluster["http"].get(f"/api/v1/namespaces/default/pods/{cluster['pod']}/log",
                               params={"limitBytes": "5"}).text
    assert text == "line "


def test_kubectl_logs_follow(cluster):
    """``kubectl logs -f`` streams new lines; read a few (bounded) then stop it."""
    proc = subprocess.Popen(kubectl_argv(cluster, "logs", "-f", "--tail=1", cluster["pod"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={"HOME": cluster["home"], "PATH": "/usr/bin:/bin"})
    got: list[str] = []

    def reader():
        for line in proc.stdout:
            got.append(line)
            if len(got) >= 4:
                return
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(15)
    support.stop_process_group(proc, close_pipes=False)
    assert len(got) >= 4, (got, proc.stderr.read() if proc.stderr else "")
    nums = [int(line.split()[1]) for line in got]
    assert nums == sorted(nums) and nums[-1] - nums[0] >= 3, nums


def test_kubectl_logs_previous_limit_and_since_time(cluster):
    r = subprocess.run(kubectl_argv(cluster, "logs", cluster["pod"], "--previous"), capture_output=True, text=True,
                       timeout=60, env={"HOME": cluster["home"], "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert r.stderr.strip() == (f'Error from server (BadRequest): previous terminated container "talk" in pod '
                                f'"{cluster["pod"]}" not found'), r.stderr
    r = kubectl(cluster, "logs", cluster["pod"], "--limit-bytes=7")
    assert r.stdout == "line 0\n"
    r = kubectl(cluster, "logs", cluster["pod"], "--since-time=2000-01-01T00:00:00Z", "--timestamps")
    first = r.stdout.splitlines()[0].split(" ", 1)
    assert first[1] == "line 0" and first[0].startswith("20"), r.stdout[:200]
    r = kubectl(cluster, "logs", cluster["pod"], "--since-time=2999-01-01T00:00:00Z")
    assert r.stdout == ""
