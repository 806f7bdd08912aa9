"""NodeName filter: a pod that names its node (spec.nodeName) fits only there.

Mirrors pkg/scheduler/framework/plugins/nodename.
"""
from __future__ import annotations

from scheduler.framework.interface import SUCCESS, CycleState, Status, unschedulable
from scheduler.framework.types import NodeInfo

ERR_REASON = "node(s) didn't match the requested node name"


class NodeName:
    """Filter: spec.nodeName empty or equal to the node's name."""

    name = "NodeName"

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS if ``spec.nodeName`` is unset or names this node, else UnschedulableAndUnresolvable."""
        wanted = (pod.get("spec") or {}).get("nodeName")
        if not wanted or wanted == node_info.name:
            return SUCCESS
        return unschedulable(self.name, ERR_REASON, resolvable=False)
