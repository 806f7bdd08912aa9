"""NodeReady filter: only nodes whose Ready condition is True take new pods.

Upstream gets this effect indirectly: the node lifecycle controller taints a
node node.kubernetes.io/not-ready (Ready False) or node.kubernetes.io/unreachable
(Ready Unknown or missing) and the TaintToleration filter refuses it. This
plugin derives the same taints from the condition directly, so pods that
tolerate them (as DaemonSet pods do) still fit, and the failure reason reads
as upstream's.
"""
from __future__ import annotations

from kubeling.api.scheduling import tolerates
from scheduler.framework.interface import SUCCESS, CycleState, Status, unschedulable
from scheduler.framework.plugins.tainttoleration import untolerated_message
from scheduler.framework.types import NodeInfo, node_ready_status

TAINT_NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
TAINT_UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}


ready_status = node_ready_status  # the Ready condition's status: "True", "False" or "Unknown"


class NodeReady:
    """Filter on the node's Ready condition."""

    name = "NodeReady"

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS if the node is Ready or the pod tolerates its not-ready/unreachable taint,
        else UnschedulableAndUnresolvable.
        """
        status = node_info.ready_status  # read once per node object (NodeInfo.set_node)
        if status == "True":
            return SUCCESS
        taint = TAINT_NOT_READY if status == "False" else TAINT_UNREACHABLE
        if tolerates((pod.get("spec") or {}).get("tolerations"), taint):
            return SUCCESS
        return unschedulable(self.name, untolerated_message(taint), resolvable=False)
