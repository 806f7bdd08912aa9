"""The pod garbage collector.

Mirrors pkg/controller/podgc/gc_controller.go, one pass every 20 s
(gcCheckPeriod):

- terminated pods (Succeeded / Failed) beyond ``--terminated-pod-gc-threshold``
  (12,500) are deleted, oldest first (gcTerminated);
- pods bound to a node that no longer exists are force-deleted once the
  node's absence is confirmed by a GET, after a 40 s quarantine
  (gcOrphaned), with the DisruptionTarget condition reason DeletionByPodGC;
- terminating pods never bound to a node are force-deleted
  (gcUnscheduledTerminating): no kubelet will ever finish them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer
from controllers.controller_utils import BaseController, parse_time, rfc3339

log = logging.getLogger(__name__)

GC_CHECK_PERIOD = 20.0
QUARANTINE = 40.0
TERMINATED_POD_GC_THRESHOLD = 12500


def terminated_to_delete(pods: list[dict], threshold: int) -> list[dict]:
    """The terminated pods over ``threshold``, oldest (by creationTimestamp) first; none if threshold <= 0."""
    done = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]
    if threshold <= 0 or len(done) <= threshold:
        return []
    done.sort(key=lambda p: (parse_time(p["metadata"].get("creationTimestamp")) or 0.0, p["metadata"]["name"]))
    return done[:len(done) - threshold]


class PodGCController(BaseController):
    """Periodic pod collector (no work queue: one pass per period)."""

    name = "podgc"

    def __init__(self, client: Client, pod_informer: Informer, node_informer: Informer, *,
                 threshold: int = TERMINATED_POD_GC_THRESHOLD, period: float = GC_CHECK_PERIOD,
                 quarantine: float = QUARANTINE, clock: Callable[[], float] = time.monotonic):
        super().__init__(client, [pod_informer, node_informer])
        self.pod_lister = pod_informer.lister
        self.node_lister = node_informer.lister
        self.threshold = threshold
        self.period = period
        self.quarantine = quarantine
        self.clock = clock
        self.missing_since: dict[str, float] = {}

    async def run(self, *, workers: int = 1) -> None:
        """Wait for the caches, then collect every ``period`` seconds until cancelled."""
        for inf in self.informers:
            await inf.wait_synced()
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod gc pass failed; retrying next period")
            await asyncio.sleep(self.period)

    async def gc(self) -> None:
        """One pass: terminated over threshold, orphaned, unscheduled terminating. Raises ApiError
        for unexpected failures (404 means already gone)."""
        pods = self.pod_lister.list()
        for pod in terminated_to_delete(pods, self.threshold):
            await self._delete(pod, force=False, reason="terminated pod over the threshold")
        now = self.clock()
        nodes = {pod["spec"].get("nodeName") for pod in pods if (pod.get("spec") or {}).get("nodeName")}
        for name in list(self.missing_since):
            if name not in nodes or self.node_lister.get(name) is not None:
                del self.missing_since[name]
        for name in nodes:
            if self.node_lister.get(name) is None:
                self.missing_since.setdefault(name, now)
        for pod in pods:
            spec, meta = pod.get("spec") or {}, pod["metadata"]
            node = spec.get("nodeName")
            if node and node in self.missing_since and now - self.missing_since[node] >= self.quarantine:
                if await self._node_gone(node):
                    await self._mark_disrupted(pod, "DeletionByPodGC", "PodGC: node no longer exists")
                    await self._delete(pod, force=True, reason=f"bound to node {node} which does not exist")
            elif not node and meta.get("deletionTimestamp"):
                await self._delete(pod, force=True, reason="terminating and never scheduled")

    async def _node_gone(self, name: str) -> bool:
        try:
            await self.client.get("nodes", name)
            return False
        except ApiError as e:
            if e.code == 404:
                return True
            raise

    async def _mark_disrupted(self, pod: dict, reason: str, message: str) -> None:
        conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conds.append({"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
                      "lastTransitionTime": rfc3339(time.time())})
        try:
            await self.client.patch("pods", pod["metadata"]["name"], {"status": {"conditions": conds}},
                                    namespace=pod["metadata"].get("namespace"), subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise

    async def _delete(self, pod: dict, *, force: bool, reason: str) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], namespace=meta.get("namespace"),
                                     grace_period_seconds=0 if force else None)
            log.info("pod gc: deleted %s/%s (%s)", meta.get("namespace"), meta["name"], reason)
        except ApiError as e:
            if e.code != 404:
                raise
