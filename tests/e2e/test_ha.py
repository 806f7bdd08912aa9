"""A highly available control plane (issue 9's HA acceptance): `deploy up --ha`.

Three etcdlite members, two apiservers behind haproxy, two controller-managers
and two schedulers electing leaders, one real node. Each control-plane
process in turn (the etcd leader and a follower, each apiserver, the leading
controller-manager and scheduler, the load balancer) is killed with SIGKILL
and, at once, a new Deployment is created through the load balancer: it must
roll out, and at the end every Deployment created so far is still there and
available (no object lost). supervisord brings each killed process back.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

import support

REPO = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: c, image: "busybox:1.35", command: ["sleep", "3600"]}}
"""


_wait = support.wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing: `make deps` installs it")
    with support.deployed_cluster(tmp_path_factory.mktemp("ha"), "--ha",
                                  ports=(2379, 22379, 32379, 6443, 6444, 6445, 10250)) as c:
        yield c


def kubectl(cluster, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["kubectl", "--kubeconfig", str(cluster["home"] / "admin.kubeconfig"),
                        "--request-timeout=20s", *args], capture_output=True, text=True, timeout=90, input=stdin,
                       env={**cluster["env"], "HOME": str(cluster["home"])})
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def etcd_leader(cluster) -> str:
    """Component name of the etcdlite member that leads now (etcdctl with the cluster's etcd client cert)."""
    from deploy.cluster import ETCD_MEMBERS
    from kubeling.pki.flags import etcdctl_flags

    endpoints = ",".join(f"https://127.0.0.1:{client}" for _, client, _ in ETCD_MEMBERS)
    out = subprocess.run(["etcdctl", "--endpoints", endpoints, *etcdctl_flags(cluster["home"] / "pki"),
                          "endpoint", "status", "-w", "json"],
                         capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"}).stdout
    for st in json.loads(out or "[]"):
        if st["Status"]["leader"] == st["Status"]["header"]["member_id"]:
            port = int(st["Endpoint"].rsplit(":", 1)[1])
            return next(name for name, client, _ in ETCD_MEMBERS if client == port)
    raise AssertionError(f"no etcd leader: {out}")


def lease_holder_component(cluster, lease: str, launcher) -> str:
    """Which of the two components (by its pid in the identity-less world: by asking each) holds ``lease``:
    the holder's /healthz answers and its log says it acquired the lease last."""
    holder = json.loads(kubectl(cluster, "get", "lease", lease, "-n", "kube-system", "-o", "json").stdout)
    ident = holder["spec"]["holderIdentity"]
    for comp in launcher.components():
        if comp.name.startswith(lease) and ident and ident in (cluster["home"] / "logs" / f"{comp.name}.log") \
                .read_text(errors="replace"):
            return comp.name
    raise AssertionError(f"no component logged the identity {ident!r} of lease {lease}")


def available(cluster, name: str) -> bool:
    out = kubectl(cluster, "get", "deployment", name, "-o", "json", check=False)
    if out.returncode:
        return False
    st = json.loads(out.stdout).get("status", {})
    return st.get("availableReplicas") == 1 and st.get("updatedReplicas") == 1


def test_killing_any_one_control_plane_process_keeps_the_cluster_serving(cluster):
    from deploy.cluster import Cluster

    launcher = Cluster(cluster["home"])
    comps = {c.name: c for c in launcher.components()}
    killed: list[str] = []
    victims = [lambda: etcd_leader(cluster),
               lambda: next(n for n in ("etcdlite-0", "etcdlite-1", "etcdlite-2")
                            if n != etcd_leader(cluster) and n not in killed),
               lambda: "kube-apiserver-0", lambda: "kube-apiserver-1",
               lambda: lease_holder_component(cluster, "kube-controller-manager", launcher),
               lambda: lease_holder_component(cluster, "kube-scheduler", launcher),
               lambda: "apiserver-lb"]
    created = []
    timings = []
    for i, pick in enumerate(victims):
        name = pick()
        killed.append(name)
        pid = launcher.pid_of(comps[name])
        assert pid, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        dep = f"ha-{i}"
        _wait(f"create {dep} after killing {name}",
              lambda: kubectl(cluster, "apply", "-f", "-", stdin=DEPLOYMENT.format(name=dep),
                              check=False).returncode == 0, 60, interval=0.5)
        created.append(dep)
        _wait(f"{dep} available after killing {name}", lambda: available(cluster, dep), 90, interval=0.5)
        timings.append((name, time.monotonic() - t0))
        _wait(f"{name} back (supervisord)", lambda: launcher.pid_of(comps[name]) not in (0, pid)
              and comps[name].healthy(), 60)
    print("\n[ha] kill -9 -> new Deployment available: "
          + ", ".join(f"{n} {t:.1f}s" for n, t in timings))
    for dep in created:
        assert available(cluster, dep), f"{dep} lost or not available"
    names = {d["metadata"]["name"] for d in json.loads(kubectl(cluster, "get", "deployments", "-o", "json").stdout)
             ["items"]}
    assert set(created) <= names
    restarts = launcher.supervisor.restarts()
    assert all(restarts.get(n, 0) >= 1 for n, _ in timings), restarts
