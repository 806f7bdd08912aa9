"""The scheduler daemon: informers feed the queue and the cache; one loop
pops pending pods, decides, assumes and binds.

Mirrors kube-scheduler's pkg/scheduler/scheduler.go + eventhandlers.go +
schedule_one.go (scheduleOne, bind, handleSchedulingFailure). The binding
cycle runs as its own task, as upstream runs it in a goroutine, so the next
pod is considered while the binding POST is in flight; the assumed pod
already counts against its node.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import random
import time

import prometheus_client

from kubeling import klog
from kubeling.client import ApiError, Client, Informer, meta_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder, now_rfc3339
from scheduler.cache import SchedulerCache
from scheduler.framework.plugins import InterPodAffinity, default_filters, default_scores
from scheduler.framework.plugins.defaultpreemption import Candidate, PreemptionResult
from scheduler.queue import (ASSIGNED_POD_ADD, ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE, NODE_ADD, NODE_UPDATE,
                             QueuedPodInfo, SchedulingQueue, node_update_plugins)
from scheduler.schedule_one import FitError, NodeSearch, post_filter, schedule_pod

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
# Binding cycles in flight at once. Upstream spawns a goroutine per pod and lets
# them pile up; here each is an HTTP request on the client's shared connection
# pool, and httpcore 1.0.9 closes an idle connection whenever the pool holds more
# than 20 connections in all (encode/httpcore PR #1000), then reopens one for the
# next request; its per-request bookkeeping also polls every idle connection.
# The daemon sends bindings through a client of their own (``binding_client``), so
# 16 in flight stay under 20 there; the Event writes (record.MAX_CONCURRENT_WRITES,
# 8) and the 3 watches share the other pool. Measured (cProfile, 2,000 pods onto
# 200 hollow nodes, one binding and one Event POST each, one shared pool):
# unbounded 5,949 TCP connects, 32 in flight 2,577, 16 651, 8 69.
# The scheduling loop waits for a free slot instead.
MAX_BINDINGS_IN_FLIGHT = 16

SCHEDULE_ATTEMPTS = prometheus_client.Counter(
    "scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by the result.", ["result"])
PENDING_PODS = prometheus_client.Gauge(
    "scheduler_pending_pods", "Number of pending pods, by the queue type.", ["queue"])
ATTEMPT_DURATION = prometheus_client.Histogram(
    "scheduler_scheduling_attempt_duration_seconds",
    "Scheduling attempt latency in seconds (scheduling algorithm + binding)", ["result", "profile"],
    buckets=[0.001 * 2 ** i for i in range(15)])
ALGORITHM_DURATION = prometheus_client.Histogram(
    "scheduler_scheduling_algorithm_duration_seconds", "Scheduling algorithm latency in seconds",
    buckets=[0.001 * 2 ** i for i in range(15)])
POD_SLI_DURATION = prometheus_client.Histogram(
    "scheduler_pod_scheduling_sli_duration_seconds",
    "E2e latency for a pod being scheduled, from the first scheduling attempt, possibly over several attempts.",
    ["attempts"], buckets=[0.01 * 2 ** i for i in range(20)])
PREEMPTION_ATTEMPTS = prometheus_client.Counter(
    "scheduler_preemption_attempts_total", "Total preemption attempts in the cluster till now")
PREEMPTION_VICTIMS = prometheus_client.Histogram(
    "scheduler_preemption_victims", "Number of selected preemption victims",
    buckets=[2 ** i for i in range(7)])


def is_assigned(pod: dict) -> bool:
    """The pod has a node (spec.nodeName)."""
    return bool((pod.get("spec") or {}).get("nodeName"))


def is_terminal(pod: dict) -> bool:
    """Succeeded or Failed: the pod no longer uses its node's resources."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    """Schedules pods whose spec.schedulerName is ``scheduler_name``.

    ``await run()`` starts the informers, waits for them to sync, then
    schedules until cancelled. ``ready`` is True once synced (for /healthz).
    At most ``max_bindings_in_flight`` binding cycles run at once (the loop waits
    for one to end); ``freeze_gc_after_sync`` moves the synced caches out of the
    garbage collector's reach (gc.freeze; for the daemon, not a shared process);
    ``binding_client`` (default ``client``) sends the Binding POSTs.
    """

    def __init__(self, client: Client, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                 filters: list | None = None, scores: list | None = None,
                 queue: SchedulingQueue | None = None, rng: random.Random | None = None,
                 max_bindings_in_flight: int = MAX_BINDINGS_IN_FLIGHT, freeze_gc_after_sync: bool = False,
                 binding_client: Client | None = None):
        self.client = client
        # Bindings may go through a client (connection pool) of their own: httpcore's
        # per-request bookkeeping walks every connection of the pool, so two small
        # pools cost less than one holding the watches, the Event writes and the bindings.
        self.binding_client = binding_client or client
        self.scheduler_name = scheduler_name
        self.filters = filters if filters is not None else default_filters()
        self.scores = scores if scores is not None else default_scores()
        self.queue = queue or SchedulingQueue()
        self.cache = SchedulerCache()
        self.rng = rng or random.Random()
        self.node_search = NodeSearch()
        self.recorder = EventRecorder(client, scheduler_name)
        self.node_informer = Informer(client, "nodes")
        self.pod_informer = Informer(client, "pods")
        # Namespace labels, for pod (anti-)affinity terms with a namespaceSelector.
        self.namespace_informer = Informer(client, "namespaces")
        for plugin in [*self.filters, *self.scores]:
            if isinstance(plugin, InterPodAffinity) and plugin.namespace_labels is None:
                plugin.namespace_labels = self._namespace_labels
        self.node_informer.add_handlers(on_add=self._on_node_add, on_update=self._on_node_update,
                                        on_delete=self._on_node_delete)
        self.pod_informer.add_handlers(on_add=self._on_pod_add, on_update=self._on_pod_update,
                                       on_delete=self._on_pod_delete)
        self._binding_tasks: set[asyncio.Task] = set()
        self.max_bindings_in_flight = max(1, max_bindings_in_flight)
        self.freeze_gc_after_sync = freeze_gc_after_sync  # the daemon's choice; not for a shared test process
        # Metric children used once or more per pod, looked up once.
        self._pending_gauges = {name: PENDING_PODS.labels(name) for name in ("active", "backoff", "unschedulable")}
        self._scheduled_attempts = SCHEDULE_ATTEMPTS.labels("scheduled")
        self._scheduled_duration = ATTEMPT_DURATION.labels("scheduled", scheduler_name)
        self.ready = False

    def _namespace_labels(self, namespace: str) -> dict | None:
        ns = self.namespace_informer.lister.get(namespace)
        return ((ns or {}).get("metadata") or {}).get("labels")

    def responsible_for(self, pod: dict) -> bool:
        """Pending, not being deleted, and addressed to this scheduler."""
        spec = pod.get("spec") or {}
        return ((spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name
                and not is_assigned(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")
                and not is_terminal(pod))

    # -- event handlers (only touch the queue and cache) ----------------------------------
    def _on_node_add(self, node: dict) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(NODE_ADD)

    def _on_node_update(self, old: dict, new: dict) -> None:
        self.cache.update_node(new)
        plugins = node_update_plugins(old, new)
        if plugins:  # heartbeats alone change nothing
            self.queue.move_all_to_active_or_backoff(NODE_UPDATE, plugins=plugins)

    def _on_node_delete(self, node: dict) -> None:
        self.cache.remove_node(node)

    def _on_pod_add(self, pod: dict) -> None:
        if is_assigned(pod):
            if not is_terminal(pod):
                self.cache.add_pod(pod)
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_ADD)
        elif self.responsible_for(pod):
            self.queue.add(pod)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        if is_assigned(new):
            if not is_assigned(old):
                self.queue.delete(new)
            if is_terminal(new):
                self.cache.remove_pod(new)
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
            else:
                self.cache.update_pod(new)
                if not is_assigned(old) or (old.get("metadata") or {}).get("labels") != \
                        (new.get("metadata") or {}).get("labels"):
                    self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_UPDATE)
        elif self.responsible_for(new):
            self.queue.update(old, new)
        else:
            self.queue.delete(new)

    def _on_pod_delete(self, pod: dict) -> None:
        self.queue.delete(pod)
        if is_assigned(pod) or self.cache.is_assumed(pod):
            self.cache.remove_pod(pod)
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)

    # -- the scheduling loop -------------------------------------------------------------
    async def run(self, *, leading: asyncio.Event | None = None) -> None:
        """Run informers, wait for their caches, then schedule until cancelled.
        With ``leading`` (leader election), scheduling waits until it is set: a
        standby keeps warm caches, as upstream starts informers before electing."""
        tasks = [asyncio.ensure_future(self.node_informer.run()), asyncio.ensure_future(self.pod_informer.run()),
                 asyncio.ensure_future(self.namespace_informer.run()), asyncio.ensure_future(self.queue.run())]
        try:
            await self.node_informer.wait_synced()
            await self.pod_informer.wait_synced()
            await self.namespace_informer.wait_synced()
            self.ready = True
            # The informers' first lists are most of the heap and live on: move them out
            # of the collector's reach, so that full collections during a burst of
            # scheduling do not walk every cached pod again (CPython's gc.freeze).
            if self.freeze_gc_after_sync:
                gc.freeze()
            log.info("caches synced: %d nodes, %d pods", len(self.node_informer.store),
                     len(self.pod_informer.store))
            if leading is not None:
                await leading.wait()
            while True:
                await self.wait_for_binding_slot()
                try:
                    await self.schedule_one()
                except Exception:  # one pod's trouble must not end scheduling for all (upstream recovers too)
                    log.exception("scheduling cycle failed")
                # pop() does not suspend while activeQ has pods: yield so binding
                # tasks and informers run between cycles (else bindings starve).
                await asyncio.sleep(0)
        finally:
            self.queue.close()
            for t in [*tasks, *self._binding_tasks]:
                t.cancel()
            await asyncio.gather(*tasks, *self._binding_tasks, return_exceptions=True)

    async def wait_for_binding_slot(self) -> None:
        """Return once fewer than ``max_bindings_in_flight`` binding cycles run."""
        while len(self._binding_tasks) >= self.max_bindings_in_flight:
            await asyncio.wait(self._binding_tasks, return_when=asyncio.FIRST_COMPLETED)

    def _update_pending_gauge(self) -> None:
        for name, count in self.queue.pending_counts().items():
            gauge = self._pending_gauges.get(name)
            (gauge if gauge is not None else PENDING_PODS.labels(name)).set(count)

    async def schedule_one(self) -> None:
        """Pop one pod and try to place it (scheduling cycle, then a binding task)."""
        pinfo = await self.queue.pop()
        cycle = self.queue.scheduling_cycle
        self._update_pending_gauge()
        ns, name = pinfo.pod["metadata"].get("namespace"), pinfo.pod["metadata"]["name"]
        pod = self.pod_informer.lister.get(name, ns)
        if pod is None or not self.responsible_for(pod) or self.cache.is_assumed(pod):
            return
        pinfo.pod = pod
        start = time.monotonic()
        snapshot = self.cache.snapshot()
        try:
            nominated = self.queue.nominated_pods_for_node if self.queue.has_nominated_pods() else None
            node_name = schedule_pod(pod, snapshot, self.filters, self.scores, rng=self.rng,
                                     search=self.node_search, nominated=nominated)
        except FitError as e:
            SCHEDULE_ATTEMPTS.labels("unschedulable").inc()
            PREEMPTION_ATTEMPTS.inc()
            try:
                result = post_filter(pod, snapshot, e, self.filters)
            except Exception:  # a preemption bug must not stop the scheduler either
                log.exception("preemption for pod %s failed", meta_key(pod))
                result = PreemptionResult(None, "")
            ATTEMPT_DURATION.labels("unschedulable", self.scheduler_name).observe(time.monotonic() - start)
            log.info("unable to schedule pod %s: %s", meta_key(pod), e, extra=klog.kv(pod=pod))
            pinfo.unschedulable_plugins = frozenset(e.unschedulable_plugins())
            nominated = None
            if result.candidate is not None:
                nominated = result.candidate.node_name
                PREEMPTION_VICTIMS.observe(len(result.candidate.victims))
                await self._prepare_candidate(pod, result.candidate)
            await self._handle_failure(pinfo, cycle, str(e), reason="Unschedulable", unschedulable=True,
                                       nominated_node=nominated)
            return
        except Exception as e:  # a plugin bug must not stop the scheduler
            SCHEDULE_ATTEMPTS.labels("error").inc()
            ATTEMPT_DURATION.labels("error", self.scheduler_name).observe(time.monotonic() - start)
            log.exception("error scheduling pod %s", meta_key(pod))
            await self._handle_failure(pinfo, cycle, str(e), reason="SchedulerError", unschedulable=False)
            return
        ALGORITHM_DURATION.observe(time.monotonic() - start)
        # A shallow copy with its own spec: cached objects are never mutated, so a deep
        # copy of the whole pod per cycle would buy nothing.
        assumed = {**pod, "spec": {**pod["spec"], "nodeName": node_name}}
        self.cache.assume_pod(assumed)
        task = asyncio.ensure_future(self._binding_cycle(pinfo, cycle, assumed, node_name, start))
        self._binding_tasks.add(task)
        task.add_done_callback(self._binding_tasks.discard)

    async def _binding_cycle(self, pinfo: QueuedPodInfo, cycle: int, assumed: dict, node_name: str,
                             start: float) -> None:
        meta = assumed["metadata"]
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                **({"uid": meta["uid"]} if meta.get("uid") else {})},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        try:
            await self.binding_client.create("pods", binding, namespace=meta["namespace"], name=meta["name"],
                                     subresource="binding")
        except Exception as e:
            SCHEDULE_ATTEMPTS.labels("error").inc()
            ATTEMPT_DURATION.labels("error", self.scheduler_name).observe(time.monotonic() - start)
            log.warning("binding %s to %s failed: %s", meta_key(assumed), node_name, e)
            self.cache.forget_pod(assumed)
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
            await self._handle_failure(pinfo, cycle, f"binding rejected: {e}", reason="SchedulerError",
                                       unschedulable=False)
            return
        self._scheduled_attempts.inc()
        now = time.monotonic()
        self._scheduled_duration.observe(now - start)
        if pinfo.initial_attempt is not None:
            POD_SLI_DURATION.labels(str(pinfo.attempts)).observe(now - pinfo.initial_attempt)
        log.info("bound %s to %s", meta_key(assumed), node_name, extra=klog.kv(pod=assumed, node=node_name))
        self.recorder.event(assumed, NORMAL, "Scheduled",
                            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}")

    async def _prepare_candidate(self, preemptor: dict, candidate: Candidate) -> None:
        """Evict the victims: DisruptionTarget condition, delete, event Preempted
        (upstream's Evaluator.prepareCandidate, PreemptPod)."""
        pmeta = preemptor["metadata"]
        for victim in candidate.victims:
            vmeta = victim["metadata"]
            cond = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                    "message": f"{self.scheduler_name}: preempting to accommodate a higher priority pod",
                    "lastTransitionTime": now_rfc3339()}
            conditions = [c for c in (victim.get("status") or {}).get("conditions") or []
                          if c.get("type") != "DisruptionTarget"] + [cond]
            try:
                await self.client.patch("pods", vmeta["name"], {"status": {"conditions": conditions}},
                                        namespace=vmeta["namespace"], subresource="status")
                await self.client.delete("pods", vmeta["name"], namespace=vmeta["namespace"])
            except ApiError as e:
                if e.code != 404:
                    log.warning("could not preempt %s for %s: %s", meta_key(victim), meta_key(preemptor), e)
                continue
            except Exception as e:
                log.warning("could not preempt %s for %s: %s", meta_key(victim), meta_key(preemptor), e)
                continue
            log.info("preempted %s on %s for %s", meta_key(victim), candidate.node_name, meta_key(preemptor))
            self.recorder.event(victim, NORMAL, "Preempted",
                                f"Preempted by pod {pmeta.get('uid', '')} on node {candidate.node_name}")

    async def _handle_failure(self, pinfo: QueuedPodInfo, cycle: int, message: str, *, reason: str,
                              unschedulable: bool, nominated_node: str | None = None) -> None:
        """Event FailedScheduling, requeue, and PodScheduled=False on the pod (upstream's
        handleSchedulingFailure + updatePod)."""
        pod = pinfo.pod
        self.recorder.event(pod, WARNING, "FailedScheduling", message)
        ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
        latest = self.pod_informer.lister.get(name, ns)
        if latest is None or not self.responsible_for(latest):
            return  # deleted or bound meanwhile: nothing to retry
        pinfo.pod = latest
        if nominated_node:
            self.queue.nominate(latest, nominated_node)
        self.queue.add_unschedulable_if_not_present(pinfo, cycle, unschedulable=unschedulable)
        await self._set_pod_scheduled_false(latest, reason, message, nominated_node=nominated_node)

    async def _set_pod_scheduled_false(self, pod: dict, reason: str, message: str, *,
                                       nominated_node: str | None = None) -> None:
        conditions = list((pod.get("status") or {}).get("conditions") or [])
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        nominated_changed = nominated_node is not None and \
            (pod.get("status") or {}).get("nominatedNodeName") != nominated_node
        if current and (current.get("status"), current.get("reason"), current.get("message")) == \
                ("False", reason, message) and not nominated_changed:
            return
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": (current or {}).get("lastTransitionTime")
                if (current or {}).get("status") == "False" else now_rfc3339()}
        conditions = [c for c in conditions if c.get("type") != "PodScheduled"] + [cond]
        meta = pod["metadata"]
        try:
            status = {"conditions": conditions}
            if nominated_node is not None:
                status["nominatedNodeName"] = nominated_node
            await self.client.patch("pods", meta["name"], {"status": status},
                                    namespace=meta["namespace"], subresource="status")
        except ApiError as e:
            if e.code != 404:
                log.warning("could not set PodScheduled condition of %s: %s", meta_key(pod), e)
        except Exception as e:
            log.warning("could not set PodScheduled condition of %s: %s", meta_key(pod), e)
