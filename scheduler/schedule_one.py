"""One scheduling decision: filter the nodes, score the feasible ones, pick one.

Mirrors kube-scheduler's pkg/scheduler/schedule_one.go (schedulePod,
findNodesThatFitPod, prioritizeNodes, selectHost), framework/runtime's
RunFilterPlugins / RunScorePlugins (normalize, then weight), and the
FitError message that ends up in the pod's PodScheduled condition and
FailedScheduling Event, including the DefaultPreemption post-filter tail.
"""
from __future__ import annotations

import collections
import dataclasses
import random
from typing import Callable, Sequence

from scheduler.framework.interface import (ALL_NODES, SKIP, SUCCESS, CycleState, FilterPlugin, ScorePlugin, Status,
                                           run_pre_filters)
from scheduler.framework.plugins.defaultpreemption import PreemptionResult, preempt
from scheduler.framework.types import NodeInfo

NO_NODES_AVAILABLE = "no nodes available to schedule pods"
# Upstream's minFeasibleNodesToFind / minFeasibleNodesPercentageToFind.
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough to stop filtering (upstream's
    numFeasibleNodesToFind): all below 100 nodes; else ``percentage`` of them,
    by default 50% - nodes/125 (at least 5%), and never fewer than 100."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if percentage >= 100:
        return num_all_nodes
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


@dataclasses.dataclass
class NodeSearch:
    """Where the next cycle starts filtering (upstream's nextStartNodeIndex), so that
    stopping early at ``num_feasible_nodes_to_find`` still visits every node in turn.
    ``percentage`` is percentageOfNodesToScore (0 = adaptive default)."""

    next_start_node_index: int = 0
    percentage: int = 0


class FitError(Exception):
    """No node passed the filters. ``diagnosis`` maps node name -> failing Status;
    ``post_filter_msg`` is what preemption had to say ("" = nothing).

    ``str(err)`` is upstream's message, e.g.
    ``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.
    preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod,
    2 Preemption is not helpful for scheduling..``
    """

    def __init__(self, num_all_nodes: int, diagnosis: dict[str, Status], *, pre_filter_msg: str = "",
                 post_filter_msg: str = ""):
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis
        self.pre_filter_msg = pre_filter_msg
        self.post_filter_msg = post_filter_msg
        super().__init__()

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        """The FailedScheduling message as upstream's FitError.Error()."""
        if self.num_all_nodes == 0:
            return NO_NODES_AVAILABLE
        msg = f"0/{self.num_all_nodes} nodes are available:"
        if self.pre_filter_msg:
            msg += f" {self.pre_filter_msg}."
        counts: collections.Counter[str] = collections.Counter()
        for status in self.diagnosis.values():
            counts.update(status.reasons)
        reasons = sorted(f"{n} {reason}" for reason, n in counts.items())
        if reasons:
            msg += f" {', '.join(reasons)}."
        if self.post_filter_msg:
            msg += f" {self.post_filter_msg}."
        return msg

    def unschedulable_plugins(self) -> set[str]:
        """Names of the plugins that rejected the pod on some node (upstream's UnschedulablePlugins)."""
        return {s.plugin for s in self.diagnosis.values() if s.plugin}


def run_filters(pod: dict, node_info: NodeInfo, filters: Sequence[FilterPlugin],
                state: CycleState | None = None) -> Status:
    """The first failing filter's Status, or success (upstream stops at the first failure).
    Filters whose PreFilter skipped them this cycle (``state.active_filters``) are not run."""
    for plugin in _active_filters(filters, state):
        status = plugin.filter(pod, node_info, state)
        if status is not SUCCESS and not status.ok:
            return status
    return SUCCESS


def _active_filters(filters: Sequence[FilterPlugin], state: CycleState | None) -> Sequence[FilterPlugin]:
    active = getattr(state, "active_filters", None)
    return active[1] if active is not None and active[0] is filters else filters


def _priority(pod: dict) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def run_filters_with_nominated_pods(pod: dict, node_info: NodeInfo, filters: Sequence[FilterPlugin],
                                    state: CycleState | None, nominated: list[dict]) -> Status:
    """Upstream's RunFilterPluginsWithNominatedPods: when pods of equal or higher
    priority are nominated to this node (they preempted for room there), the pod
    must fit with them counted too, and also without them (for affinity to them)."""
    key = ((pod.get("metadata") or {}).get("namespace"), (pod.get("metadata") or {}).get("name"))
    prio = _priority(pod)
    ahead = [p for p in nominated if _priority(p) >= prio and
             ((p.get("metadata") or {}).get("namespace"), (p.get("metadata") or {}).get("name")) != key]
    if ahead:
        with_nominated = node_info.clone()
        for p in ahead:
            with_nominated.add_pod({**p, "spec": {**(p.get("spec") or {}), "nodeName": node_info.name}})
        status = run_filters(pod, with_nominated, filters, state)
        if not status.ok:
            return status
    return run_filters(pod, node_info, filters, state)


