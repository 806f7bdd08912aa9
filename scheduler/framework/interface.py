"""The plugin interface of the scheduling framework: Status and the
Filter / Score extension points.

Mirrors kube-scheduler's pkg/scheduler/framework/interface.go and
cycle_state.go, reduced to PreFilter / Filter / PreScore / Score /
NormalizeScore. Plugins are plain objects with a ``name`` and the methods of
the points they implement; they never call the API. Data a plugin computes
once per cycle (PreFilter, PreScore) lives in a CycleState keyed by plugin
name, as upstream, so plugin objects stay stateless between pods.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Protocol, Sequence

from scheduler.framework.types import NodeInfo

MAX_NODE_SCORE = 100
# CycleState key under which the framework puts every NodeInfo of the
# snapshot, for plugins whose PreScore must look beyond the feasible nodes.
ALL_NODES = "__all_nodes__"
# What a PreScore returns when its plugin has nothing to say this cycle: the
# framework then skips its Score calls (upstream's framework.Skip); every node gets 0.
SKIP = False


class Code(enum.Enum):
    """Outcome of a plugin call (upstream's framework.Code)."""

    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    # The node cannot fit the pod whatever other pods do (no preemption would help).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    # From a PreFilter: this plugin has nothing to check for this pod; its Filter is skipped.
    SKIP = 4


@dataclasses.dataclass(frozen=True)
class Status:
    """A plugin's answer: ``code`` and human reasons (``["Insufficient cpu"]``)."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        """True for SUCCESS."""
        return self.code is Code.SUCCESS


SUCCESS = Status()
SKIP_FILTER = Status(Code.SKIP)


def unschedulable(plugin: str, *reasons: str, resolvable: bool = True) -> Status:
    """A failed-filter Status naming ``plugin`` and its reasons."""
    code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    return Status(code, tuple(reasons), plugin)


class CycleState(dict):
    """Per-scheduling-cycle scratch space, plugin name -> whatever that plugin
    computed in PreFilter / PreScore (upstream's framework.CycleState).
    ``active_filters`` is (the filter list given to run_pre_filters, the ones
    whose PreFilter did not return SKIP_FILTER)."""

    active_filters: tuple | None = None


class FilterPlugin(Protocol):
    """Decides whether a pod may run on one node (upstream's FilterPlugin).

    A plugin may also define ``pre_filter(pod, nodes, state) -> Status`` (run
    once per cycle before any filter, with every NodeInfo of the snapshot);
    a non-success Status there rejects the pod on every node.
    """

    name: str

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS if ``pod`` may run on ``node_info``'s node, else an unschedulable Status with reasons
        (mirrors framework.FilterPlugin.Filter).
        """


class ScorePlugin(Protocol):
    """Ranks a feasible node (upstream's ScorePlugin).

    ``score`` gives a raw score; a plugin whose raw scores are not already
    0..MAX_NODE_SCORE defines ``normalize_score(pod, scores, state=None)`` that
    rewrites the ``{node name: score}`` dict in place (upstream's ScoreExtensions). An
    optional ``pre_score(pod, nodes, state)`` runs once per cycle over the
    feasible nodes; returning SKIP there skips the plugin (all scores 0). The framework multiplies each normalized score by ``weight``.
    """

    name: str
    weight: int

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """Raw score of ``node_info``'s node for ``pod``, higher is better (upstream's ScorePlugin.Score)."""


def default_normalize_score(scores: dict[str, int], *, reverse: bool = False,
                            max_priority: int = MAX_NODE_SCORE) -> None:
    """Scale ``scores`` in place so the highest becomes ``max_priority``;
    ``reverse`` flips them (max - score), so the lowest raw score wins.
    All zero -> all 0, or all ``max_priority`` when reversed.
    Mirrors pkg/scheduler/framework/plugins/helper.DefaultNormalizeScore.
    """
    top = max(scores.values(), default=0)
    if top == 0:
        if reverse:
            for name in scores:
                scores[name] = max_priority
        return
    for name, score in scores.items():
        score = max_priority * score // top
        scores[name] = max_priority - score if reverse else score


def run_pre_filters(pod: dict, nodes: Sequence[NodeInfo], filters: Sequence, state: CycleState) -> Status:
    """Run every plugin's ``pre_filter``; the first rejecting Status, else SUCCESS.
    Plugins answering SKIP_FILTER are left out of this cycle's filtering
    (``state.active_filters``), as upstream's PreFilter Skip."""
    active = []
    for plugin in filters:
        pre = getattr(plugin, "pre_filter", None)
        if pre is not None:
            status = pre(pod, nodes, state)
            if status.code is Code.SKIP:
                continue
            if not status.ok:
                return status
        active.append(plugin)
    state.active_filters = (filters, active)
    return SUCCESS
