"""The main job end to end (issue 2's acceptance test), on real processes,
real Docker, real iptables, the bundled CLI and the real kubectl.

`python -m deploy up` starts a whole cluster in a temporary state directory;
the web example is applied, served through its service IP from the host,
deleted, then applied again with kubectl. `deploy down` runs in any case.
"""
from __future__ import annotations

import ipaddress
import json
import pathlib
import subprocess
import sys
import time

import httpx
import pytest

import support

REPO = pathlib.Path(__file__).resolve().parents[2]
KUBELING = str(pathlib.Path(sys.executable).parent / "kubeling")
WEB = str(REPO / "deploy" / "examples" / "web.yaml")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")

pytestmark = pytest.mark.e2e


_wait = support.wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    t0 = time.monotonic()
    with support.deployed_cluster(tmp_path_factory.mktemp("cluster"), ports=(2379, 6443, 10250, 10256)) as c:
        c["up_seconds"] = time.monotonic() - t0
        yield c


def kubeling(cluster, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
    r = subprocess.run([KUBELING, *args], env=cluster["env"], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"kubeling {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def kubectl(cluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    kc = str(cluster["home"] / "admin.kubeconfig")
    r = subprocess.run(["kubectl", "--kubeconfig", kc, *args], capture_output=True, text=True, timeout=timeout,
                       env={**cluster["env"], "HOME": str(cluster["home"])})
    assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def web_pods(cluster) -> list[dict]:
    items = json.loads(kubeling(cluster, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running_pods(cluster, n: int):
    pods = web_pods(cluster)
    ok = [p for p in pods if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")]
    return pods if len(pods) == n and len(ok) == n else None


def kubeling_containers() -> list[dict]:
    out = subprocess.run(["docker", "ps", "--filter", "label=io.kubeling.node=node1", "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def fetch(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2)
        return r.text if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def test_main_job(cluster, capsys):
    """apply -> 3 pods Running with pod IPs -> page through the service IP from
    several pods -> delete -> pods, containers and service IP gone."""
    node = json.loads(kubeling(cluster, "get", "node", "node1", "-o", "json").stdout)
    pod_cidr = ipaddress.ip_network(node["spec"]["podCIDR"])

    t_apply = time.monotonic()
    out = kubeling(cluster, "apply", "-f", WEB).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out, out
    pods = _wait("3 web pods Running", lambda: running_pods(cluster, 3), 60)
    apply_to_running = time.monotonic() - t_apply
    for p in pods:
        assert ipaddress.ip_address(p["status"]["podIP"]) in pod_cidr, p["status"]

    table = kubeling(cluster, "get", "pods").stdout
    assert sum(1 for line in table.splitlines() if line.startswith("web-") and "Running" in line) == 3, table

    names = {p["metadata"]["name"] for p in pods}
    containers = kubeling_containers()
    per_pod: dict[str, int] = {}
    for c in containers:
        labels = dict(kv.split("=", 1) for kv in c.get("Labels", "").split(",") if "=" in kv)
        pod = labels.get("io.kubernetes.pod.name")
        if pod in names:
            per_pod[pod] = per_pod.get(pod, 0) + 1
    assert per_pod == {n: 2 for n in names}, f"expected pause + app per pod in docker ps: {per_pod}"

    svc = json.loads(kubeling(cluster, "get", "svc", "web", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in SERVICE_CIDR, cluster_ip
    assert cluster_ip in kubeling(cluster, "get", "svc", "web").stdout

    url = f"http://{cluster_ip}/"
    first = _wait("the page through the service IP", lambda: fetch(url), 30)
    assert "hello from web-" in first, first
    seen = set()
    for _ in range(40):
        page = fetch(url)
        if page:
            seen.add(page.strip())
        if len(seen) > 1:
            break
    assert len(seen) > 1, f"40 requests reached only {seen}"
    assert all(any(n in s for n in names) for s in seen), (seen, names)

    t_delete = time.monotonic()
    kubeling(cluster, "delete", "-f", WEB)
    _wait("web pods gone from the API", lambda: not web_pods(cluster), 30)
    _wait("web containers gone from Docker", lambda: not [
        c for c in kubeling_containers() if any(n in c.get("Labels", "") for n in names)], 30)
    delete_seconds = time.monotonic() - t_delete
    assert fetch(url) is None, "the service IP still answers after delete"

    with capsys.disabled():
        print(f"\n[main job] deploy up -> ready {cluster['up_seconds']:.1f}s; apply -> 3 pods Running "
              f"{apply_to_running:.1f}s; delete -> pods and containers gone {delete_seconds:.1f}s")


def test_same_manifest_with_real_kubectl(cluster):
    """The manifest is ordinary upstream YAML: the real kubectl applies it and lists the pods."""
    out = kubectl(cluster, "apply", "--validate=false", "-f", WEB).stdout
    assert "deployment.apps/web" in out and "service/web" in out, out
    try:
        _wait("3 web pods Running", lambda: running_pods(cluster, 3), 60)
        listing = kubectl(cluster, "get", "pods").stdout
        assert sum(1 for line in listing.splitlines() if line.startswith("web-")) == 3, listing
    finally:
        subprocess.run(["kubectl", "--kubeconfig", str(cluster["home"] / "admin.kubeconfig"), "delete",
                        "-f", WEB, "--wait=true", "--timeout=60s"], capture_output=True, timeout=90,
                       env={**cluster["env"], "HOME": str(cluster["home"])})
