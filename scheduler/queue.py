"""The scheduling queue: which pending pod the scheduler tries next.

Mirrors kube-scheduler's PriorityQueue (pkg/scheduler/internal/queue):
- activeQ: pods ready to be tried, highest spec.priority first, then FIFO;
- backoffQ: pods that failed recently, each waiting 1 s doubling to 10 s;
- unschedulablePods: pods no node could take; they go back to activeQ (or
  backoffQ while their backoff lasts) when the cluster changes in a way that
  may help (a node added or updated, an assigned pod deleted), or after
  five minutes at the latest.
A pod remembers which plugins rejected it (upstream's UnschedulablePlugins)
and an event moves it only if one of those plugins registered for that event
(upstream's EventsToRegister, simplified from queueing hints): a pod rejected
only by NodeAffinity stays put when an assigned pod is deleted. A pod that
failed while a cluster change happened during its scheduling cycle goes
straight to backoffQ (upstream's moveRequestCycle), so the change is not lost.

The clock is injected (``clock=``) so tests drive time by hand.
"""
from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import time
from typing import Callable

import prometheus_client

from kubeling.client import meta_key

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
# Upstream's podMaxInUnschedulablePodsDuration.
DEFAULT_MAX_IN_UNSCHEDULABLE = 300.0

INCOMING_PODS = prometheus_client.Counter(
    "scheduler_queue_incoming_pods_total",
    "Number of pods added to scheduling queues by event and queue type.", ["queue", "event"])

# Cluster events -> the plugins whose verdict they may change (each plugin's
# EventsToRegister upstream). None: any plugin.
NODE_ADD = "NodeAdd"
NODE_UPDATE = "NodeUpdate"
ASSIGNED_POD_ADD = "AssignedPodAdd"
ASSIGNED_POD_UPDATE = "AssignedPodUpdate"
ASSIGNED_POD_DELETE = "AssignedPodDelete"
EVENT_PLUGINS: dict[str, frozenset[str] | None] = {
    NODE_ADD: None,
    NODE_UPDATE: None,
    ASSIGNED_POD_ADD: frozenset({"InterPodAffinity"}),
    ASSIGNED_POD_UPDATE: frozenset({"InterPodAffinity"}),
    ASSIGNED_POD_DELETE: frozenset({"NodeResourcesFit", "NodePorts", "InterPodAffinity", "DefaultPreemption"}),
}


def node_update_plugins(old: dict, new: dict) -> frozenset[str]:
    """Plugins whose verdict a Node update may turn into a fit (upstream's
    NodeLabel / NodeTaint / NodeAllocatable / NodeSpecUnschedulable / NodeCondition
    action types); empty when nothing scheduling-relevant changed (heartbeats)."""
    def part(node, *path):
        for k in path:
            node = (node or {}).get(k)
        return node

    def ready(node):
        return [c.get("status") for c in part(node, "status", "conditions") or [] if c.get("type") == "Ready"]

    plugins: set[str] = set()
    if part(old, "metadata", "labels") != part(new, "metadata", "labels"):
        plugins |= {"NodeAffinity", "InterPodAffinity"}
    if part(old, "spec", "taints") != part(new, "spec", "taints"):
        plugins.add("TaintToleration")
    if part(old, "spec", "unschedulable") != part(new, "spec", "unschedulable"):
        plugins.add("NodeUnschedulable")
    if part(old, "status", "allocatable") != part(new, "status", "allocatable"):
        plugins.add("NodeResourcesFit")
    if ready(old) != ready(new):
        plugins.add("NodeReady")
    return frozenset(plugins)


@dataclasses.dataclass
class QueuedPodInfo:
    """A pod in the queue: ``timestamp`` is when it was (re)queued, ``attempts``
    how many times it has been popped, ``initial_attempt`` when first popped,
    ``unschedulable_plugins`` which plugins rejected it last time (empty: unknown)."""

    pod: dict
    timestamp: float
    attempts: int = 0
    initial_attempt: float | None = None
    unschedulable_plugins: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """The pod's ``namespace/name`` key."""
        return meta_key(self.pod)

    @property
    def priority(self) -> int:
        """The pod's ``spec.priority`` (0 when unset); higher pops first."""
        return int((self.pod.get("spec") or {}).get("priority") or 0)


