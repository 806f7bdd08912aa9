"""The ReplicaSet controller: keeps spec.replicas pods matching the selector alive.

Mirrors pkg/controller/replicaset/replica_set.go: pods are counted from the
pod lister (terminating and finished pods excluded), orphans matching the
selector are adopted and non-matching ones released, the difference is
created (in slow-start batches) or deleted (least valuable pods first), and
expectations keep a lagging informer from causing double creations.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from kubeling.client import ApiError, Client, Informer, deep_copy, meta_key, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from controllers.controller_utils import (BaseController, ControllerExpectations, claim_objects,
                                          controller_ref, get_controller_of, is_pod_active, is_pod_available,
                                          is_pod_ready, labels_of, pod_delete_rank, resolve_controller_ref,
                                          selector_of)

log = logging.getLogger(__name__)

# Upstream's BurstReplicas: at most this many creations/deletions per sync.
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


def pod_from_template(rs: dict) -> dict:
    """The Pod a ReplicaSet creates: template labels/annotations/spec,
    generateName ``<rs>-``, controller ownerReference (controller.GetPodFromTemplate)."""
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    meta = {"generateName": f"{rs['metadata']['name']}-", "namespace": rs["metadata"].get("namespace"),
            "labels": dict(tmeta.get("labels") or {}), "ownerReferences": [controller_ref(rs)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": deep_copy(template.get("spec") or {})}


async def slow_start_batch(count: int, initial: int, fn: Callable[[], Awaitable[None]]) -> tuple[int, Exception | None]:
    """Call ``fn`` ``count`` times in batches of 1, 2, 4 ... (concurrently within a
    batch), stopping after the first batch with a failure, so a doomed creation
    (quota, bad template) fails once rather than 500 times.
    Returns (successes, first error or None). Mirrors controller.slowStartBatch."""
    successes, remaining, size = 0, count, min(count, initial)
    while size > 0:
        results = await asyncio.gather(*(fn() for _ in range(size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        successes += size - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= size
        size = min(2 * size, remaining)
    return successes, None


def calculate_status(rs: dict, pods: list[dict], *, now: float) -> dict:
    """The ReplicaSet status for the pods it controls (replica_set_utils.calculateStatus)."""
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    status = dict(rs.get("status") or {})
    status.update({
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(1 for p in pods
                                    if all(labels_of(p).get(k) == v for k, v in template_labels.items())),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 0),
    })
    return status


class ReplicaSetController(BaseController):
    """Reconciles ReplicaSets (apps/v1) against their pods."""

    name = "replicaset"
    resource = "replicasets"
    kind = "ReplicaSet"

    def __init__(self, client: Client, rs_informer: Informer, pod_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time):
        super().__init__(client, [rs_informer, pod_informer])
        self.rs_lister = rs_informer.lister
        self.pod_lister = pod_informer.lister
        self.recorder = recorder or EventRecorder(client, f"{self.kind.lower()}-controller")
        self.clock = clock
        self.expectations = ControllerExpectations()
        rs_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                 on_delete=self._delete_rs)
        pod_informer.add_handlers(on_add=self._add_pod, on_update=self._update_pod, on_delete=self._delete_pod)

    # -- event handlers ------------------------------------------------------------------
    def _delete_rs(self, rs: dict) -> None:
        self.expectations.delete(meta_key(rs))
        self.enqueue(rs)

    def _matching_replicasets(self, pod: dict) -> list[dict]:
        ns = pod["metadata"].get("namespace")
        return self.rs_lister.list(ns, match=lambda rs: selector_of(rs).matches(labels_of(pod)))

    def _add_pod(self, pod: dict) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._delete_pod(pod)
            return
        if get_controller_of(pod) is not None:
            rs = resolve_controller_ref(pod, self.rs_lister, self.kind)
            if rs is not None:
                self.expectations.creation_observed(meta_key(rs))
                self.enqueue(rs)
            return
        for rs in self._matching_replicasets(pod):
            self.enqueue(rs)

    def _update_pod(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        labels_changed = labels_of(old) != labels_of(new)
        if new["metadata"].get("deletionTimestamp"):
            self._delete_pod(new)
            if labels_changed:
                self._delete_pod(old)
            return
        old_ref, new_ref = get_controller_of(old), get_controller_of(new)
        if old_ref and (new_ref or {}).get("uid") != old_ref.get("uid"):
            rs = resolve_controller_ref(old, self.rs_lister, self.kind)
            if rs is not None:
                self.enqueue(rs)
        if new_ref:
            rs = resolve_controller_ref(new, self.rs_lister, self.kind)
            if rs is not None:
                self.enqueue(rs)
                min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
                if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                    self.queue.add_after(meta_key(rs), min_ready + 1)
            return
        if labels_changed or old_ref:
            for rs in self._matching_replicasets(new):
                self.enqueue(rs)

    def _delete_pod(self, pod: dict) -> None:
        rs = resolve_controller_ref(pod, self.rs_lister, self.kind)
        if rs is None:
            return
        key = meta_key(rs)
        self.expectations.deletion_observed(key, meta_key(pod))
        self.enqueue(rs)

    # -- reconcile ----------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        """Reconcile ReplicaSet ``namespace/name`` (mirrors ReplicaSetController.syncReplicaSet): adopt/release pods,
        create or delete pods toward spec.replicas when expectations are met, then update status.
        """
        ns, name = split_key(key)
        rs = self.rs_lister.get(name, ns)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        active = self.pod_lister.list(ns, match=is_pod_active)
        adopt_ok: list[bool] = []

        async def can_adopt() -> bool:
            # Re-read the ReplicaSet once: never adopt for a deleted or recreated owner.
            if not adopt_ok:
                try:
                    fresh = await self.client.get(self.resource, name, namespace=ns)
                    adopt_ok.append(fresh["metadata"].get("uid") == rs["metadata"].get("uid")
                                    and not fresh["metadata"].get("deletionTimestamp"))
                except ApiError as e:
                    if e.code != 404:
                        raise
                    adopt_ok.append(False)
            return adopt_ok[0]

        pods = await claim_objects(self.client, rs, active, "pods", can_adopt=can_adopt)
        manage_error = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self.manage_replicas(key, pods, rs)
            except Exception as e:  # status is still worth updating
                manage_error = e
        status = calculate_status(rs, pods, now=self.clock())
        await self._update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        if min_ready > 0 and status["readyReplicas"] != status["availableReplicas"]:
            self.queue.add_after(key, min_ready)

    async def manage_replicas(self, key: str, pods: list[dict], rs: dict) -> None:
        """Create or delete pods so that ``len(pods)`` becomes spec.replicas."""
        replicas = int(rs["spec"].get("replicas", 1))
        diff = len(pods) - replicas
        ns = rs["metadata"].get("namespace")
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, n)
            body = pod_from_template(rs)

            async def create() -> None:
                try:
                    created = await self.client.create("pods", body, namespace=ns)
                except ApiError as e:
                    self.recorder.event(rs, WARNING, "FailedCreate", f"Error creating: {e}")
                    raise
                self.recorder.event(rs, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

            successes, error = await slow_start_batch(n, SLOW_START_INITIAL_BATCH, create)
            for _ in range(n - successes):  # creations that will never be observed
                self.expectations.creation_observed(key)
            if error is not None:
                raise error
        elif diff > 0:
            n = min(diff, BURST_REPLICAS)
            on_node: dict[str, int] = {}
            for p in pods:
                node = (p.get("spec") or {}).get("nodeName") or ""
                on_node[node] = on_node.get(node, 0) + 1
            victims = sorted(pods, key=lambda p: pod_delete_rank(p, on_node))[:n]
            self.expectations.expect_deletions(key, [meta_key(p) for p in victims])

            async def delete(pod: dict) -> None:
                pname = pod["metadata"]["name"]
                try:
                    await self.client.delete("pods", pname, namespace=ns)
                except ApiError as e:
                    self.expectations.deletion_observed(key, meta_key(pod))
                    if e.code == 404:
                        return
                    self.recorder.event(rs, WARNING, "FailedDelete", f"Error deleting: {e}")
                    raise
                self.recorder.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {pname}")

            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise errors[0]

    async def _update_status(self, rs: dict, status: dict) -> None:
        """PUT status when it changed; on a conflict re-read once and retry (updateReplicaSetStatus)."""
        current = rs
        for attempt in range(2):
            if _status_equal(current.get("status") or {}, status):
                return
            obj = deep_copy(current)
            obj["status"] = {**(obj.get("status") or {}), **status}
            try:
                await self.client.replace_status(self.resource, obj)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409 or attempt == 1:
                    raise
                meta = rs["metadata"]
                current = await self.client.get(self.resource, meta["name"], namespace=meta.get("namespace"))


def _status_equal(a: dict, b: dict) -> bool:
    keys = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration")
    return all(int(a.get(k) or 0) == int(b.get(k) or 0) for k in keys)


class ReplicationManager(ReplicaSetController):
    """Reconciles core/v1 ReplicationControllers: the same logic over a map selector, as upstream's
    pkg/controller/replication runs the ReplicaSet controller through a conversion layer."""

    name = "replicationcontroller"
    resource = "replicationcontrollers"
    kind = "ReplicationController"
