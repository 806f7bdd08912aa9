"""NodeResourcesFit filter and the resource-based scores.

Mirrors pkg/scheduler/framework/plugins/noderesources: the Fit filter
compares the pod's requests (cpu, memory, ephemeral-storage, one pod slot)
with the node's allocatable minus what bound and assumed pods already
request. NodeResourcesFit's default scoring strategy, LeastAllocated,
favours the emptiest node on the "non-zero" requests (a container
requesting nothing still counts 100m / 200Mi, so such pods spread);
NodeResourcesBalancedAllocation favours the node whose cpu and memory
fractions stay closest, on the real requests (upstream's useRequested).
"""
from __future__ import annotations

from scheduler.framework.interface import MAX_NODE_SCORE, SUCCESS, CycleState, Status, unschedulable
from scheduler.framework.types import NodeInfo, Resource, pod_requests

TOO_MANY_PODS = "Too many pods"


def insufficient_resources(pod: dict, node_info: NodeInfo, *, requests: Resource | None = None) -> list[str]:
    """Reasons the node cannot hold the pod's requests, in upstream's words and
    order (fitsRequest): ``Too many pods``, ``Insufficient cpu``,
    ``Insufficient memory``, ``Insufficient ephemeral-storage``."""
    req = requests if requests is not None else pod_requests(pod)
    alloc = node_info.allocatable
    used = node_info.requested
    reasons = []
    if len(node_info.pods) + 1 > alloc.pods:
        reasons.append(TOO_MANY_PODS)
    if req.milli_cpu > 0 and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if req.memory > 0 and req.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    if req.ephemeral_storage > 0 and req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage:
        reasons.append("Insufficient ephemeral-storage")
    return reasons


class NodeResourcesFit:
    """Filter: cpu, memory, ephemeral-storage and pod-count requests fit the node's free allocatable."""

    name = "NodeResourcesFit"

    def pre_filter(self, pod: dict, nodes, state: CycleState) -> Status:
        """Compute the pod's requests once per cycle (upstream's PreFilter)."""
        state[self.name] = pod_requests(pod)
        return SUCCESS

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS if the node's allocatable fits the pod's requests plus those already placed,
        else Unschedulable with one reason per short resource (mirrors NodeResourcesFit.Filter).
        """
        req = state.get(self.name) if state is not None else None
        if req is not None:
            # The common case in one pass, without building a reasons list per node.
            alloc, used = node_info.allocatable, node_info.requested
            if len(node_info.pods) < alloc.pods and req.milli_cpu <= alloc.milli_cpu - used.milli_cpu and \
                    req.memory <= alloc.memory - used.memory and \
                    req.ephemeral_storage <= alloc.ephemeral_storage - used.ephemeral_storage:
                return SUCCESS
        reasons = insufficient_resources(pod, node_info, requests=req)
        if not reasons:
            return SUCCESS
        return unschedulable(self.name, *reasons)


def least_requested_score(requested: int, capacity: int) -> int:
    """(capacity - requested) * 100 / capacity; 0 when over capacity or capacity is 0."""
    if capacity <= 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


class LeastAllocated:
    """Score of NodeResourcesFit's LeastAllocated strategy (cpu and memory, weight 1 each):
    the mean of (allocatable - requested) / allocatable * 100, integer arithmetic as upstream."""

    name = "NodeResourcesFit"
    weight = 1
    _key = "NodeResourcesFit/score"

    def pre_score(self, pod: dict, nodes, state: CycleState) -> None:
        """The pod's non-zero requests, once per cycle (upstream's PreScore)."""
        state[self._key] = pod_requests(pod, non_zero=True)

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """0..MAX_NODE_SCORE; resources the node has none of are skipped (mirrors leastResourceScorer)."""
        req = (state.get(self._key) if state is not None else None) or pod_requests(pod, non_zero=True)
        used = node_info.non_zero_requested
        alloc = node_info.allocatable
        if alloc.milli_cpu > 0 and alloc.memory > 0:  # the usual node: both resources, no loop
            return (least_requested_score(used.milli_cpu + req.milli_cpu, alloc.milli_cpu) +
                    least_requested_score(used.memory + req.memory, alloc.memory)) // 2
        total = weight_sum = 0
        for requested, allocatable in ((used.milli_cpu + req.milli_cpu, alloc.milli_cpu),
                                       (used.memory + req.memory, alloc.memory)):
            if allocatable == 0:
                continue
            total += least_requested_score(requested, allocatable)
            weight_sum += 1
        return total // weight_sum if weight_sum else 0


class BalancedAllocation:
    """Score: 100 * (1 - standard deviation of the cpu and memory request fractions)
    (NodeResourcesBalancedAllocation, on real requests plus the pod's)."""

    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def pre_score(self, pod: dict, nodes, state: CycleState) -> None:
        """The pod's requests, once per cycle (upstream's PreScore)."""
        state[self.name] = pod_requests(pod)

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """0..MAX_NODE_SCORE; with two resources the std is |f_cpu - f_mem| / 2 (mirrors balancedResourceScorer)."""
        req = (state.get(self.name) if state is not None else None) or pod_requests(pod)
        used = node_info.requested
        alloc = node_info.allocatable
        if alloc.milli_cpu > 0 and alloc.memory > 0:  # the usual node: both resources, no list
            f_cpu = min((used.milli_cpu + req.milli_cpu) / alloc.milli_cpu, 1.0)
            f_mem = min((used.memory + req.memory) / alloc.memory, 1.0)
            return int((1 - abs(f_cpu - f_mem) / 2) * MAX_NODE_SCORE)
        fractions = []
        for requested, allocatable in ((used.milli_cpu + req.milli_cpu, alloc.milli_cpu),
                                       (used.memory + req.memory, alloc.memory)):
            if allocatable == 0:
                continue
            fractions.append(min(requested / allocatable, 1.0))
        std = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
        return int((1 - std) * MAX_NODE_SCORE)
