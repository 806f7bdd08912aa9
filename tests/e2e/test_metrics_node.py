"""/metrics of a real kubelet (with its CRI shim over Docker) and its logfmt logs (issue 9).

Needs root and a running Docker with busybox:1.35. Test-only names: node
"mtest-node", bridge "mtestkl0", pod CIDR 10.244.238.0/24. Processes are
stopped by PID, containers removed by the shim's node label and the bridge
deleted by support.node, whatever happens.
"""
from __future__ import annotations


import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import support
from kubeling import klog

NODE = "mtest-node"
BRIDGE = "mtestkl0"
POD_CIDR = "10.244.238.0/24"
IMAGE = "busybox:1.35"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    docker_client = support.node_or_skip("kubelet metrics e2e tests", IMAGE)
    with support.node(tmp_path_factory.mktemp("metrics-node"), name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR,
                      docker_client=docker_client, image=IMAGE) as n:
        yield n


def scrape(url: str) -> list:
    r = httpx.get(f"{url}/metrics", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    return [s for fam in text_string_to_metric_families(r.text) for s in fam.samples]


def value(samples, metric: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()))


def test_kubelet_metrics_after_a_pod_starts(node):
    http = node.http
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "metrics-web", "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": IMAGE, "command": ["sleep", "300"]}]}}
    r = http.post("/api/v1/namespaces/default/pods", json=pod)
    assert r.status_code == 201, r.text
    try:
        support.wait_for("pod Running", lambda: http.get("/api/v1/namespaces/default/pods/metrics-web")
                         .json().get("status", {}).get("phase") == "Running", 60, 0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{node.logs()}") from None

    def started():
        # The pod start is observed by the sync that reports Running; the container count reads the
        # PLEG's last relist, up to one relist period (1 s) later.
        s = scrape(node.kubelet)
        return s if value(s, "kubelet_pod_start_duration_seconds_count") >= 1 and \
            value(s, "kubelet_running_containers", container_state="running") >= 1 else None
    samples = support.wait_for("kubelet counted the start and the container", started, 20, 0.5)
    assert value(samples, "kubelet_pleg_relist_duration_seconds_count") >= 1
    assert value(samples, "kubelet_pleg_relist_interval_seconds_count") >= 1
    assert value(samples, "kubelet_pleg_last_seen_seconds") > 0
    assert value(samples, "kubelet_pod_worker_duration_seconds_count") >= 1
    host = node.api.removeprefix("http://")
    assert value(samples, "rest_client_requests_total", host=host) >= 1
    http.delete("/api/v1/namespaces/default/pods/metrics-web")


def test_kubelet_and_shim_logs_are_logfmt(node):
    for name, component in (("kubelet", "kubelet"), ("shim", "dockershim")):
        rows = [l for l in node.procs.log(name, 200_000).splitlines() if l.strip()]
        assert rows, f"{name} logged nothing"
        bad = [l for l in rows if not ({"ts", "level", "component", "logger", "msg"} <= klog.parse(l).keys())]
        assert not bad, f"{name}: lines not in logfmt: {bad[:3]}"
        assert {klog.parse(l)["component"] for l in rows} <= {component, "cni-server"}  # the shim's CNI helper
