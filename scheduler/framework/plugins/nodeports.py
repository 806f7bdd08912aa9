"""NodePorts filter: a pod asking for a hostPort fits only on nodes where no
counted pod already holds that (hostIP, protocol, hostPort).

Mirrors pkg/scheduler/framework/plugins/nodeports and
framework.HostPortInfo.CheckConflict: a wanted port on 0.0.0.0 conflicts
with the same protocol/port on any IP; one on a specific IP conflicts with
that IP or 0.0.0.0.
"""
from __future__ import annotations

from scheduler.framework.interface import SKIP_FILTER, SUCCESS, CycleState, Status, unschedulable
from scheduler.framework.types import NodeInfo, host_ports

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"
BIND_ALL = "0.0.0.0"


def port_conflicts(wanted: list[tuple[str, str, int]], used: dict[tuple[str, str, int], int]) -> bool:
    """Whether any wanted (hostIP, protocol, port) clashes with the ``used`` ones."""
    for ip, protocol, port in wanted:
        for used_ip, used_protocol, used_port in used:
            if (used_protocol, used_port) != (protocol, port):
                continue
            if ip == BIND_ALL or used_ip in (BIND_ALL, ip):
                return True
    return False


class NodePorts:
    """Filter on host port conflicts."""

    name = "NodePorts"

    def pre_filter(self, pod: dict, nodes, state: CycleState) -> Status:
        """Collect the pod's host ports once per cycle (upstream's PreFilter); SKIP_FILTER without any."""
        state[self.name] = host_ports(pod)
        return SUCCESS if state[self.name] else SKIP_FILTER

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS unless a wanted host port is taken on the node (Unschedulable: freeing it would help)."""
        wanted = (state or {}).get(self.name)
        if wanted is None:
            wanted = host_ports(pod)
        if wanted and node_info.used_ports and port_conflicts(wanted, node_info.used_ports):
            return unschedulable(self.name, ERR_REASON)
        return SUCCESS
