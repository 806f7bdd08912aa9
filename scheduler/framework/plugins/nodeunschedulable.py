"""NodeUnschedulable filter: cordoned nodes (spec.unschedulable) take no new pods,
unless the pod tolerates the node.kubernetes.io/unschedulable taint.

Mirrors pkg/scheduler/framework/plugins/nodeunschedulable.
"""
from __future__ import annotations

from kubeling.api.scheduling import tolerates
from scheduler.framework.interface import SUCCESS, CycleState, Status, unschedulable
from scheduler.framework.types import NodeInfo

ERR_REASON = "node(s) were unschedulable"
TAINT_UNSCHEDULABLE = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    """Filter on spec.unschedulable."""

    name = "NodeUnschedulable"

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS unless the node is cordoned (``spec.unschedulable``) and the pod does not tolerate that taint."""
        if not node_info.unschedulable:
            return SUCCESS
        if tolerates((pod.get("spec") or {}).get("tolerations"), TAINT_UNSCHEDULABLE):
            return SUCCESS
        return unschedulable(self.name, ERR_REASON, resolvable=False)
