"""The DaemonSet controller: one pod of each DaemonSet on every node that should run it.

Mirrors pkg/controller/daemon (daemon_controller.go, update.go, util): a node
should run the daemon pod when the template's nodeSelector and required node
affinity match it and its NoSchedule / NoExecute taints are tolerated (with
the tolerations every daemon pod gets: not-ready, unreachable,
disk/memory/pid-pressure, unschedulable). The pod is created unbound with a
required node affinity on ``metadata.name`` for that node, so the default
scheduler places it (ScheduleDaemonSetPods). Extra pods on a node, pods on
nodes that should not run one and failed pods are deleted. RollingUpdate
replaces pods whose ``controller-revision-hash`` label differs from the
template's hash, at most ``maxUnavailable`` nodes at a time; OnDelete waits
for the user. Status carries upstream's counters.

Not modelled: ControllerRevision objects (the revision is the template hash
label only), maxSurge > 0, and minReadySeconds beyond readiness.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer, deep_copy, meta_key, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from controllers.controller_utils import (BaseController, ControllerExpectations, claim_objects, controller_ref,
                                          is_pod_active, is_pod_available, is_pod_ready, labels_of, parse_time,
                                          resolve_controller_ref, write_status)
from controllers.deployment_util import compute_hash, scaled_value
from kubeling.api.scheduling import required_node_affinity_matches, tolerates

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"

# util.AddOrUpdateDaemonPodTolerations: daemons keep running on troubled nodes.
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def daemon_tolerations(template_spec: dict) -> list[dict]:
    """The template's tolerations plus the daemon ones it lacks (network-unavailable for hostNetwork)."""
    out = list(template_spec.get("tolerations") or [])
    extra = list(DAEMON_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if template_spec.get("hostNetwork") else [])
    for t in extra:
        if not any(o.get("key") == t["key"] and o.get("effect") == t["effect"] for o in out):
            out.append(dict(t))
    return out


def template_hash(ds: dict) -> str:
    """The revision of the DaemonSet's pod template (the ``controller-revision-hash`` label value)."""
    return compute_hash((ds.get("spec") or {}).get("template") or {}, ds.get("status", {}).get("collisionCount"))


