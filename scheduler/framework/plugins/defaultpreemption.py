"""DefaultPreemption post-filter: when no node fits, could evicting
lower-priority pods make room?

Mirrors pkg/scheduler/framework/plugins/defaultpreemption and
pkg/scheduler/framework/preemption (Evaluator.Preempt, findCandidates,
DryRunPreemption, SelectVictimsOnNode, pickOneNodeForPreemption) without
PodDisruptionBudgets or extenders:
- a pod with preemptionPolicy Never is not eligible;
- nodes that failed UnschedulableAndUnresolvable are not helped
  ("Preemption is not helpful for scheduling");
- on the others, every lower-priority pod is removed; no such pod gives
  "No preemption victims found for incoming pod"; if the pod still does not
  fit, that filter's reasons are kept; otherwise the node is a candidate and
  victims are reprieved, highest priority first, while the pod still fits.
With no candidate the message is upstream's
``preemption: 0/N nodes are available: ...`` (a FitError message of its own,
so the final FailedScheduling text ends in "..", exactly as kube-scheduler's).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

from scheduler.framework.interface import Code, CycleState, Status, run_pre_filters
from scheduler.framework.types import NodeInfo, required_affinity_terms, required_anti_affinity_terms

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_ELIGIBLE_NEVER = "not eligible due to preemptionPolicy=Never."
NOT_ELIGIBLE_TERMINATING = "not eligible due to a terminating pod on the nominated node."
# Upstream's MinCandidateNodesPercentage / MinCandidateNodesAbsolute: the dry run
# stops once this many candidates are found.
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100


def num_candidates(num_nodes: int) -> int:
    """10% of the potential nodes, at least 100, at most all of them (GetOffsetAndNumCandidates)."""
    return min(max(num_nodes * MIN_CANDIDATE_NODES_PERCENTAGE // 100, MIN_CANDIDATE_NODES_ABSOLUTE), num_nodes)


def pod_priority(pod: dict) -> int:
    """spec.priority, 0 when unset (corev1helpers.PodPriority)."""
    return int((pod.get("spec") or {}).get("priority") or 0)


def _start_time(pod: dict) -> str:
    return (pod.get("status") or {}).get("startTime") or ""


@dataclasses.dataclass
class Candidate:
    """A node where evicting ``victims`` (pods, highest priority first) lets the pod fit."""

    node_name: str
    victims: list[dict]


@dataclasses.dataclass
class PreemptionResult:
    """``candidate`` to preempt on, or None with ``message`` (the PostFilter message,
    "" when there is nothing to add)."""

    candidate: Candidate | None
    message: str


def histogram_message(num_nodes: int, statuses: dict[str, Status]) -> str:
    """``0/N nodes are available: <count reason, ...>.`` sorted as upstream's FitError."""
    counts: collections.Counter[str] = collections.Counter()
    for status in statuses.values():
        counts.update(status.reasons)
    msg = f"0/{num_nodes} nodes are available:"
    reasons = sorted(f"{n} {reason}" for reason, n in counts.items())
    if reasons:
        msg += f" {', '.join(reasons)}."
    return msg


def _has_pod_affinity(pod: dict) -> bool:
    return bool(required_affinity_terms(pod) or required_anti_affinity_terms(pod))


def _fits(pod: dict, nodes: Sequence[NodeInfo], target: NodeInfo, filters: Sequence,
          base_state: CycleState | None) -> Status:
    """Filters on ``target``; pre-filter state is recomputed over ``nodes`` unless
    ``base_state`` (computed on the unchanged cluster) is still valid."""
    from scheduler.schedule_one import run_filters  # one filter loop for both paths
    state = base_state
    if state is None:
        state = CycleState()
        status = run_pre_filters(pod, nodes, filters, state)
        if not status.ok:
            return status
    return run_filters(pod, target, filters, state)


