"""What the scheduler knows about a node: its object plus the pods bound to it.

Mirrors kube-scheduler's ``framework.NodeInfo`` and ``framework.Resource``
(pkg/scheduler/framework/types.go): requested resources are kept as
integers (millicores, bytes, pod count) so that filters and scores compare
numbers, never quantity strings.
"""
from __future__ import annotations

import dataclasses

from kubeling.api import quantity
from kubeling.client import meta_key

# Used for scoring only, for containers that request nothing, so that such
# pods still spread (upstream's DefaultMilliCPURequest / DefaultMemoryRequest).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


@dataclasses.dataclass
class Resource:
    """Amounts of the resources the scheduler accounts: millicores, bytes, pods."""

    milli_cpu: int = 0
    memory: int = 0
    pods: int = 0

    def add(self, other: "Resource") -> None:
        """In place: self += other."""
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.pods += other.pods

    def sub(self, other: "Resource") -> None:
        """In place: self -= other."""
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.pods -= other.pods

    @classmethod
    def from_list(cls, rl: dict | None) -> "Resource":
        """From a ResourceList (``{"cpu": "2", "memory": "4Gi", "pods": "110"}``).
        Raises ValueError for a malformed quantity."""
        rl = rl or {}
        return cls(milli_cpu=quantity.milli_value(rl.get("cpu")), memory=quantity.value(rl.get("memory")),
                   pods=quantity.value(rl.get("pods")))


def _container_requests(container: dict, *, non_zero: bool) -> Resource:
    req = (container.get("resources") or {}).get("requests") or {}
    r = Resource(milli_cpu=quantity.milli_value(req.get("cpu")), memory=quantity.value(req.get("memory")))
    if non_zero:
        if "cpu" not in req:
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST
        if "memory" not in req:
            r.memory = DEFAULT_MEMORY_REQUEST
    return r


def pod_requests(pod: dict, *, non_zero: bool = False) -> Resource:
    """Effective requests of a pod: the sum over containers, at least the
    largest init container, plus spec.overhead (upstream's resource.PodRequests).

    ``non_zero=True`` substitutes the scoring defaults for unset cpu/memory
    (upstream's GetNonzeroRequests). ``pods`` is always 1.
    """
    spec = pod.get("spec") or {}
    total = Resource()
    for c in spec.get("containers") or []:
        total.add(_container_requests(c, non_zero=non_zero))
    for c in spec.get("initContainers") or []:
        r = _container_requests(c, non_zero=non_zero)
        total.milli_cpu = max(total.milli_cpu, r.milli_cpu)
        total.memory = max(total.memory, r.memory)
    overhead = spec.get("overhead")
    if overhead:
        total.add(Resource.from_list(overhead))
    total.pods = 1
    return total


class NodeInfo:
    """A node and the pods the scheduler counts against it (bound or assumed).

    ``requested`` sums the pods' requests, ``non_zero_requested`` the same with
    scoring defaults; ``allocatable`` comes from status.allocatable (capacity
    when allocatable is absent). ``node`` may be None while pods refer to a
    node the informer has not delivered yet.
    """

    def __init__(self, node: dict | None = None):
        self.node = node
        self.pods: dict[str, dict] = {}
        self.requested = Resource()
        self.non_zero_requested = Resource()

    @property
    def name(self) -> str:
        """The node's name ("" when the node object is unknown)."""
        return (self.node or {}).get("metadata", {}).get("name", "")

    @property
    def allocatable(self) -> Resource:
        """status.allocatable (or capacity) as a Resource; malformed quantities count as 0."""
        status = (self.node or {}).get("status") or {}
        try:
            return Resource.from_list(status.get("allocatable") or status.get("capacity"))
        except ValueError:
            return Resource()

    def add_pod(self, pod: dict) -> None:
        """Count ``pod`` (replacing an earlier version of it)."""
        key = meta_key(pod)
        if key in self.pods:
            self.remove_pod(self.pods[key])
        self.pods[key] = pod
        self.requested.add(pod_requests(pod))
        self.non_zero_requested.add(pod_requests(pod, non_zero=True))

    def remove_pod(self, pod: dict) -> None:
        """Stop counting the pod with ``pod``'s key (no-op if not counted)."""
        old = self.pods.pop(meta_key(pod), None)
        if old is None:
            return
        self.requested.sub(pod_requests(old))
        self.non_zero_requested.sub(pod_requests(old, non_zero=True))

    def clone(self) -> "NodeInfo":
        """A snapshot copy for one scheduling cycle (the pods dict is shallow-copied)."""
        c = NodeInfo(self.node)
        c.pods = dict(self.pods)
        c.requested = dataclasses.replace(self.requested)
        c.non_zero_requested = dataclasses.replace(self.non_zero_requested)
        return c
