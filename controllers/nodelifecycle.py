"""The node lifecycle controller and the taint eviction controller.

Mirrors pkg/controller/nodelifecycle (monitorNodeHealth, the NoSchedule and
NoExecute tainting passes, MarkPodsNotReady) and pkg/controller/tainteviction
(the former NoExecuteTaintManager), which upstream runs in the same
kube-controller-manager process:

- Every ``--node-monitor-period`` (5 s) each node's health is probed: the
  node is alive while its kubelet either renews its Lease in
  ``kube-node-lease`` or posts a new Ready heartbeat. The probe timestamp is
  the controller's own clock when it *observed* a change (as upstream's
  nodeHealthData), so clock skew between hosts does not matter. A node
  silent for ``--node-monitor-grace-period`` (40 s; ``--node-startup-grace-period``,
  60 s, before its first status) gets its Ready / MemoryPressure /
  DiskPressure / PIDPressure conditions set to Unknown ("Kubelet stopped
  posting node status."), and its pods are marked not Ready.
- Taints follow the Ready condition: False -> ``node.kubernetes.io/not-ready``,
  Unknown -> ``node.kubernetes.io/unreachable``, both NoSchedule and
  NoExecute (the NoExecute one with ``timeAdded``); ``spec.unschedulable`` ->
  ``node.kubernetes.io/unschedulable:NoSchedule``; MemoryPressure / DiskPressure /
  PIDPressure True -> ``node.kubernetes.io/memory-pressure`` (disk-, pid-) NoSchedule
  (TaintNodesByCondition). Ready again removes them.
- Taint eviction: a pod bound to a node with NoExecute taints it does not
  tolerate is deleted at once; one that tolerates them all for
  ``tolerationSeconds`` is deleted that long after the taint was added (the
  DefaultTolerationSeconds admission gives every pod 300 s). Its controller
  then replaces it on a healthy node.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from kubeling.api.scheduling import toleration_tolerates
from kubeling.client import ApiError, Client, Informer, deep_copy
from kubeling.client.record import NORMAL, EventRecorder
from controllers.controller_utils import BaseController, parse_time, rfc3339

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# TaintNodesByCondition: a pressure condition that is True keeps new pods away.
PRESSURE_TAINTS = {"MemoryPressure": "node.kubernetes.io/memory-pressure",
                   "DiskPressure": "node.kubernetes.io/disk-pressure",
                   "PIDPressure": "node.kubernetes.io/pid-pressure"}
MANAGED_TAINTS = (NOT_READY, UNREACHABLE, UNSCHEDULABLE, *PRESSURE_TAINTS.values())
PROBED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

NODE_MONITOR_PERIOD = 5.0
NODE_MONITOR_GRACE_PERIOD = 40.0
NODE_STARTUP_GRACE_PERIOD = 60.0


def node_condition(node: dict, ctype: str) -> dict | None:
    """The node's status condition of ``ctype``, or None."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def wanted_taints(node: dict) -> list[tuple[str, str]]:
    """(key, effect) of the taints this controller wants on ``node`` from its Ready condition and
    spec.unschedulable (doNoScheduleTaintingPass + doNoExecuteTaintingPass)."""
    ready = (node_condition(node, "Ready") or {}).get("status", "Unknown")
    out: list[tuple[str, str]] = []
    if ready == "False":
        out += [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
    elif ready != "True":
        out += [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
    if (node.get("spec") or {}).get("unschedulable"):
        out.append((UNSCHEDULABLE, "NoSchedule"))
    for ctype, key in PRESSURE_TAINTS.items():
        if (node_condition(node, ctype) or {}).get("status") == "True":
            out.append((key, "NoSchedule"))
    return out


def reconcile_taints(node: dict, now: float) -> list[dict] | None:
    """The node's new spec.taints, or None when nothing changes: managed taints added or
    removed, others kept in order; a new NoExecute taint gets ``timeAdded``."""
    current = list((node.get("spec") or {}).get("taints") or [])
    want = wanted_taints(node)
    have = {(t.get("key"), t.get("effect")) for t in current if t.get("key") in MANAGED_TAINTS}
    if have == set(want):
        return None
    kept = [t for t in current if t.get("key") not in MANAGED_TAINTS or (t.get("key"), t.get("effect")) in want]
    for key, effect in want:
        if (key, effect) not in have:
            taint = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = rfc3339(now)
            kept.append(taint)
    return kept


def eviction_time(pod: dict, taints: list[dict], now: float) -> float | None:
    """When ``pod`` must be evicted from a node with NoExecute ``taints``: ``now`` if some taint
    is not tolerated, else the earliest timeAdded + tolerationSeconds over the taints (None
    when every taint is tolerated forever). Mirrors tainteviction's getMinTolerationTime."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    due: float | None = None
    for taint in taints:
        matching = [t for t in tolerations if toleration_tolerates(t, taint)]
        if not matching:
            return now
        seconds = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
        if not seconds:
            continue
        added = parse_time(taint.get("timeAdded")) or now
        at = added + max(0, min(int(s) for s in seconds))
        due = at if due is None else min(due, at)
    return due


@dataclass
class NodeHealth:
    """What was last observed of one node (nodeHealthData): its heartbeat and lease renewal, and
    the controller's clock at the last change of either."""

    probe_timestamp: float
    heartbeat: str | None
    lease_renew: str | None


class NodeLifecycleController(BaseController):
    """Node health monitor, condition- and NoExecute-tainting, and taint-based eviction.

    Work-queue keys are node names (pods on that node are checked for eviction).
    """

    name = "nodelifecycle"

    def __init__(self, client: Client, node_informer: Informer, lease_informer: Informer,
                 pod_informer: Informer, *, recorder: EventRecorder | None = None,
                 clock: Callable[[], float] = time.time, monitor_period: float = NODE_MONITOR_PERIOD,
                 grace_period: float = NODE_MONITOR_GRACE_PERIOD,
                 startup_grace_period: float = NODE_STARTUP_GRACE_PERIOD):
        super().__init__(client, [node_informer, lease_informer, pod_informer])
        self.node_lister = node_informer.lister
        self.lease_lister = lease_informer.lister
        self.pod_lister = pod_informer.lister
        self.recorder = recorder or EventRecorder(client, "node-controller")
        self.clock = clock
        self.monitor_period = monitor_period
        self.grace_period = grace_period
        self.startup_grace_period = startup_grace_period
        self.health: dict[str, NodeHealth] = {}
        node_informer.add_handlers(on_add=lambda n: self.queue.add(n["metadata"]["name"]),
                                   on_update=lambda old, new: self.queue.add(new["metadata"]["name"]),
                                   on_delete=lambda n: self.health.pop(n["metadata"]["name"], None))
        pod_informer.add_handlers(on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new))

    def _pod_changed(self, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not pod["metadata"].get("deletionTimestamp"):
            self.queue.add(node)

    async def run(self, *, workers: int = 1) -> None:
        """Run the eviction workers and the periodic health monitor until cancelled."""
        monitor = asyncio.ensure_future(self._monitor_loop())
        try:
            await super().run(workers=workers)
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    async def _monitor_loop(self) -> None:
        for inf in self.informers:
            await inf.wait_synced()
        while True:
            try:
                await self.monitor_node_health()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node lifecycle: monitoring node health failed; retrying next period")
            await asyncio.sleep(self.monitor_period)

    # -- health ---------------------------------------------------------------------------
    def _probe(self, node: dict, now: float) -> tuple[NodeHealth, bool]:
        """Update the observation of ``node``; returns it and whether the node has ever posted status."""
        name = node["metadata"]["name"]
        ready = node_condition(node, "Ready")
        heartbeat = (ready or {}).get("lastHeartbeatTime")
        lease = self.lease_lister.get(name, LEASE_NAMESPACE)
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        seen = self.health.get(name)
        if seen is None:
            seen = self.health[name] = NodeHealth(now, heartbeat, renew)
        elif seen.heartbeat != heartbeat or seen.lease_renew != renew:
            seen.probe_timestamp, seen.heartbeat, seen.lease_renew = now, heartbeat, renew
        return seen, ready is not None

    async def monitor_node_health(self) -> None:
        """One pass over all nodes (monitorNodeHealth): mark silent nodes Unknown, fix their
        taints, and mark the pods of newly not-ready nodes not Ready. Raises ApiError only
        for unexpected failures (404 / 409 are left to the next pass)."""
        now = self.clock()
        for node in self.node_lister.list():
            name = node["metadata"]["name"]
            health, posted = self._probe(node, now)
            grace = self.grace_period if posted else self.startup_grace_period
            was_ready = (node_condition(node, "Ready") or {}).get("status") == "True"
            try:
                if now > health.probe_timestamp + grace:
                    node = await self._mark_unknown(node, now, posted) or node
                taints = reconcile_taints(node, now)
                if taints is not None:
                    fresh = deep_copy(node)
                    fresh.setdefault("spec", {})["taints"] = taints or None
                    node = await self.client.replace("nodes", fresh)
                    self.queue.add(name)
                if was_ready and (node_condition(node, "Ready") or {}).get("status") != "True":
                    await self._mark_pods_not_ready(node)
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    async def _mark_unknown(self, node: dict, now: float, posted: bool) -> dict | None:
        """Set the probed conditions to Unknown (tryUpdateNodeHealth); the updated node or None if unchanged."""
        status = deep_copy(node.get("status") or {})
        conds = status.setdefault("conditions", [])
        changed = False
        stamp = rfc3339(now)
        for ctype in PROBED_CONDITIONS:
            c = next((c for c in conds if c.get("type") == ctype), None)
            if c is None:
                if ctype != "Ready" and posted:
                    continue
                conds.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status.",
                              "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
                changed = True
            elif c.get("status") != "Unknown":
                c.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                          "message": "Kubelet stopped posting node status.", "lastTransitionTime": stamp})
                changed = True
        if not changed:
            return None
        obj = deep_copy(node)
        obj["status"] = status
        updated = await self.client.replace_status("nodes", obj)
        name = node["metadata"]["name"]
        self.recorder.event({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "uid": name}},
                            NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        log.info("node %s: no heartbeat for %.0fs, conditions set to Unknown", name, now -
                 self.health[name].probe_timestamp)
        return updated

    async def _mark_pods_not_ready(self, node: dict) -> None:
        """Set the Ready condition of the node's pods to False (MarkPodsNotReady)."""
        name = node["metadata"]["name"]
        for pod in self.pod_lister.list(None, match=lambda p: (p.get("spec") or {}).get("nodeName") == name):
            conds = (pod.get("status") or {}).get("conditions") or []
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            new = [dict(c, status="False", lastTransitionTime=rfc3339(self.clock())) if c.get("type") == "Ready"
                   else c for c in conds]
            try:
                await self.client.patch("pods", pod["metadata"]["name"], {"status": {"conditions": new}},
                                        namespace=pod["metadata"].get("namespace"), subresource="status")
            except ApiError as e:
                if e.code != 404:
                    raise
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    # -- eviction -------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        """Evict the pods of node ``key`` whose NoExecute toleration ran out; requeue for the next one due."""
        node = self.node_lister.get(key)
        if node is None:
            return
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        now = self.clock()
        next_due: float | None = None
        for pod in self.pod_lister.list(None, match=lambda p: (p.get("spec") or {}).get("nodeName") == key):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            due = eviction_time(pod, taints, now)
            if due is None:
                continue
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            await self._evict(pod)
        if next_due is not None:
            self.queue.add_after(key, max(0.05, next_due - now))

    async def _evict(self, pod: dict) -> None:
        """Add the DisruptionTarget condition, then delete the pod (tainteviction's deletePodHandler)."""
        meta = pod["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        self.recorder.event(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        stamp = rfc3339(self.clock())
        conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conds.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                      "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": stamp})
        try:
            await self.client.patch("pods", name, {"status": {"conditions": conds}}, namespace=ns,
                                    subresource="status")
            await self.client.delete("pods", name, namespace=ns)
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("evicted pod %s/%s from node %s (NoExecute taint)", ns, name, (pod.get("spec") or {}).get("nodeName"))
