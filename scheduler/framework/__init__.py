"""kube-scheduler's scheduling framework: node information, plugin interface, plugins."""
from scheduler.framework.interface import (MAX_NODE_SCORE, SUCCESS, Code, FilterPlugin, ScorePlugin, Status,
                                           unschedulable)
from scheduler.framework.types import NodeInfo, Resource, pod_requests

__all__ = ["MAX_NODE_SCORE", "SUCCESS", "Code", "FilterPlugin", "NodeInfo", "Resource", "ScorePlugin",
           "Status", "pod_requests", "unschedulable"]
