"""The in-tree plugins kubeling's scheduler runs, named as upstream's
(pkg/scheduler/framework/plugins/...), and the default profile."""
from scheduler.framework.plugins.nodeaffinity import NodeAffinity
from scheduler.framework.plugins.nodename import NodeName
from scheduler.framework.plugins.nodeready import NodeReady
from scheduler.framework.plugins.noderesources import BalancedAllocation, LeastAllocated, NodeResourcesFit
from scheduler.framework.plugins.nodeunschedulable import NodeUnschedulable
from scheduler.framework.plugins.tainttoleration import TaintToleration


def default_filters() -> list:
    """Filter plugins in upstream's default-profile order (cheap, unresolvable checks first)."""
    return [NodeUnschedulable(), NodeName(), NodeReady(), TaintToleration(), NodeAffinity(), NodeResourcesFit()]


def default_scores() -> list:
    """Score plugins of the default profile."""
    return [LeastAllocated(), BalancedAllocation()]


__all__ = ["BalancedAllocation", "LeastAllocated", "NodeAffinity", "NodeName", "NodeReady", "NodeResourcesFit",
           "NodeUnschedulable", "TaintToleration", "default_filters", "default_scores"]
