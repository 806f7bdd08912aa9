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
from scheduler.framework.types import NodeInfo

log = logging.getLogger(__name__)


def _node_name(pod: dict) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


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

    update_pod = add_pod

    def remove_pod(self, pod: dict) -> None:
        """A bound pod was deleted (or finished): stop counting it."""
        self.assumed.discard(meta_key(pod))
        self._unplace(pod)

    def snapshot(self) -> list[NodeInfo]:
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
                continue
            copy = snap.get(name)
            if copy is not None and copy.generation == info.generation:
                continue
            snap[name] = info.clone()
            if copy is None:
                membership_changed = True
            elif not membership_changed:
                self._snapshot_list[self._snapshot_index[name]] = snap[name]
        self._dirty.clear()
        if membership_changed:
            self._snapshot_list = [snap[name] for name in sorted(snap)]
            self._snapshot_index = {info.name: i for i, info in enumerate(self._snapshot_list)}
        return list(self._snapshot_list)  # the cycle may keep it while the cache moves on
