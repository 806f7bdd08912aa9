"""TaintToleration filter and score: a pod lands on a node only if it
tolerates every NoSchedule / NoExecute taint of the node, and prefers nodes
with fewer PreferNoSchedule taints it does not tolerate.

Mirrors pkg/scheduler/framework/plugins/tainttoleration and the helpers of
k8s.io/api/core/v1 (Toleration.ToleratesTaint), shared through kubeling/api/scheduling.py.
"""
from __future__ import annotations

from kubeling.api.scheduling import tolerates
from scheduler.framework.interface import SUCCESS, CycleState, Status, default_normalize_score, unschedulable
from scheduler.framework.types import NodeInfo

FILTERED_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_message(taint: dict) -> str:
    """Upstream's reason text: ``node(s) had untolerated taint {key: value}``."""
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def _prefer_no_schedule_tolerations(pod: dict) -> list[dict]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or []
            if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]


class TaintToleration:
    """Filter on spec.taints of the node against spec.tolerations of the pod."""

    name = "TaintToleration"

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS unless the node has a NoSchedule/NoExecute taint the pod does not tolerate
        (UnschedulableAndUnresolvable naming the first such taint).
        """
        taints = node_info.taints
        if not taints:
            return SUCCESS
        tolerations = (pod.get("spec") or {}).get("tolerations")
        for taint in taints:
            if taint.get("effect") in FILTERED_EFFECTS and not tolerates(tolerations, taint):
                return unschedulable(self.name, untolerated_message(taint), resolvable=False)
        return SUCCESS

    weight = 3  # upstream's default-profile weight for TaintToleration

    _key = "TaintToleration/score"

    def pre_score(self, pod: dict, nodes, state: CycleState) -> None:
        """The pod's tolerations that count for scoring, once per cycle (upstream's PreScore)."""
        state[self._key] = _prefer_no_schedule_tolerations(pod)

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """Raw score: how many PreferNoSchedule taints of the node the pod does not tolerate
        (only tolerations with effect PreferNoSchedule or empty count, as upstream)."""
        taints = node_info.taints
        if not taints:
            return 0
        tolerations = state.get(self._key) if state is not None else None
        if tolerations is None:
            tolerations = _prefer_no_schedule_tolerations(pod)
        return sum(1 for taint in taints
                   if taint.get("effect") == "PreferNoSchedule" and not tolerates(tolerations, taint))

    def normalize_score(self, pod: dict, scores: dict[str, int], state: CycleState | None = None) -> None:
        """Reverse-normalize: the node with the fewest intolerable taints gets MAX_NODE_SCORE."""
        default_normalize_score(scores, reverse=True)