def select_victims_on_node(pod: dict, nodes: list[NodeInfo], index: int, filters: Sequence, *,
                           base_state: CycleState | None = None) -> tuple[list[dict] | None, Status | None]:
    """(victims, None) if removing lower-priority pods from ``nodes[index]`` lets ``pod`` fit,
    else (None, why not). ``nodes`` is not modified (the node is cloned). ``base_state``
    is the pre-filter state of the unchanged cluster, reused when no pod involved has
    pod (anti-)affinity and the pod has no spread constraints (only InterPodAffinity's
    and PodTopologySpread's pre-filters look at other pods)."""
    info = nodes[index].clone()
    prio = pod_priority(pod)
    potential = [p for p in info.pods.values() if pod_priority(p) < prio]
    if not potential:
        return None, Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NO_VICTIMS,), "DefaultPreemption")
    if base_state is not None and (_has_pod_affinity(pod) or (pod.get("spec") or {}).get("topologySpreadConstraints")
                                   or any(_has_pod_affinity(p) for p in potential)):
        base_state = None  # evicting changes what InterPodAffinity / PodTopologySpread counted
    for p in potential:
        info.remove_pod(p)
    trial = list(nodes)
    trial[index] = info
    status = _fits(pod, trial, info, filters, base_state)
    if not status.ok:
        return None, status
    # Reprieve as many as possible, most important first (upstream sorts by priority, then start time).
    potential.sort(key=lambda p: (-pod_priority(p), _start_time(p)))
    victims = []
    for p in potential:
        info.add_pod(p)
        if not _fits(pod, trial, info, filters, base_state).ok:
            info.remove_pod(p)
            victims.append(p)
    return victims, None


def _pick(candidates: list[Candidate]) -> Candidate:
    """Upstream's pickOneNodeForPreemption without PDBs: lowest highest-victim priority,
    then lowest priority sum, then fewest victims, then the first."""
    def key(c: Candidate):
        prios = [pod_priority(v) for v in c.victims]
        return (max(prios, default=0), sum(prios), len(c.victims))
    return min(candidates, key=key)


def preempt(pod: dict, nodes: Sequence[NodeInfo], diagnosis: dict[str, Status], filters: Sequence
            ) -> PreemptionResult:
    """Dry-run preemption for ``pod`` that fit nowhere (``diagnosis``: node name -> failing Status)."""
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return PreemptionResult(None, f"preemption: {NOT_ELIGIBLE_NEVER}")
    nodes = list(nodes)
    nominated = (pod.get("status") or {}).get("nominatedNodeName")
    if nominated:
        # Victims of an earlier preemption are still terminating there: wait for them.
        nominated_status = diagnosis.get(nominated)
        info = next((n for n in nodes if n.name == nominated), None)
        if info is not None and (nominated_status is None or nominated_status.code is Code.UNSCHEDULABLE):
            prio = pod_priority(pod)
            if any((p.get("metadata") or {}).get("deletionTimestamp") and pod_priority(p) < prio
                   for p in info.pods.values()):
                return PreemptionResult(None, f"preemption: {NOT_ELIGIBLE_TERMINATING}")
    statuses: dict[str, Status] = {}
    candidates = []
    potential = {i for i, info in enumerate(nodes)
                 if (s := diagnosis.get(info.name)) is not None and s.code is Code.UNSCHEDULABLE}
    wanted = num_candidates(len(potential))
    base_state = CycleState()
    if not run_pre_filters(pod, nodes, filters, base_state).ok:
        base_state = None
    for i, info in enumerate(nodes):
        if i not in potential:
            statuses[info.name] = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NOT_HELPFUL,), "DefaultPreemption")
            continue
        if len(candidates) >= wanted:
            continue  # enough candidates: upstream stops the dry run here
        victims, why = select_victims_on_node(pod, nodes, i, filters, base_state=base_state)
        if victims is None:
            statuses[info.name] = why
        elif victims:
            candidates.append(Candidate(info.name, victims))
        else:
            statuses[info.name] = Status(Code.ERROR, (f'expected at least one victim pod on node "{info.name}"',))
    if candidates:
        return PreemptionResult(_pick(candidates), "")
    return PreemptionResult(None, "preemption: " + histogram_message(len(nodes), statuses))
