"""Hollow nodes (python -m kubelet.hollow) under the real control plane:
apiserver + etcdlite + scheduler + controller-manager + 20 hollow nodes; a
Deployment of 50 replicas becomes fully available, node leases are renewed,
pod IPs come from each node's podCIDR, and deleting the pods' owner finishes
their graceful deletion."""
from __future__ import annotations

import ipaddress
import sys
import time

import httpx
import pytest

import support
from kubelet.hollow import PodIPs, exit_plan, parse_quantity_ki, running_status, terminated_status

COUNT = 20


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hollow")
    with support.control_plane(tmp, store="etcdlite") as cp:
        kc = str(cp.kubeconfig)
        ports = {n: support.free_port() for n in ("scheduler", "controller-manager", "hollow")}
        cp.procs.spawn("scheduler", [sys.executable, "-m", "scheduler", "--kubeconfig", kc,
                                     "--secure-port", str(ports["scheduler"])])
        cp.procs.spawn("controller-manager", [
            sys.executable, "-m", "controllers", "--kubeconfig", kc, "--secure-port", str(ports["controller-manager"]),
            "--allocate-node-cidrs", "--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", "24"])
        cp.procs.spawn("hollow", [sys.executable, "-m", "kubelet.hollow", "--kubeconfig", kc, "--count", str(COUNT),
                                  "--name-prefix", "hollow-", "--cpu", "4", "--memory", "16Gi", "--pods", "110",
                                  "--lease-renew-interval", "1", "--healthz-port", str(ports["hollow"])])
        for name, port in ports.items():
            cp.procs.wait_ready(name, url=f"http://127.0.0.1:{port}/healthz", timeout=60)
        cp.http = httpx.Client(base_url=cp.server, timeout=10, trust_env=False)
        try:
            yield cp
        finally:
            cp.http.close()


def test_nodes_registered_ready_with_renewed_leases(plane):
    cp = plane
    nodes = cp.http.get("/api/v1/nodes", params={"labelSelector": "kubeling.io/hollow=true"}).json()["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(f"hollow-{i}" for i in range(COUNT))
    n0 = nodes[0]
    assert n0["status"]["allocatable"]["cpu"] == "4" and n0["status"]["allocatable"]["pods"] == "110"
    assert n0["status"]["capacity"]["memory"] == "16777216Ki"
    ready = {c["type"]: c["status"] for c in n0["status"]["conditions"]}
    assert ready["Ready"] == "True" and ready["MemoryPressure"] == "False"

    def leases():
        items = cp.http.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases").json()["items"]
        return {x["metadata"]["name"]: x for x in items if x["metadata"]["name"].startswith("hollow-")}
    first = support.wait_for("20 leases", lambda: (lambda d: d if len(d) == COUNT else None)(leases()), 20)
    lease = first["hollow-3"]
    assert lease["spec"]["holderIdentity"] == "hollow-3" and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    support.wait_for("leases renewed", lambda: all(
        x["spec"]["renewTime"] > first[n]["spec"]["renewTime"] for n, x in leases().items()), 10)


def test_deployment_of_50_becomes_available_and_deletes_finish(plane):
    cp = plane
    ns = "hollow-test"
    assert cp.http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": ns}}).status_code == 201
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 50, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "busybox:1.35",
                                                          "resources": {"requests": {"cpu": "100m"}}}]}}}}
    t0 = time.monotonic()
    assert cp.http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=dep).status_code == 201

    def available():
        st = cp.http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json().get("status") or {}
        return st if st.get("availableReplicas") == 50 and st.get("readyReplicas") == 50 else None
    support.wait_for("50 available replicas", available, 90, 0.5)
    took = time.monotonic() - t0
    pods = cp.http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
    assert len(pods) == 50
    cidrs = {n["metadata"]["name"]: n["spec"].get("podCIDR")
             for n in cp.http.get("/api/v1/nodes").json()["items"]}
    ips = set()
    for p in pods:
        st = p["status"]
        assert st["phase"] == "Running" and st["containerStatuses"][0]["ready"] is True
        assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
        ip = ipaddress.ip_address(st["podIP"])
        if cidrs[p["spec"]["nodeName"]]:
            assert ip in ipaddress.ip_network(cidrs[p["spec"]["nodeName"]])
        ips.add(ip)
    assert len(ips) == 50
    assert len({p["spec"]["nodeName"] for p in pods}) >= 10  # spread over the hollow nodes

    # Scaling down: the ReplicaSet deletes pods gracefully; the hollow kubelet finishes the deletes.
    r = cp.http.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/web", json={"spec": {"replicas": 10}},
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    support.wait_for("pods gone after scale down", lambda: len(
        cp.http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]) == 10, 60, 0.5)
    print(f"50 replicas available on {COUNT} hollow nodes in {took:.1f}s")


