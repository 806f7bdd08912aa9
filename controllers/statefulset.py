"""The StatefulSet controller: pods with stable names and order.

Mirrors pkg/controller/statefulset (stateful_set_control.go
updateStatefulSet, stateful_set_utils.go): a StatefulSet ``web`` with 3
replicas owns pods ``web-0``, ``web-1``, ``web-2`` (from
``spec.ordinals.start``), each with hostname = pod name and subdomain =
``spec.serviceName``, and the labels ``statefulset.kubernetes.io/pod-name``,
``apps.kubernetes.io/pod-index`` and ``controller-revision-hash``. Under
``podManagementPolicy: OrderedReady`` (the default) pods are created one at
a time in ordinal order, each only once all lower ones are Running and Ready,
and removed one at a time from the highest ordinal; ``Parallel`` does both at
once. A failed pod is deleted and recreated under the same name.
RollingUpdate (with ``partition``) replaces pods of an older revision from
the highest ordinal down, one at a time, each once the rest are Ready;
OnDelete leaves that to the user. Status carries replicas, ready, current,
updated and available counts and the current / update revisions.

Not modelled: volumeClaimTemplates (PersistentVolumeClaims are not served),
ControllerRevision objects (the revision is the template hash), maxUnavailable.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer, deep_copy, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from controllers.controller_utils import (BaseController, claim_objects, controller_ref, is_pod_available,
                                          is_pod_ready, labels_of, resolve_controller_ref, write_status)
from controllers.deployment_util import compute_hash

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: dict) -> int | None:
    """The ordinal in a pod name ``<sts>-<n>``, or None when the pod is not named like a member."""
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod["metadata"].get("name", ""))
    return int(m.group(1)) if m else None


def revision_of(sts: dict) -> str:
    """The update revision, named as upstream's ControllerRevision: ``<sts>-<template hash>``
    (also the pods' ``controller-revision-hash`` label)."""
    return f"{sts['metadata']['name']}-" + compute_hash((sts.get("spec") or {}).get("template") or {},
                                                        (sts.get("status") or {}).get("collisionCount"))


def pod_for_ordinal(sts: dict, ordinal: int, revision: str) -> dict:
    """Member ``ordinal`` of ``sts`` (newVersionedStatefulSetPod): stable name, hostname, subdomain,
    identity labels, the StatefulSet as controller."""
    template = (sts.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = f"{sts['metadata']['name']}-{ordinal}"
    spec = deep_copy(template.get("spec") or {})
    spec["hostname"] = name
    if (sts.get("spec") or {}).get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    meta = {"name": name, "namespace": sts["metadata"].get("namespace"),
            "labels": {**(tmeta.get("labels") or {}), POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
                       REVISION_LABEL: revision},
            "ownerReferences": [controller_ref(sts)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def _terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


class StatefulSetController(BaseController):
    """Reconciles apps/v1 StatefulSets against their pods."""

    name = "statefulset"

    def __init__(self, client: Client, sts_informer: Informer, pod_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time):
        super().__init__(client, [sts_informer, pod_informer])
        self.sts_lister = sts_informer.lister
        self.pod_lister = pod_informer.lister
        self.recorder = recorder or EventRecorder(client, "statefulset-controller")
        self.clock = clock
        sts_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        pod_informer.add_handlers(on_add=self._pod_event, on_update=lambda old, new: self._pod_event(new),
                                  on_delete=self._pod_event)

    def _pod_event(self, pod: dict) -> None:
        sts = resolve_controller_ref(pod, self.sts_lister, "StatefulSet")
        if sts is not None:
            self.enqueue(sts)

    async def sync(self, key: str) -> None:
        """Reconcile StatefulSet ``namespace/name`` (updateStatefulSet). Raises ApiError to be retried."""
        ns, name = split_key(key)
        sts = self.sts_lister.get(name, ns)
        if sts is None:
            return
        pods = await claim_objects(self.client, sts, self.pod_lister.list(ns), "pods")
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        update_revision = revision_of(sts)
        status = deep_copy(sts.get("status") or {})
        current_revision = status.get("currentRevision") or update_revision
        members: dict[int, dict] = {}
        condemned: list[dict] = []
        for p in pods:
            n = ordinal_of(name, p)
            if n is None:
                continue
            if start <= n < start + replicas:
                members[n] = p
            else:
                condemned.append(p)
        error: Exception | None = None
        if not sts["metadata"].get("deletionTimestamp"):
            try:
                await self._act(sts, members, condemned, start, replicas, update_revision, current_revision)
            except ApiError as e:
                error = e
        await self._update_status(sts, status, pods, update_revision, current_revision, start, replicas)
        if error is not None:
            raise error

    async def _act(self, sts: dict, members: dict[int, dict], condemned: list[dict], start: int, replicas: int,
                   update_revision: str, current_revision: str) -> None:
        """At most one ordered step under OrderedReady, every step under Parallel (the body of
        updateStatefulSet's monotonic loop)."""
        spec = sts["spec"]
        ns = sts["metadata"].get("namespace")
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        for n in range(start, start + replicas):
            pod = members.get(n)
            if pod is not None and (pod.get("status") or {}).get("phase") == "Failed" and not _terminating(pod):
                self.recorder.event(sts, WARNING, "RecreatingFailedPod",
                                    f"StatefulSet {ns}/{sts['metadata']['name']} is recreating failed Pod "
                                    f"{pod['metadata']['name']}")
                await self._delete(sts, pod)
                if monotonic:
                    return
                continue
            if pod is None:
                revision = update_revision if n >= int(self._partition(spec)) else current_revision
                await self._create(sts, n, revision)
                if monotonic:
                    return
                continue
            if monotonic and (_terminating(pod) or not _running_and_ready(pod)):
                return  # wait for this ordinal before touching the next
        live_condemned = sorted((p for p in condemned if not _terminating(p)),
                                key=lambda p: ordinal_of(sts["metadata"]["name"], p) or 0, reverse=True)
        if live_condemned:
            if monotonic:
                if any(_terminating(p) for p in condemned) or \
                        not all(_running_and_ready(p) for p in members.values()):
                    return
                await self._delete(sts, live_condemned[0])
                return
            for p in live_condemned:
                await self._delete(sts, p)
        elif monotonic and any(_terminating(p) for p in condemned):
            return
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy != "RollingUpdate":
            return
        partition = self._partition(spec)
        for n in range(start + replicas - 1, start - 1, -1):
            if n < partition:
                break
            pod = members.get(n)
            if pod is None or _terminating(pod):
                return
            if labels_of(pod).get(REVISION_LABEL) != update_revision:
                if all(_running_and_ready(p) for m, p in members.items() if m != n):
                    self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                                        f"delete Pod {pod['metadata']['name']} in StatefulSet "
                                        f"{sts['metadata']['name']} successful (rolling update)")
                    await self._delete(sts, pod, event=False)
                return
            if not _running_and_ready(pod):
                return

    @staticmethod
    def _partition(spec: dict) -> int:
        return int((((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition")) or 0)

    async def _create(self, sts: dict, ordinal: int, revision: str) -> None:
        pod = pod_for_ordinal(sts, ordinal, revision)
        ns, sname = sts["metadata"].get("namespace"), sts["metadata"]["name"]
        try:
            await self.client.create("pods", pod, namespace=ns)
        except ApiError as e:
            if e.code == 409:
                return  # the informer has not seen it yet
            self.recorder.event(sts, WARNING, "FailedCreate",
                                f"create Pod {pod['metadata']['name']} in StatefulSet {sname} failed error: {e}")
            raise
        self.recorder.event(sts, NORMAL, "SuccessfulCreate",
                            f"create Pod {pod['metadata']['name']} in StatefulSet {sname} successful")

    async def _delete(self, sts: dict, pod: dict, *, event: bool = True) -> None:
        ns, sname = sts["metadata"].get("namespace"), sts["metadata"]["name"]
        try:
            await self.client.delete("pods", pod["metadata"]["name"], namespace=ns)
        except ApiError as e:
            if e.code == 404:
                return
            self.recorder.event(sts, WARNING, "FailedDelete",
                                f"delete Pod {pod['metadata']['name']} in StatefulSet {sname} failed error: {e}")
            raise
        if event:
            self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                                f"delete Pod {pod['metadata']['name']} in StatefulSet {sname} successful")

    async def _update_status(self, sts: dict, status: dict, pods: list[dict], update_revision: str,
                             current_revision: str, start: int, replicas: int) -> None:
        """Counts over live pods; currentRevision becomes the update revision once every member has it."""
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()
        live = [p for p in pods if not _terminating(p) and ordinal_of(sts["metadata"]["name"], p) is not None]
        updated = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == update_revision)
        current = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == current_revision)
        if updated == replicas and len(live) == replicas:
            current_revision, current = update_revision, updated
        status.update({"replicas": len(live), "readyReplicas": sum(1 for p in live if _running_and_ready(p)),
                       "availableReplicas": sum(1 for p in live if is_pod_available(p, min_ready, now)),
                       "currentReplicas": current, "updatedReplicas": updated,
                       "currentRevision": current_revision, "updateRevision": update_revision,
                       "observedGeneration": sts["metadata"].get("generation", 0),
                       "collisionCount": int(status.get("collisionCount") or 0)})
        await write_status(self.client, "statefulsets", sts, status)