def find_nodes_that_fit(pod: dict, nodes: Sequence[NodeInfo], filters: Sequence[FilterPlugin],
                        state: CycleState | None = None, *, search: NodeSearch | None = None,
                        nominated: Callable[[str], list[dict]] | None = None
                        ) -> tuple[list[NodeInfo], dict[str, Status]]:
    """(feasible nodes, diagnosis of the others by node name). Runs the pre-filters
    first when no ``state`` is given; a failing pre-filter rejects every node.

    With ``search``, filtering starts at its index and stops once
    ``num_feasible_nodes_to_find`` nodes fit (upstream's findNodesThatPassFilters);
    the index then moves past the nodes looked at. Without it every node is filtered.
    ``nominated(node name)`` gives the pods nominated to a node (see
    ``run_filters_with_nominated_pods``).
    """
    if state is None:
        state = CycleState()
        status = run_pre_filters(pod, nodes, filters, state)
        if not status.ok:
            return [], {info.name: status for info in nodes}
    n = len(nodes)
    want = num_feasible_nodes_to_find(n, search.percentage) if search is not None else n
    start = search.next_start_node_index % n if search is not None and n else 0
    feasible, diagnosis = [], {}
    processed = 0
    # This loop runs for hundreds of nodes per pod: run_filters is inlined and the
    # active filter list resolved once (same order, same first-failure rule).
    active = _active_filters(filters, state)
    for i in range(n):
        info = nodes[(start + i) % n]
        processed += 1
        waiting = nominated(info.name) if nominated is not None else None
        status = SUCCESS
        if waiting:
            status = run_filters_with_nominated_pods(pod, info, filters, state, waiting)
        else:
            for plugin in active:
                status = plugin.filter(pod, info, state)
                if status is not SUCCESS and not status.ok:
                    break
        if status is SUCCESS or status.ok:
            feasible.append(info)
            if len(feasible) >= want:
                break
        else:
            diagnosis[info.name] = status
    if search is not None and n:
        search.next_start_node_index = (start + processed) % n
    return feasible, diagnosis


def prioritize_nodes(pod: dict, nodes: Sequence[NodeInfo], scores: Sequence[ScorePlugin],
                     state: CycleState | None = None) -> list[tuple[str, int]]:
    """(node name, total) per feasible node: each plugin's scores are normalized
    (if it has ``normalize_score``), multiplied by its weight, and summed."""
    state = state if state is not None else CycleState()
    totals = [0] * len(nodes)
    for plugin in scores:
        pre = getattr(plugin, "pre_score", None)
        if pre is not None and pre(pod, nodes, state) is SKIP:
            continue
        score, weight = plugin.score, plugin.weight
        normalize = getattr(plugin, "normalize_score", None)
        if normalize is None:  # raw scores are final: no {name: score} dict needed
            for i, info in enumerate(nodes):
                totals[i] += weight * score(pod, info, state)
            continue
        raw = {info.name: score(pod, info, state) for info in nodes}
        normalize(pod, raw, state)
        for i, value in enumerate(raw.values()):  # raw keeps the nodes' order
            totals[i] += weight * value
    return [(info.name, total) for info, total in zip(nodes, totals)]


def select_host(scored: Sequence[tuple[str, int]], rng: random.Random) -> str:
    """The highest-scoring node; ties broken uniformly at random (as upstream's reservoir
    sampling, with one random draw instead of one per tie: on equal nodes every one ties)."""
    if not scored:
        return ""
    best = max(score for _, score in scored)
    ties = [name for name, score in scored if score == best]
    return ties[rng.randrange(len(ties))] if len(ties) > 1 else ties[0]


def schedule_pod(pod: dict, nodes: Sequence[NodeInfo], filters: Sequence[FilterPlugin],
                 scores: Sequence[ScorePlugin], *, rng: random.Random | None = None,
                 search: NodeSearch | None = None,
                 nominated: Callable[[str], list[dict]] | None = None) -> str:
    """Name of the node ``pod`` should run on. Raises FitError when none fits
    (without the preemption tail; see ``post_filter``). ``search`` enables upstream's
    early stop at enough feasible nodes and ``nominated`` counts pods nominated by
    preemption (see ``find_nodes_that_fit``)."""
    if not nodes:
        raise FitError(0, {})
    state = CycleState({ALL_NODES: nodes})
    status = run_pre_filters(pod, nodes, filters, state)
    if not status.ok:
        # As upstream, the pre-filter's message replaces the per-node histogram.
        raise FitError(len(nodes), {}, pre_filter_msg=" ".join(status.reasons))
    nominated_node = (pod.get("status") or {}).get("nominatedNodeName")
    if nominated_node:
        # A pod that preempted tries the node it freed first (upstream's evaluateNominatedNode).
        target = next((info for info in nodes if info.name == nominated_node), None)
        if target is not None:
            waiting = nominated(target.name) if nominated is not None else None
            status = (run_filters_with_nominated_pods(pod, target, filters, state, waiting) if waiting
                      else run_filters(pod, target, filters, state))
            if status.ok:
                return target.name
    feasible, diagnosis = find_nodes_that_fit(pod, nodes, filters, state, search=search, nominated=nominated)
    if not feasible:
        raise FitError(len(nodes), diagnosis)
    if len(feasible) == 1:
        return feasible[0].name
    return select_host(prioritize_nodes(pod, feasible, scores, state), rng or random.Random())


def post_filter(pod: dict, nodes: Sequence[NodeInfo], err: FitError,
                filters: Sequence[FilterPlugin]) -> PreemptionResult:
    """Run DefaultPreemption after ``err``; sets ``err.post_filter_msg`` and returns the result
    (a candidate node and victims when evicting lower-priority pods would make room)."""
    if err.num_all_nodes == 0:
        return PreemptionResult(None, "")
    result = preempt(pod, nodes, err.diagnosis, filters)
    err.post_filter_msg = result.message
    return result