def test_pods_asked_to_exit_end_succeeded_or_failed(plane):
    cp = plane
    ns = "hollow-exit"
    assert cp.http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": ns}}).status_code == 201
    for name, code, policy in (("ok", "0", "Never"), ("bad", "3", "Never"), ("forever", "1", "Always")):
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "annotations": {"hollow.kubeling.io/exit-code": code,
                                                           "hollow.kubeling.io/run-seconds": "0.5"}},
                "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox:1.35"}]}}
        assert cp.http.post(f"/api/v1/namespaces/{ns}/pods", json=body).status_code == 201

    def phases():
        items = cp.http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
        return {p["metadata"]["name"]: p for p in items}
    got = support.wait_for("pods ended", lambda: (lambda d: d if d["ok"]["status"].get("phase") == "Succeeded"
                                                  and d["bad"]["status"].get("phase") == "Failed" else None)(
        phases()), 30, 0.3)
    term = got["bad"]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert {c["type"]: c["status"] for c in got["ok"]["status"]["conditions"]}["Ready"] == "False"
    assert got["forever"]["status"]["phase"] == "Running"


def test_running_status_and_ip_allocation_units():
    pod = {"metadata": {"name": "p", "uid": "u1"},
           "spec": {"nodeName": "n", "initContainers": [{"name": "i", "image": "x"}],
                    "containers": [{"name": "c", "image": "busybox:1.35"}]},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}]}}
    st = running_status(pod, ip="10.244.1.2", host_ip="127.0.0.1", now=0)
    assert st["phase"] == "Running" and st["podIPs"] == [{"ip": "10.244.1.2"}] and st["qosClass"] == "BestEffort"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["PodScheduled"]["lastTransitionTime"] == "t0" and conds["Ready"]["status"] == "True"
    assert st["containerStatuses"][0]["state"]["running"]["startedAt"] == "1970-01-01T00:00:00Z"
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    ips = PodIPs()
    net = ipaddress.ip_network("10.244.1.0/30")  # room for one pod (.2)
    assert ips.allocate("n", net, "ns/a") == "10.244.1.2"
    assert ips.allocate("n", net, "ns/a") == "10.244.1.2"
    with pytest.raises(ValueError):
        ips.allocate("n", net, "ns/b")
    ips.release("ns/a")
    assert ips.allocate("n", net, "ns/b") == "10.244.1.2"
    pod["metadata"]["annotations"] = {"hollow.kubeling.io/exit-code": "1"}
    assert exit_plan(pod) is None  # restartPolicy Always: the kubelet would restart it
    pod["spec"]["restartPolicy"] = "Never"
    assert exit_plan(pod) == (1, 1.0)
    pod["status"] = st
    done = terminated_status(pod, exit_code=1, now=5)
    assert done["phase"] == "Failed" and done["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert parse_quantity_ki("16Gi") == 16 * 1024 * 1024 and parse_quantity_ki("512Mi") == 512 * 1024
