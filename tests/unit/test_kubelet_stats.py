"""kubelet/stats.py (Summary API from CRI stats and /proc) and apiserver/metrics_api.py (metrics.k8s.io shapes)."""
from __future__ import annotations

import pytest

from apiserver import metrics_api
from kubelet import stats
from kubelet.container import CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL
from proto.cri import api_pb2 as pb


def test_rate_needs_an_earlier_sample():
    assert stats.rate(None, (10, 5)) is None
    assert stats.rate((10, 5), (10, 9)) is None  # same instant
    assert stats.rate((0, 0), (1_000_000_000, 250_000_000)) == 250_000_000  # a quarter core
    assert stats.rate((0, 100), (1_000_000_000, 50)) is None  # counter went back (container restarted)


def test_proc_parsers(tmp_path):
    (tmp_path / "stat").write_text("cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 1 2 3 4\n")
    assert stats.read_proc_stat(str(tmp_path / "stat")) == 160 * 10_000_000  # busy ticks at USER_HZ=100
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\n"
                                      "Buffers: 50 kB\nCached: 100 kB\nHugePages_Total: 0\n")
    m = stats.node_memory(stats.read_meminfo(str(tmp_path / "meminfo")))
    assert m["workingSetBytes"] == 400 * 1024 and m["usageBytes"] == 800 * 1024
    assert m["availableBytes"] == 600 * 1024 and m["rssBytes"] == 650 * 1024
    (tmp_path / "bad").write_text("intr 1 2 3\n")
    with pytest.raises(ValueError):
        stats.read_proc_stat(str(tmp_path / "bad"))


class FakeRuntime:
    """Answers ListContainerStats with a cumulative cpu that grows 0.1 core per second of fake clock."""

    def __init__(self):
        self.calls = 0

    async def list_container_stats(self):
        self.calls += 1
        s = pb.ContainerStats()
        s.attributes.id = "c1"
        s.attributes.metadata.name = "app"
        s.attributes.labels.update({POD_NAME_LABEL: "web", POD_NAMESPACE_LABEL: "default", POD_UID_LABEL: "u1",
                                    CONTAINER_NAME_LABEL: "app"})
        s.cpu.timestamp = self.calls * 1_000_000_000
        s.cpu.usage_core_nano_seconds.value = self.calls * 100_000_000
        s.memory.timestamp = s.cpu.timestamp
        s.memory.usage_bytes.value = 3 << 20
        s.memory.working_set_bytes.value = 2 << 20
        return [s]


async def test_summary_samples_twice_first_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "FIRST_SAMPLE_GAP", 0)
    (tmp_path / "stat").write_text("cpu  100 0 50 1000 20 5 5 0 0 0\n")
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\n")
    rt = FakeRuntime()
    pods = [{"metadata": {"name": "web", "namespace": "default"}, "status": {"startTime": "2026-01-01T00:00:00Z"}}]
    p = stats.SummaryProvider(rt, node_name="n1", pods=lambda: pods, proc_stat=str(tmp_path / "stat"),
                              meminfo=str(tmp_path / "meminfo"))
    s = await p.summary()
    assert rt.calls == 2  # no previous sample: two samples in one call
    assert s["node"]["nodeName"] == "n1" and s["node"]["cpu"]["usageNanoCores"] == 0
    (pod,) = s["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": "u1"}
    assert pod["startTime"] == "2026-01-01T00:00:00Z"
    (c,) = pod["containers"]
    assert c["name"] == "app" and c["cpu"]["usageNanoCores"] == 100_000_000
    assert c["memory"] == {"time": c["memory"]["time"], "usageBytes": 3 << 20, "workingSetBytes": 2 << 20}
    assert pod["memory"]["workingSetBytes"] == 2 << 20 and pod["cpu"]["usageNanoCores"] == 100_000_000
    await p.summary()
    assert rt.calls == 3  # the previous sample is kept
    text = stats.resource_metrics(s)
    assert 'container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 0.2 ' in text
    assert 'pod_memory_working_set_bytes{namespace="default",pod="web"} 2097152 ' in text
    assert "# TYPE node_cpu_usage_seconds_total counter" in text and text.endswith("scrape_error 0\n")


@pytest.mark.parametrize("nanocores,want", [(0, "0"), (12_000_000, "12m"), (2_000_000_000, "2"),
                                             (1_500, "1500n"), (12_345_000, "12345u")])
def test_cpu_quantity(nanocores, want):
    assert metrics_api.cpu_quantity(nanocores) == want


@pytest.mark.parametrize("n,want", [(0, "0"), (34 << 20, "34Mi"), (1234 * 1024, "1234Ki"), (1 << 30, "1Gi"),
                                     (1000, "1000")])
def test_memory_quantity(n, want):
    assert metrics_api.memory_quantity(n) == want


def test_node_and_pod_metrics_shapes():
    node = {"metadata": {"name": "n1", "labels": {"a": "b"}},
            "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}}
    assert metrics_api.kubelet_base_url(node) == "http://10.0.0.5:12345"
    assert metrics_api.kubelet_base_url({"metadata": {}, "status": {}}) is None
    summary = {"node": {"cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 12_000_000},
                        "memory": {"workingSetBytes": 34 << 20}}}
    m = metrics_api.node_metrics(node, summary, window="1s")
    assert m["kind"] == "NodeMetrics" and m["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert m["usage"] == {"cpu": "12m", "memory": "34Mi"} and m["metadata"]["labels"] == {"a": "b"}
    assert m["timestamp"] == "2026-01-01T00:00:00Z" and m["window"] == "1s"
    assert metrics_api.node_metrics(node, {"node": {"cpu": {}, "memory": {}}}, window="1s") is None
    pod = {"metadata": {"name": "web", "namespace": "default"}}
    ps = {"containers": [{"name": "b", "cpu": {"usageNanoCores": 1_000_000}, "memory": {"workingSetBytes": 1 << 20}},
                         {"name": "a", "cpu": {"usageNanoCores": 0}, "memory": {"workingSetBytes": 0}}]}
    pm = metrics_api.pod_metrics(pod, ps, window="1s")
    assert [c["name"] for c in pm["containers"]] == ["a", "b"]
    assert pm["containers"][1]["usage"] == {"cpu": "1m", "memory": "1Mi"}
    assert metrics_api.pod_metrics(pod, {"containers": [{"name": "a", "cpu": {}}]}, window="1s") is None
