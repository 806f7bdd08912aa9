"""The in-tree plugins kubeling's scheduler runs, named as upstream's
(pkg/scheduler/framework/plugins/...), and the default profile
(pkg/scheduler/apis/config/v1/default_plugins.go)."""
from scheduler.framework.plugins.imagelocality import ImageLocality
from scheduler.framework.plugins.interpodaffinity import InterPodAffinity
from scheduler.framework.plugins.nodeaffinity import NodeAffinity
from scheduler.framework.plugins.nodename import NodeName
from scheduler.framework.plugins.nodeports import NodePorts
from scheduler.framework.plugins.nodeready import NodeReady
from scheduler.framework.plugins.noderesources import BalancedAllocation, LeastAllocated, NodeResourcesFit
from scheduler.framework.plugins.nodeunschedulable import NodeUnschedulable
from scheduler.framework.plugins.podtopologyspread import PodTopologySpread
from scheduler.framework.plugins.tainttoleration import TaintToleration


def default_filters() -> list:
    """Filter plugins in upstream's default-profile order (cheap, unresolvable checks first).
    NodeReady is kubeling's own (see its module); upstream gets it from taints."""
    return [NodeUnschedulable(), NodeName(), NodeReady(), TaintToleration(), NodeAffinity(), NodePorts(),
            NodeResourcesFit(), PodTopologySpread(), InterPodAffinity()]


def default_scores() -> list:
    """Score plugins of the default profile with upstream's weights: TaintToleration 3,
    NodeAffinity 2, NodeResourcesFit (LeastAllocated) 1, NodeResourcesBalancedAllocation 1,
    PodTopologySpread 2, InterPodAffinity 2, ImageLocality 1."""
    return [TaintToleration(), NodeAffinity(), LeastAllocated(), BalancedAllocation(), PodTopologySpread(),
            InterPodAffinity(), ImageLocality()]


__all__ = ["BalancedAllocation", "ImageLocality", "InterPodAffinity", "LeastAllocated", "NodeAffinity", "NodeName", "NodePorts",
           "NodeReady", "NodeResourcesFit", "NodeUnschedulable", "PodTopologySpread", "TaintToleration",
           "default_filters",
           "default_scores"]
