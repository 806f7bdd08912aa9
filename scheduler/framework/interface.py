"""The plugin interface of the scheduling framework: Status and the
Filter / Score extension points.

Mirrors kube-scheduler's pkg/scheduler/framework/interface.go, reduced to the
extension points a walking skeleton needs. Plugins are plain objects with a
``name`` and ``filter`` and/or ``score`` methods; they never call the API.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from scheduler.framework.types import NodeInfo

MAX_NODE_SCORE = 100


class Code(enum.Enum):
    """Outcome of a plugin call (upstream's framework.Code)."""

    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    # The node cannot fit the pod whatever other pods do (no preemption would help).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3


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


def unschedulable(plugin: str, *reasons: str, resolvable: bool = True) -> Status:
    """A failed-filter Status naming ``plugin`` and its reasons."""
    code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    return Status(code, tuple(reasons), plugin)


class FilterPlugin(Protocol):
    """Decides whether a pod may run on one node (upstream's FilterPlugin)."""

    name: str

    def filter(self, pod: dict, node_info: NodeInfo) -> Status:
        """SUCCESS if ``pod`` may run on ``node_info``'s node, else an unschedulable Status with reasons
        (mirrors framework.FilterPlugin.Filter).
        """


class ScorePlugin(Protocol):
    """Ranks a feasible node 0..MAX_NODE_SCORE (upstream's ScorePlugin, scores already normalized)."""

    name: str
    weight: int

    def score(self, pod: dict, node_info: NodeInfo) -> int:
        """Score of ``node_info``'s node for ``pod``, 0..MAX_NODE_SCORE, higher is better (upstream's ScorePlugin)."""
