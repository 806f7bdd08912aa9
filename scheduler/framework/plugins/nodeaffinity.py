"""NodeAffinity filter and score: spec.nodeSelector and required node
affinity filter; preferred node affinity terms score.

Mirrors pkg/scheduler/framework/plugins/nodeaffinity and
component-helpers' nodeaffinity.RequiredNodeAffinity: the nodeSelector map
must match the node's labels, and at least one of the
requiredDuringSchedulingIgnoredDuringExecution terms must match (within a
term every matchExpressions / matchFields requirement must hold; an empty
term matches nothing). The score sums the weights of the
preferredDuringSchedulingIgnoredDuringExecution terms the node matches,
normalized so the best node gets 100.
"""
from __future__ import annotations

from kubeling.api.scheduling import required_node_affinity_matches, term_matches
from scheduler.framework.interface import (SKIP, SKIP_FILTER, SUCCESS, CycleState, Status, default_normalize_score,
                                           unschedulable)
from scheduler.framework.types import NodeInfo

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"

def _preferred(pod: dict) -> list:
    return ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
            .get("preferredDuringSchedulingIgnoredDuringExecution") or [])


class NodeAffinity:
    """Filter on nodeSelector and requiredDuringSchedulingIgnoredDuringExecution;
    score on preferredDuringSchedulingIgnoredDuringExecution."""

    name = "NodeAffinity"
    weight = 2  # upstream's default-profile weight for NodeAffinity

    def pre_filter(self, pod: dict, nodes, state: CycleState) -> Status:
        """SKIP_FILTER when the pod has neither nodeSelector nor required node affinity (upstream's PreFilter)."""
        spec = pod.get("spec") or {}
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution")
        return SUCCESS if spec.get("nodeSelector") or required is not None else SKIP_FILTER

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS if the node matches the pod's nodeSelector and required affinity, else UnschedulableAndUnresolvable."""
        if required_node_affinity_matches(pod, node_info.node or {}):
            return SUCCESS
        return unschedulable(self.name, ERR_REASON_POD, resolvable=False)

    def pre_score(self, pod: dict, nodes, state: CycleState) -> bool | None:
        """SKIP when the pod has no preferred terms (upstream's PreScore)."""
        return None if _preferred(pod) else SKIP

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """Raw score: sum of the weights of the preferred terms ``node_info``'s node matches."""
        preferred = _preferred(pod)
        node = node_info.node or {}
        return sum(int(p.get("weight") or 0) for p in preferred
                   if p.get("weight") and term_matches(p.get("preference") or {}, node))

    def normalize_score(self, pod: dict, scores: dict[str, int], state: CycleState | None = None) -> None:
        """Scale so the best-matching node gets MAX_NODE_SCORE (all 0 when none matches)."""
        default_normalize_score(scores)