class SchedulingQueue:
    """Active / backoff / unschedulable pods, keyed by ``namespace/name``.

    ``await pop()`` waits for the next active pod. All other methods are
    synchronous and called from informer handlers or the scheduling loop.
    ``await run()`` moves pods out of backoff and out of a long stay in
    unschedulable until cancelled.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = DEFAULT_INITIAL_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF,
                 max_in_unschedulable: float = DEFAULT_MAX_IN_UNSCHEDULABLE):
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self._active: dict[str, QueuedPodInfo] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []
        self._backoff: dict[str, QueuedPodInfo] = {}
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False
        # The nominator: pending pods that preempted, by the node they wait for.
        self._nominated: dict[str, dict[str, dict]] = {}
        self._nominated_node: dict[str, str] = {}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1

    # -- inspection (tests, metrics) -------------------------------------------------
    def pending(self) -> dict[str, list[str]]:
        """Keys per sub-queue: ``{"active": [...], "backoff": [...], "unschedulable": [...]}``."""
        return {"active": sorted(self._active), "backoff": sorted(self._backoff),
                "unschedulable": sorted(self._unschedulable)}

    def pending_counts(self) -> dict[str, int]:
        """Sizes of the sub-queues, cheap enough to call per pop (for the scheduler_pending_pods gauge)."""
        return {"active": len(self._active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable)}

    def __contains__(self, key: str) -> bool:
        return key in self._active or key in self._backoff or key in self._unschedulable

    # -- active queue ---------------------------------------------------------------
    def _push_active(self, pinfo: QueuedPodInfo) -> None:
        key = pinfo.key
        self._active[key] = pinfo
        heapq.heappush(self._active_heap, (-pinfo.priority, pinfo.timestamp, next(self._seq), key))
        self._wakeup.set()

    # -- the nominator (upstream's PodNominator) -------------------------------------------
    def nominate(self, pod: dict, node_name: str | None = None) -> None:
        """Record that ``pod`` waits for ``node_name`` (default: its status.nominatedNodeName;
        empty: forget the nomination)."""
        key = meta_key(pod)
        if node_name is None:
            node_name = (pod.get("status") or {}).get("nominatedNodeName") or ""
        old = self._nominated_node.pop(key, None)
        if old is not None:
            self._nominated.get(old, {}).pop(key, None)
            if not self._nominated.get(old):
                self._nominated.pop(old, None)
        if node_name:
            self._nominated_node[key] = node_name
            self._nominated.setdefault(node_name, {})[key] = pod

    def has_nominated_pods(self) -> bool:
        """Whether any pending pod is nominated (if not, filters need not ask per node)."""
        return bool(self._nominated)

    def nominated_pods_for_node(self, node_name: str) -> list[dict]:
        """Pending pods nominated to ``node_name`` (they will take the room preemption made)."""
        return list(self._nominated.get(node_name, {}).values())

    def add(self, pod: dict) -> None:
        """A new pending pod: straight to activeQ (removing stale copies elsewhere)."""
        key = meta_key(pod)
        if key in self._nominated_node or (pod.get("status") or {}).get("nominatedNodeName"):
            self.nominate(pod)
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        if key in self._active:
            self._active[key].pod = pod
            return
        self._push_active(QueuedPodInfo(pod, self.clock()))
        INCOMING_PODS.labels("active", "PodAdd").inc()

    async def pop(self) -> QueuedPodInfo:
        """Wait for and remove the highest-priority, oldest active pod; starts a
        new scheduling cycle. Raises asyncio.CancelledError when closed."""
        while True:
            while self._active_heap:
                _, _, _, key = heapq.heappop(self._active_heap)
                pinfo = self._active.pop(key, None)
                if pinfo is None:
                    continue  # a stale heap entry of a deleted or re-added pod
                self.scheduling_cycle += 1
                pinfo.attempts += 1
                if pinfo.initial_attempt is None:
                    pinfo.initial_attempt = self.clock()
                return pinfo
            if self._closed:
                raise asyncio.CancelledError()
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Make waiting ``pop`` calls raise CancelledError once activeQ is empty."""
        self._closed = True
        self._wakeup.set()

    # -- failures ---------------------------------------------------------------------
    def backoff_duration(self, pinfo: QueuedPodInfo) -> float:
        """initial_backoff * 2**(attempts-1), capped at max_backoff (seconds)."""
        return min(self.initial_backoff * (2 ** max(pinfo.attempts - 1, 0)), self.max_backoff)

    def _backoff_expiry(self, pinfo: QueuedPodInfo) -> float:
        return pinfo.timestamp + self.backoff_duration(pinfo)

    def _in_backoff(self, pinfo: QueuedPodInfo) -> bool:
        return self._backoff_expiry(pinfo) > self.clock()

    def add_unschedulable_if_not_present(self, pinfo: QueuedPodInfo, pod_scheduling_cycle: int, *,
                                         unschedulable: bool = True) -> None:
        """Requeue a pod after a failed attempt.

        ``unschedulable=False`` (an error, e.g. a failed bind) or a cluster
        change since ``pod_scheduling_cycle`` sends it to backoffQ; otherwise it
        waits in unschedulablePods for a change that may help.
        """
        key = pinfo.key
        if key in self:
            return
        pinfo.timestamp = self.clock()
        if not unschedulable or self._move_request_cycle >= pod_scheduling_cycle:
            self._backoff[key] = pinfo
            INCOMING_PODS.labels("backoff", "ScheduleAttemptFailure").inc()
        else:
            self._unschedulable[key] = pinfo
            INCOMING_PODS.labels("unschedulable", "ScheduleAttemptFailure").inc()

    # -- informer events -----------------------------------------------------------------
    def update(self, old: dict | None, new: dict) -> None:
        """A pending pod changed: refresh the queued copy; a pod waiting as
        unschedulable whose spec or labels changed may fit now, so it moves on."""
        key = meta_key(new)
        if key in self._nominated_node or (new.get("status") or {}).get("nominatedNodeName"):
            self.nominate(new)
        if key in self._active:
            self._active[key].pod = new
            return
        if key in self._backoff:
            self._backoff[key].pod = new
            return
        pinfo = self._unschedulable.get(key)
        if pinfo is not None:
            pinfo.pod = new
            if old is None or _scheduling_relevant(old) != _scheduling_relevant(new):
                del self._unschedulable[key]
                self._requeue(pinfo, "PodUpdate")
            return
        self._push_active(QueuedPodInfo(new, self.clock()))
        INCOMING_PODS.labels("active", "PodUpdate").inc()

    def delete(self, pod: dict) -> None:
        """Forget the pod wherever it waits (and its nomination)."""
        key = meta_key(pod)
        if key in self._nominated_node:
            self.nominate(pod, "")
        self._active.pop(key, None)
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)

    def _requeue(self, pinfo: QueuedPodInfo, event: str) -> None:
        if self._in_backoff(pinfo):
            self._backoff[pinfo.key] = pinfo
            INCOMING_PODS.labels("backoff", event).inc()
        else:
            self._push_active(pinfo)
            INCOMING_PODS.labels("active", event).inc()

    def move_all_to_active_or_backoff(self, event: str = "", *, plugins: frozenset[str] | None = None,
                                      pre_check: Callable[[dict], bool] | None = None) -> None:
        """A cluster change (``event``, e.g. ``NodeAdd``) may let unschedulable pods
        fit: move those it concerns to activeQ or, while backing off, backoffQ.

        A pod is concerned when it has no recorded rejecting plugins, or one
        of them is in ``plugins`` (default: ``EVENT_PLUGINS[event]``, None = all),
        and ``pre_check(pod)`` (if given) is true.
        """
        if plugins is None:
            plugins = EVENT_PLUGINS.get(event)
        for key, pinfo in list(self._unschedulable.items()):
            if plugins is not None and pinfo.unschedulable_plugins and \
                    not (pinfo.unschedulable_plugins & plugins):
                continue
            if pre_check is not None and not pre_check(pinfo.pod):
                continue
            del self._unschedulable[key]
            self._requeue(pinfo, event or "Unknown")
        self._move_request_cycle = self.scheduling_cycle

    # -- periodic flushing ----------------------------------------------------------------
    def flush_backoff_completed(self) -> None:
        """Move pods whose backoff has expired to activeQ."""
        for key, pinfo in list(self._backoff.items()):
            if not self._in_backoff(pinfo):
                del self._backoff[key]
                self._push_active(pinfo)
                INCOMING_PODS.labels("active", "BackoffComplete").inc()

    def flush_unschedulable_left_over(self) -> None:
        """Move pods that stayed unschedulable longer than ``max_in_unschedulable``."""
        now = self.clock()
        for key, pinfo in list(self._unschedulable.items()):
            if now - pinfo.timestamp > self.max_in_unschedulable:
                del self._unschedulable[key]
                self._requeue(pinfo, "UnschedulableTimeout")

    async def run(self, *, backoff_period: float = 0.2, unschedulable_period: float = 30.0) -> None:
        """Flush backoffQ every ``backoff_period`` s and long-unschedulable pods
        every ``unschedulable_period`` s, until cancelled."""
        last_unschedulable_flush = self.clock()
        while True:
            await asyncio.sleep(backoff_period)
            self.flush_backoff_completed()
            if self.clock() - last_unschedulable_flush >= unschedulable_period:
                last_unschedulable_flush = self.clock()
                self.flush_unschedulable_left_over()


def _scheduling_relevant(pod: dict) -> tuple:
    meta = pod.get("metadata") or {}
    return repr(pod.get("spec")), repr(meta.get("labels")), repr(meta.get("annotations"))
