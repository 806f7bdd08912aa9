"""Kubelet metrics under upstream's names (pkg/kubelet/metrics) that need more than a counter at a call site.

Why a module of its own: the PLEG relist timings and pod start durations are
recorded by one-line hooks in the PLEG and the kubelet's sync, while the
container counts are read from the PLEG's last relist when /metrics is
scraped, so nothing is recomputed between scrapes. The kubelet's older
metrics (kubelet_pod_worker_duration_seconds, kubelet_running_pods,
kubelet_pleg_events_total) stay where they are, in kubelet/kubelet.py.
"""
from __future__ import annotations

import time

import prometheus_client
from prometheus_client.core import GaugeMetricFamily

from kubeling.metrics import Watched
from proto.cri import api_pb2 as pb

# prometheus' DefBuckets, which upstream uses for the PLEG histograms.
DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# upstream's PodStartDuration buckets (seconds).
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                     1800, 2700, 3600)

PLEG_RELIST_DURATION = prometheus_client.Histogram(
    "kubelet_pleg_relist_duration_seconds", "Duration in seconds for relisting pods in PLEG.", buckets=DEF_BUCKETS)
PLEG_RELIST_INTERVAL = prometheus_client.Histogram(
    "kubelet_pleg_relist_interval_seconds", "Interval in seconds between relisting in PLEG.", buckets=DEF_BUCKETS)
PLEG_LAST_SEEN = prometheus_client.Gauge(
    "kubelet_pleg_last_seen_seconds", "Timestamp in seconds when PLEG was last seen active.")
POD_START_DURATION = prometheus_client.Histogram(
    "kubelet_pod_start_duration_seconds", "Duration in seconds from kubelet seeing a pod for the first time to "
    "the pod starting to run", buckets=POD_START_BUCKETS)

_CONTAINER_STATES = {pb.CONTAINER_CREATED: "created", pb.CONTAINER_RUNNING: "running",
                     pb.CONTAINER_EXITED: "exited", pb.CONTAINER_UNKNOWN: "unknown"}


class PodStartTracker:
    """Records kubelet_pod_start_duration_seconds: ``seen(pod)`` when the kubelet first learns of a pod,
    ``running(uid)`` each time it reports the pod Running (only the first one after ``seen`` observes),
    ``forget(uid)`` when the pod goes away. Times are ``time.monotonic()`` seconds."""

    def __init__(self) -> None:
        self._first_seen: dict[str, float] = {}
        self._started: set[str] = set()

    def seen(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        if uid in self._first_seen or uid in self._started:
            return
        if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed"):
            self._started.add(uid)  # started before this kubelet knew it (a kubelet restart): not a start
            return
        self._first_seen[uid] = time.monotonic()

    def running(self, uid: str) -> None:
        t = self._first_seen.pop(uid, None)
        if t is not None:
            self._started.add(uid)
            POD_START_DURATION.observe(time.monotonic() - t)

    def forget(self, uid: str) -> None:
        self._first_seen.pop(uid, None)
        self._started.discard(uid)


def _running_containers(plegs: list):
    """kubelet_running_containers{container_state}: the containers of every watched PLEG's last
    relist by CRI state (created, running, exited, unknown), as upstream's gauge."""
    fam = GaugeMetricFamily("kubelet_running_containers", "Number of containers currently running",
                            labels=["container_state"])
    counts = dict.fromkeys(_CONTAINER_STATES.values(), 0)
    for pleg in plegs:
        for pod in list(pleg.pods.values()):
            for c in pod.containers:
                counts[_CONTAINER_STATES.get(c.state, "unknown")] += 1
    for state, n in counts.items():
        fam.add_metric([state], n)
    return [fam]


_PLEGS = Watched(_running_containers)


def watch_pleg(pleg) -> None:
    """Count the containers of ``pleg``'s (a GenericPLEG) last relist in kubelet_running_containers."""
    _PLEGS.add(pleg)


class RelistTimer:
    """Times one PLEG relist: ``start()`` before listing (observes the interval since the previous
    start), ``done()`` after a successful one (observes the duration, stamps last seen)."""

    def __init__(self) -> None:
        self._last_start: float | None = None
        self._start = 0.0

    def start(self) -> None:
        now = time.monotonic()
        if self._last_start is not None:
            PLEG_RELIST_INTERVAL.observe(now - self._last_start)
        self._last_start = self._start = now

    def done(self) -> None:
        PLEG_RELIST_DURATION.observe(time.monotonic() - self._start)
        PLEG_LAST_SEEN.set(time.time())
