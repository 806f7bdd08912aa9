"""The kubelet's resource metrics: the Summary API (/stats/summary) and /metrics/resource.

The apiserver's metrics.k8s.io (what ``kubectl top`` reads) is built from
these. Container figures come from the runtime over CRI ListContainerStats
(the shim reads the cgroup v1 files, so the kubelet does not read them a
second time); node figures from /proc/stat and /proc/meminfo. CPU rates
(usageNanoCores) need two cumulative samples, so the provider keeps the
previous sample per container and for the node. Mirrors
pkg/kubelet/server/stats (summary.go, the Summary/NodeStats/PodStats/
ContainerStats shapes of k8s.io/kubelet/pkg/apis/stats/v1alpha1) and
pkg/kubelet/metrics/collectors/resource_metrics.go.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Callable

from kubelet.container import CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL
from proto.cri import api_pb2 as pb

log = logging.getLogger(__name__)

USER_HZ = 100  # /proc/stat ticks per second (sysconf(_SC_CLK_TCK) on Linux)
# With no earlier sample the provider waits this long and samples again, so the
# first answer already carries a rate (metrics-server would skip the point instead).
FIRST_SAMPLE_GAP = 0.25


def rfc3339(ns: int) -> str:
    """A time in ns since the epoch as RFC3339 UTC with second precision (``2026-01-01T00:00:00Z``)."""
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_proc_stat(path: str = "/proc/stat") -> int:
    """Cumulative busy CPU time of the node in ns (all cpus; user+nice+system+irq+softirq+steal).
    Raises OSError/ValueError if the file is unreadable."""
    with open(path) as f:
        fields = f.readline().split()
    if not fields or fields[0] != "cpu":
        raise ValueError(f"{path}: no aggregate cpu line")
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # guest time is already inside user/nice
    return busy * (1_000_000_000 // USER_HZ)


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo as bytes: {"MemTotal": ..., "MemAvailable": ..., ...}."""
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            parts = v.split()
            if parts and parts[0].isdigit():
                out[k.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def node_memory(info: dict[str, int]) -> dict:
    """The node's MemoryStats (bytes) from meminfo, as cadvisor's machine root cgroup approximates them:
    usageBytes = total - free, workingSetBytes = total - available."""
    total = info.get("MemTotal", 0)
    avail = info.get("MemAvailable", info.get("MemFree", 0))
    return {"availableBytes": avail, "usageBytes": total - info.get("MemFree", 0),
            "workingSetBytes": total - avail,
            "rssBytes": max(0, total - info.get("MemFree", 0) - info.get("Buffers", 0) - info.get("Cached", 0)),
            "pageFaults": 0, "majorPageFaults": 0}


def rate(prev: tuple[int, int] | None, cur: tuple[int, int]) -> int | None:
    """usageNanoCores between two (time ns, cumulative cpu ns) samples; None without a usable earlier one."""
    if prev is None or cur[0] <= prev[0] or cur[1] < prev[1]:
        return None
    return int((cur[1] - prev[1]) * 1e9 / (cur[0] - prev[0]))


class SummaryProvider:
    """Builds the Summary (stats/v1alpha1) of this node.

    ``runtime`` is the kubelet's RemoteRuntime (CRI client); ``pods`` returns
    the pods bound to this node (API objects, for start times). ``summary()``
    returns {"node": NodeStats, "pods": [PodStats]} with cpu in ns / nanocores
    and memory in bytes; raises CRIError if the runtime does not answer.
    """

    def __init__(self, runtime, *, node_name: str, pods: Callable[[], list[dict]],
                 proc_stat: str = "/proc/stat", meminfo: str = "/proc/meminfo") -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.pods = pods
        self.proc_stat = proc_stat
        self.meminfo = meminfo
        self.start_ns = time.time_ns()
        self._prev: dict[str, tuple[int, int]] = {}  # container id or "" (node) -> (time ns, cpu ns)
        self._lock = asyncio.Lock()

    async def _sample(self) -> tuple[list[pb.ContainerStats], tuple[int, int]]:
        stats = await self.runtime.list_container_stats()
        node_cpu = await asyncio.to_thread(read_proc_stat, self.proc_stat)
        return stats, (time.time_ns(), node_cpu)

    async def summary(self) -> dict:
        """The Summary: {"node": {...}, "pods": [{"podRef", "startTime", "containers", "cpu", "memory"}]}."""
        async with self._lock:  # one sampler at a time keeps the previous samples coherent
            stats, node_cpu = await self._sample()
            if "" not in self._prev or any(s.attributes.id not in self._prev for s in stats):
                self._remember(stats, node_cpu)
                await asyncio.sleep(FIRST_SAMPLE_GAP)
                stats, node_cpu = await self._sample()
            out = self._build(stats, node_cpu, await asyncio.to_thread(read_meminfo, self.meminfo))
            self._remember(stats, node_cpu, forget_others=True)
            return out

    def _remember(self, stats: list[pb.ContainerStats], node_cpu: tuple[int, int], *,
                  forget_others: bool = False) -> None:
        if forget_others:
            self._prev = {}
        self._prev[""] = node_cpu
        for s in stats:
            if s.HasField("cpu"):
                self._prev[s.attributes.id] = (s.cpu.timestamp, s.cpu.usage_core_nano_seconds.value)

    def _build(self, stats: list[pb.ContainerStats], node_cpu: tuple[int, int], meminfo: dict) -> dict:
        now = rfc3339(node_cpu[0])
        node = {"nodeName": self.node_name, "startTime": rfc3339(self.start_ns),
                "cpu": {"time": now, "usageCoreNanoSeconds": node_cpu[1]},
                "memory": {"time": now, **node_memory(meminfo)}}
        node_rate = rate(self._prev.get(""), node_cpu)
        if node_rate is not None:
            node["cpu"]["usageNanoCores"] = node_rate
        known = {(p["metadata"].get("namespace", "default"), p["metadata"]["name"]): p for p in self.pods()}
        pods: dict[str, dict] = {}
        for s in stats:
            labels = s.attributes.labels
            ns, name, uid = (labels.get(POD_NAMESPACE_LABEL), labels.get(POD_NAME_LABEL),
                             labels.get(POD_UID_LABEL, ""))
            if not ns or not name:
                continue
            pod_obj = known.get((ns, name)) or {}
            start = (pod_obj.get("status") or {}).get("startTime") or now
            ps = pods.setdefault(uid or f"{ns}/{name}", {
                "podRef": {"name": name, "namespace": ns, "uid": uid}, "startTime": start, "containers": [],
                "cpu": {"time": now, "usageNanoCores": 0, "usageCoreNanoSeconds": 0},
                "memory": {"time": now, "usageBytes": 0, "workingSetBytes": 0}})
            c = {"name": labels.get(CONTAINER_NAME_LABEL) or s.attributes.metadata.name, "startTime": start}
            if s.HasField("cpu"):
                cur = (s.cpu.timestamp, s.cpu.usage_core_nano_seconds.value)
                c["cpu"] = {"time": rfc3339(cur[0]), "usageCoreNanoSeconds": cur[1]}
                r = rate(self._prev.get(s.attributes.id), cur)
                if r is not None:
                    c["cpu"]["usageNanoCores"] = r
                ps["cpu"]["usageCoreNanoSeconds"] += cur[1]
                ps["cpu"]["usageNanoCores"] += r or 0
            if s.HasField("memory"):
                c["memory"] = {"time": rfc3339(s.memory.timestamp), "usageBytes": s.memory.usage_bytes.value,
                               "workingSetBytes": s.memory.working_set_bytes.value}
                ps["memory"]["usageBytes"] += s.memory.usage_bytes.value
                ps["memory"]["workingSetBytes"] += s.memory.working_set_bytes.value
            ps["containers"].append(c)
        return {"node": node, "pods": sorted(pods.values(),
                                             key=lambda p: (p["podRef"]["namespace"], p["podRef"]["name"]))}


def resource_metrics(summary: dict) -> str:
    """/metrics/resource: the Summary as Prometheus text (node_/pod_/container_ cpu_usage_seconds_total and
    memory_working_set_bytes, with ms timestamps), as the kubelet's resource metrics collector."""
    def ts(t: str) -> int:
        return int(datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ")
                   .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)

    def lbl(**kv) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}" if kv else ""

    lines: dict[str, list[str]] = {
        "container_cpu_usage_seconds_total": [], "container_memory_working_set_bytes": [],
        "node_cpu_usage_seconds_total": [], "node_memory_working_set_bytes": [],
        "pod_cpu_usage_seconds_total": [], "pod_memory_working_set_bytes": []}
    node = summary["node"]
    lines["node_cpu_usage_seconds_total"].append(
        f"node_cpu_usage_seconds_total {node['cpu']['usageCoreNanoSeconds'] / 1e9} {ts(node['cpu']['time'])}")
    lines["node_memory_working_set_bytes"].append(
        f"node_memory_working_set_bytes {node['memory']['workingSetBytes']} {ts(node['memory']['time'])}")
    for p in summary["pods"]:
        ref = p["podRef"]
        lines["pod_cpu_usage_seconds_total"].append(
            f"pod_cpu_usage_seconds_total{lbl(namespace=ref['namespace'], pod=ref['name'])} "
            f"{p['cpu']['usageCoreNanoSeconds'] / 1e9} {ts(p['cpu']['time'])}")
        lines["pod_memory_working_set_bytes"].append(
            f"pod_memory_working_set_bytes{lbl(namespace=ref['namespace'], pod=ref['name'])} "
            f"{p['memory']['workingSetBytes']} {ts(p['memory']['time'])}")
        for c in p["containers"]:
            labels = lbl(container=c["name"], namespace=ref["namespace"], pod=ref["name"])
            if "cpu" in c:
                lines["container_cpu_usage_seconds_total"].append(
                    f"container_cpu_usage_seconds_total{labels} {c['cpu']['usageCoreNanoSeconds'] / 1e9} "
                    f"{ts(c['cpu']['time'])}")
            if "memory" in c:
                lines["container_memory_working_set_bytes"].append(
                    f"container_memory_working_set_bytes{labels} {c['memory']['workingSetBytes']} "
                    f"{ts(c['memory']['time'])}")
    help_ = {"cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed in core-seconds"),
             "memory_working_set_bytes": ("gauge", "Current working set in bytes")}
    out = []
    for name, rows in lines.items():
        kind, text = next(v for k, v in help_.items() if name.endswith(k))
        out += [f"# HELP {name} [ALPHA] {text}", f"# TYPE {name} {kind}", *rows]
    out += ["# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
            "# TYPE scrape_error gauge", "scrape_error 0"]
    return "\n".join(out) + "\n"
