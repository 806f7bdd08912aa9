"""NodeResourcesFit filter and the resource-based scores.

Mirrors pkg/scheduler/framework/plugins/noderesources: the Fit filter
compares the pod's requests with the node's allocatable minus what bound and
assumed pods already request; LeastAllocated favours the emptiest node and
BalancedAllocation the node whose cpu and memory use stay closest, both on
the "non-zero" requests (a pod requesting nothing still counts 100m / 200Mi).
"""
from __future__ import annotations

from scheduler.framework.interface import MAX_NODE_SCORE, SUCCESS, Status, unschedulable
from scheduler.framework.types import NodeInfo, pod_requests


def insufficient_resources(pod: dict, node_info: NodeInfo) -> list[str]:
    """Reasons the node cannot hold the pod's requests, in upstream's words:
    ``Too many pods``, ``Insufficient cpu``, ``Insufficient memory``."""
    req = pod_requests(pod)
    alloc = node_info.allocatable
    used = node_info.requested
    reasons = []
    if len(node_info.pods) + 1 > alloc.pods:
        reasons.append("Too many pods")
    if req.milli_cpu > 0 and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if req.memory > 0 and req.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    return reasons


class NodeResourcesFit:
    """Filter: cpu, memory and pod-count requests fit the node's free allocatable."""

    name = "NodeResourcesFit"

    def filter(self, pod: dict, node_info: NodeInfo) -> Status:
        """SUCCESS if the node's allocatable fits the pod's requests plus those already placed,
        else Unschedulable with an "Insufficient <resource>" reason each (mirrors NodeResourcesFit.Filter).
        """
        reasons = insufficient_resources(pod, node_info)
        if not reasons:
            return SUCCESS
        return unschedulable(self.name, *reasons)


def _fractions(pod: dict, node_info: NodeInfo) -> list[tuple[int, int]]:
    """(requested incl. this pod, allocatable) for cpu and memory, non-zero requests."""
    req = pod_requests(pod, non_zero=True)
    used = node_info.non_zero_requested
    alloc = node_info.allocatable
    return [(used.milli_cpu + req.milli_cpu, alloc.milli_cpu), (used.memory + req.memory, alloc.memory)]


class LeastAllocated:
    """Score: mean over cpu and memory of (allocatable - requested) / allocatable * 100."""

    name = "NodeResourcesLeastAllocated"
    weight = 1

    def score(self, pod: dict, node_info: NodeInfo) -> int:
        """Mean free fraction of cpu and memory after placing the pod, scaled to 0..MAX_NODE_SCORE
        (mirrors NodeResourcesFit's LeastAllocated scorer).
        """
        total = 0
        pairs = _fractions(pod, node_info)
        for requested, allocatable in pairs:
            if allocatable <= 0 or requested > allocatable:
                continue
            total += (allocatable - requested) * MAX_NODE_SCORE // allocatable
        return total // len(pairs)


class BalancedAllocation:
    """Score: 100 * (1 - standard deviation of the cpu and memory fractions)."""

    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def score(self, pod: dict, node_info: NodeInfo) -> int:
        """MAX_NODE_SCORE minus the spread of cpu and memory use fractions after placing the pod, 0..MAX_NODE_SCORE
        (mirrors NodeResourcesBalancedAllocation).
        """
        fractions = [min(r / a, 1.0) if a > 0 else 1.0 for r, a in _fractions(pod, node_info)]
        std = abs(fractions[0] - fractions[1]) / 2
        return int((1 - std) * MAX_NODE_SCORE)
