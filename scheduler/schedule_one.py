"""One scheduling decision: filter the nodes, score the feasible ones, pick one.

Mirrors kube-scheduler's pkg/scheduler/schedule_one.go (schedulePod,
findNodesThatFitPod, prioritizeNodes, selectHost) and the FitError message
that ends up in the pod's PodScheduled condition and FailedScheduling Event.
"""
from __future__ import annotations

import collections
import random
from typing import Sequence

from scheduler.framework.interface import FilterPlugin, ScorePlugin, Status
from scheduler.framework.types import NodeInfo

NO_NODES_AVAILABLE = "no nodes available to schedule pods"


class FitError(Exception):
    """No node passed the filters. ``diagnosis`` maps node name -> failing Status.

    ``str(err)`` is upstream's message, e.g.
    ``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.``
    """

    def __init__(self, num_all_nodes: int, diagnosis: dict[str, Status]):
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis
        super().__init__(self.message())

    def message(self) -> str:
        """The FailedScheduling message as upstream, e.g. ``0/3 nodes are available: 3 Insufficient cpu.``"""
        if self.num_all_nodes == 0:
            return NO_NODES_AVAILABLE
        counts: collections.Counter[str] = collections.Counter()
        for status in self.diagnosis.values():
            counts.update(status.reasons)
        reasons = sorted(f"{n} {reason}" for reason, n in counts.items())
        return f"0/{self.num_all_nodes} nodes are available: {', '.join(reasons)}."


def run_filters(pod: dict, node_info: NodeInfo, filters: Sequence[FilterPlugin]) -> Status:
    """The first failing filter's Status, or success (upstream stops at the first failure)."""
    for plugin in filters:
        status = plugin.filter(pod, node_info)
        if not status.ok:
            return status
    return Status()


def find_nodes_that_fit(pod: dict, nodes: Sequence[NodeInfo],
                        filters: Sequence[FilterPlugin]) -> tuple[list[NodeInfo], dict[str, Status]]:
    """(feasible nodes, diagnosis of the others by node name)."""
    feasible, diagnosis = [], {}
    for info in nodes:
        status = run_filters(pod, info, filters)
        if status.ok:
            feasible.append(info)
        else:
            diagnosis[info.name] = status
    return feasible, diagnosis


def prioritize_nodes(pod: dict, nodes: Sequence[NodeInfo],
                     scores: Sequence[ScorePlugin]) -> list[tuple[str, int]]:
    """(node name, weighted total score) for each feasible node."""
    return [(info.name, sum(p.weight * p.score(pod, info) for p in scores)) for info in nodes]


def select_host(scored: Sequence[tuple[str, int]], rng: random.Random) -> str:
    """The highest-scoring node; ties broken uniformly at random (reservoir sampling, as upstream)."""
    best_name, best_score, ties = "", None, 0
    for name, score in scored:
        if best_score is None or score > best_score:
            best_name, best_score, ties = name, score, 1
        elif score == best_score:
            ties += 1
            if rng.randrange(ties) == 0:
                best_name = name
    return best_name


def schedule_pod(pod: dict, nodes: Sequence[NodeInfo], filters: Sequence[FilterPlugin],
                 scores: Sequence[ScorePlugin], *, rng: random.Random | None = None) -> str:
    """Name of the node ``pod`` should run on. Raises FitError when none fits."""
    if not nodes:
        raise FitError(0, {})
    feasible, diagnosis = find_nodes_that_fit(pod, nodes, filters)
    if not feasible:
        raise FitError(len(nodes), diagnosis)
    if len(feasible) == 1:
        return feasible[0].name
    return select_host(prioritize_nodes(pod, feasible, scores), rng or random.Random())