def node_should_run(ds: dict, node: dict) -> bool:
    """Whether ``node`` should run ``ds``'s pod (NodeShouldRunDaemonPod): nodeSelector and required
    affinity of the template match, and every NoSchedule/NoExecute taint is tolerated."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    probe = {"spec": {"nodeSelector": spec.get("nodeSelector"), "affinity": spec.get("affinity")}}
    if not required_node_affinity_matches(probe, node):
        return False
    tolerations = daemon_tolerations(spec)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return False
    return True


def pod_for_node(ds: dict, node_name: str, revision: str) -> dict:
    """A daemon pod of ``ds`` for ``node_name``: template labels plus the revision label, the
    DaemonSet as controller, daemon tolerations, and a required node affinity replaced by
    ``metadata.name In [node]`` (ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    template = (ds.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = deep_copy(template.get("spec") or {})
    spec["tolerations"] = daemon_tolerations(spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    meta = {"generateName": f"{ds['metadata']['name']}-", "namespace": ds["metadata"].get("namespace"),
            "labels": {**(tmeta.get("labels") or {}), REVISION_LABEL: revision},
            "ownerReferences": [controller_ref(ds)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def target_node(pod: dict) -> str:
    """The node a daemon pod is for: its nodeName, or the node its metadata.name affinity names."""
    name = (pod.get("spec") or {}).get("nodeName")
    if name:
        return name
    required = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return ""


class DaemonSetsController(BaseController):
    """Reconciles apps/v1 DaemonSets against nodes and their pods."""

    name = "daemonset"

    def __init__(self, client: Client, ds_informer: Informer, pod_informer: Informer, node_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time):
        super().__init__(client, [ds_informer, pod_informer, node_informer])
        self.ds_lister = ds_informer.lister
        self.pod_lister = pod_informer.lister
        self.node_lister = node_informer.lister
        self.recorder = recorder or EventRecorder(client, "daemonset-controller")
        self.clock = clock
        self.expectations = ControllerExpectations()
        ds_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                 on_delete=lambda ds: self.expectations.delete(meta_key(ds)))
        pod_informer.add_handlers(on_add=self._pod_added, on_update=lambda old, new: self._pod_changed(new),
                                  on_delete=self._pod_deleted)
        node_informer.add_handlers(on_add=self._all, on_update=lambda old, new: self._node_changed(old, new),
                                   on_delete=self._all)

    def _all(self, _obj: dict | None = None) -> None:
        for ds in self.ds_lister.list():
            self.enqueue(ds)

    def _node_changed(self, old: dict, new: dict) -> None:
        """Placement depends on labels, taints and conditions only (nodeInPreferredState checks)."""
        if any((old.get(k) or {}).get(f) != (new.get(k) or {}).get(f) for k, f in
               (("metadata", "labels"), ("spec", "taints"), ("spec", "unschedulable"))) or \
                [c.get("status") for c in (old.get("status") or {}).get("conditions") or []] != \
                [c.get("status") for c in (new.get("status") or {}).get("conditions") or []]:
            self._all()

    def _owner(self, pod: dict) -> dict | None:
        return resolve_controller_ref(pod, self.ds_lister, "DaemonSet")

    def _pod_added(self, pod: dict) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.expectations.creation_observed(meta_key(ds))
            self.enqueue(ds)

    def _pod_changed(self, pod: dict) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.enqueue(ds)

    def _pod_deleted(self, pod: dict) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.expectations.deletion_observed(meta_key(ds), meta_key(pod))
            self.enqueue(ds)

    async def sync(self, key: str) -> None:
        """Reconcile DaemonSet ``namespace/name`` (syncDaemonSet). Raises ApiError to be retried."""
        ns, name = split_key(key)
        ds = self.ds_lister.get(name, ns)
        if ds is None:
            self.expectations.delete(key)
            return
        revision = template_hash(ds)
        candidates = self.pod_lister.list(ns, match=lambda p: not p["metadata"].get("deletionTimestamp"))
        pods = await claim_objects(self.client, ds, candidates, "pods")
        by_node: dict[str, list[dict]] = {}
        for p in pods:
            by_node.setdefault(target_node(p), []).append(p)
        nodes = self.node_lister.list()
        node_names = {n["metadata"]["name"] for n in nodes}
        error: Exception | None = None
        if self.expectations.satisfied(key) and not ds["metadata"].get("deletionTimestamp"):
            try:
                await self._manage(key, ds, nodes, node_names, by_node, revision)
            except ApiError as e:
                error = e
        await self._update_status(ds, nodes, by_node, revision)
        if error is not None:
            raise error

    async def _manage(self, key: str, ds: dict, nodes: list[dict], node_names: set[str],
                      by_node: dict[str, list[dict]], revision: str) -> None:
        """Create missing daemon pods, delete extra, misplaced and failed ones, then roll out
        (manage + rollingUpdate)."""
        to_create: list[str] = []
        to_delete: list[dict] = []
        for node in nodes:
            node_name = node["metadata"]["name"]
            here = by_node.get(node_name, [])
            if node_should_run(ds, node):
                failed = [p for p in here if (p.get("status") or {}).get("phase") == "Failed"]
                if failed:
                    to_delete += failed
                    self.recorder.event(ds, WARNING, "FailedDaemonPod",
                                        f"Found failed daemon pod {ds['metadata'].get('namespace')}/"
                                        f"{failed[0]['metadata']['name']} on node {node_name}, will try to kill it")
                live = [p for p in here if is_pod_active(p)]
                if not live and not failed:
                    to_create.append(node_name)
                elif len(live) > 1:
                    live.sort(key=lambda p: (parse_time(p["metadata"].get("creationTimestamp")) or 0.0,
                                             p["metadata"]["name"]))
                    to_delete += live[1:]
            else:
                to_delete += here
        for node_name, here in by_node.items():
            if node_name not in node_names:
                to_delete += here
        if not to_create and not to_delete and \
                ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            to_delete += self._rolling_update_victims(ds, nodes, by_node, revision)
        await self._sync_nodes(key, ds, to_create, to_delete, revision)

    def _rolling_update_victims(self, ds: dict, nodes: list[dict], by_node: dict[str, list[dict]],
                                revision: str) -> list[dict]:
        """Old-revision pods to delete now: unavailable old ones first, then available ones while
        fewer than maxUnavailable nodes are without an available pod (update.go rollingUpdate)."""
        desired = [n["metadata"]["name"] for n in nodes if node_should_run(ds, n)]
        ru = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
        max_unavailable = max(1, scaled_value(ru.get("maxUnavailable", 1), len(desired), round_up=True))
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()
        unavailable, old_available, victims = 0, [], []
        for node_name in desired:
            live = [p for p in by_node.get(node_name, []) if is_pod_active(p)]
            if not live:
                unavailable += 1
                continue
            pod = live[0]
            available = is_pod_available(pod, min_ready, now)
            if not available:
                unavailable += 1
            if labels_of(pod).get(REVISION_LABEL) != revision:
                if available:
                    old_available.append(pod)
                else:
                    victims.append(pod)
        budget = max_unavailable - unavailable
        victims += old_available[:max(0, budget)]
        return victims

    async def _sync_nodes(self, key: str, ds: dict, to_create: list[str], to_delete: list[dict],
                          revision: str) -> None:
        ns = ds["metadata"].get("namespace")
        self.expectations.expect_creations(key, len(to_create))
        self.expectations.expect_deletions(key, [meta_key(p) for p in to_delete])

        async def create(node_name: str) -> None:
            try:
                created = await self.client.create("pods", pod_for_node(ds, node_name, revision), namespace=ns)
                self.recorder.event(ds, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
            except ApiError as e:
                self.expectations.creation_observed(key)
                self.recorder.event(ds, WARNING, "FailedCreate", f"Error creating: {e}")
                raise

        async def delete(pod: dict) -> None:
            try:
                await self.client.delete("pods", pod["metadata"]["name"], namespace=ns)
                self.recorder.event(ds, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
            except ApiError as e:
                self.expectations.deletion_observed(key, meta_key(pod))
                if e.code != 404:
                    self.recorder.event(ds, WARNING, "FailedDelete", f"Error deleting: {e}")
                    raise

        results = await asyncio.gather(*(create(n) for n in to_create), *(delete(p) for p in to_delete),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]

    async def _update_status(self, ds: dict, nodes: list[dict], by_node: dict[str, list[dict]],
                             revision: str) -> None:
        """Write upstream's counters (updateDaemonSetStatus) when they changed."""
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()
        desired = current = misscheduled = ready = updated = available = 0
        for node in nodes:
            node_name = node["metadata"]["name"]
            live = [p for p in by_node.get(node_name, []) if is_pod_active(p)]
            if node_should_run(ds, node):
                desired += 1
                if live:
                    current += 1
                    pod = live[0]
                    ready += is_pod_ready(pod)
                    available += is_pod_available(pod, min_ready, now)
                    updated += labels_of(pod).get(REVISION_LABEL) == revision
            elif live:
                misscheduled += 1
        status = dict(ds.get("status") or {})
        status.update({"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                       "numberMisscheduled": misscheduled, "numberReady": ready,
                       "updatedNumberScheduled": updated, "numberAvailable": available,
                       "numberUnavailable": max(0, desired - available),
                       "observedGeneration": ds["metadata"].get("generation", 0)})
        await write_status(self.client, "daemonsets", ds, status)
