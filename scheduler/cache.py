"""The scheduler's cache: nodes and the pods counted against them.

Mirrors kube-scheduler's internal cache (pkg/scheduler/internal/cache):
pods bound according to the informer are added, updated and removed as
events arrive; a pod the scheduler has just chosen a node for is *assumed*
there at once, before the binding is written, so the next scheduling cycle
already counts it. When the informer later delivers the bound pod the
assumption is confirmed; when binding fails the pod is forgotten.
"""
from __future__ import annotations

import logging

from kubeling.client import meta_key
from scheduler.framework.plugins.imagelocality import node_images
from scheduler.framework.types import NodeInfo

log = logging.getLogger(__name__)


def _node_name(pod: dict) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


class Snapshot(list):
    """The NodeInfos of one scheduling cycle, sorted by name (upstream's cache.Snapshot),
    with the side tables upstream keeps so that plugins need not walk every node:

    - ``have_pods_with_affinity`` / ``have_pods_with_required_anti_affinity``: the
      NodeInfos holding pods with (required anti-)affinity terms (upstream's
      havePodsWithAffinityNodeInfoList / havePodsWithRequiredAntiAffinityNodeInfoList);
    - ``image_num_nodes``: normalized image name -> how many nodes hold it (upstream's
      imageStates' NumNodes).
    Read-only for the cycle."""

    have_pods_with_affinity: list[NodeInfo]
    have_pods_with_required_anti_affinity: list[NodeInfo]
    image_num_nodes: dict[str, int]


class SchedulerCache:
    """Node name -> NodeInfo, plus which pods are assumed (not yet seen bound)."""

    def __init__(self):
        self.nodes: dict[str, NodeInfo] = {}
        self._pod_nodes: dict[str, str] = {}
        self.assumed: set[str] = set()
        self._snapshot: dict[str, NodeInfo] = {}
        self._snapshot_list: list[NodeInfo] = []
        self._snapshot_index: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._affinity_names: set[str] = set()
        self._anti_affinity_names: set[str] = set()
        self._image_num_nodes: dict[str, int] = {}
        self._node_images: dict[str, frozenset[str]] = {}

    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo()
        return info

    # -- nodes ---------------------------------------------------------------------
    def add_node(self, node: dict) -> None:
        """Add or update a node object."""
        self._info(node["metadata"]["name"]).set_node(node)
        self._dirty.add(node["metadata"]["name"])

    update_node = add_node

    def remove_node(self, node: dict) -> None:
        """Remove a node; its NodeInfo survives while pods still refer to it."""
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            return
        self._dirty.add(name)
        if info.pods:
            info.set_node(None)
        else:
            del self.nodes[name]

    # -- pods ----------------------------------------------------------------------
    def _place(self, pod: dict) -> None:
        key = meta_key(pod)
        previous = self._pod_nodes.get(key)
        if previous is not None and previous != _node_name(pod):
            self._unplace(pod)
        self._info(_node_name(pod)).add_pod(pod)
        self._pod_nodes[key] = _node_name(pod)
        self._dirty.add(_node_name(pod))

    def _unplace(self, pod: dict) -> None:
        key = meta_key(pod)
        name = self._pod_nodes.pop(key, None)
        if name is None:
            return
        info = self.nodes.get(name)
        self._dirty.add(name)
        if info is not None:
            info.remove_pod(pod)
            if info.node is None and not info.pods:
                del self.nodes[name]

    def assume_pod(self, pod: dict) -> None:
        """Count ``pod`` (spec.nodeName already set to the chosen node) before it is bound.
        Raises ValueError if the pod is already counted."""
        key = meta_key(pod)
        if key in self._pod_nodes:
            raise ValueError(f"pod {key} is in the cache, so can't be assumed")
        self._place(pod)
        self.assumed.add(key)

    def forget_pod(self, pod: dict) -> None:
        """Undo ``assume_pod`` (binding failed)."""
        key = meta_key(pod)
        if key in self.assumed:
            self.assumed.discard(key)
            self._unplace(pod)

    def is_assumed(self, pod: dict) -> bool:
        """Whether the pod is assumed and not yet confirmed by the informer."""
        return meta_key(pod) in self.assumed

    def add_pod(self, pod: dict) -> None:
        """The informer delivered a bound pod: confirm an assumption or count it."""
        self.assumed.discard(meta_key(pod))
        self._place(pod)

    def update_pod(self, pod: dict) -> None:
        """A bound pod changed. Status updates (spec and labels as before, same node) only
        swap the object in, without re-accounting requests and ports: the kubelet's status
        writes are most of the pod events a busy cluster delivers."""
        key = meta_key(pod)
        name = self._pod_nodes.get(key)
        if name is not None and name == _node_name(pod) and key not in self.assumed:
            info = self.nodes.get(name)
            if info is not None and info.replace_pod(pod):
                self._dirty.add(name)
                return
        self.add_pod(pod)

    def remove_pod(self, pod: dict) -> None:
        """A bound pod was deleted (or finished): stop counting it."""
        self.assumed.discard(meta_key(pod))
        self._unplace(pod)

    def _set_node_images(self, name: str, images: frozenset[str]) -> None:
        old = self._node_images.get(name, frozenset())
        if old == images:
            return
        # Copy on write: an earlier cycle's Snapshot may still hold the old dict.
        counts = dict(self._image_num_nodes)
        for image in old - images:
            counts[image] -= 1
            if counts[image] <= 0:
                del counts[image]
        for image in images - old:
            counts[image] = counts.get(image, 0) + 1
        self._image_num_nodes = counts
        if images:
            self._node_images[name] = images
        else:
            self._node_images.pop(name, None)

    def _forget_snapshot_node(self, name: str) -> None:
        self._affinity_names.discard(name)
        self._anti_affinity_names.discard(name)
        self._set_node_images(name, frozenset())

    def snapshot(self) -> Snapshot:
        """Copies of the NodeInfos of known nodes, sorted by name, for one scheduling cycle.

        Incremental as upstream's UpdateSnapshot: only NodeInfos whose
        generation changed since the last call are cloned again, so a cycle
        costs O(changed nodes), not O(all pods). Callers must not modify the
        returned NodeInfos (clone one to experiment, as preemption does).
        """
        snap = self._snapshot
        membership_changed = False
        for name in self._dirty:
            info = self.nodes.get(name)
            if info is None or info.node is None:
                membership_changed |= snap.pop(name, None) is not None
                self._forget_snapshot_node(name)
                continue
            copy = snap.get(name)
            if copy is not None and copy.generation == info.generation:
                continue
            snap[name] = fresh = info.clone()
            (self._affinity_names.add if fresh.pods_with_affinity else self._affinity_names.discard)(name)
            (self._anti_affinity_names.add if fresh.pods_with_required_anti_affinity
             else self._anti_affinity_names.discard)(name)
            if copy is None or copy.node is not fresh.node:
                self._set_node_images(name, frozenset(node_images(fresh)))
            if copy is None:
                membership_changed = True
            elif not membership_changed:
                self._snapshot_list[self._snapshot_index[name]] = snap[name]
        self._dirty.clear()
        if membership_changed:
            self._snapshot_list = [snap[name] for name in sorted(snap)]
            self._snapshot_index = {info.name: i for i, info in enumerate(self._snapshot_list)}
        out = Snapshot(self._snapshot_list)  # the cycle may keep it while the cache moves on
        out.have_pods_with_affinity = [snap[name] for name in self._affinity_names]
        out.have_pods_with_required_anti_affinity = [snap[name] for name in self._anti_affinity_names]
        out.image_num_nodes = self._image_num_nodes
        return out
