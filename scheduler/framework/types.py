"""What the scheduler knows about a node: its object plus the pods bound to it.

Mirrors kube-scheduler's ``framework.NodeInfo`` and ``framework.Resource``
(pkg/scheduler/framework/types.go): requested resources are kept as
integers (millicores, bytes, pod count) so that filters and scores compare
numbers, never quantity strings.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools

from kubeling.api import quantity
from kubeling.client import meta_key

# Used for scoring only, for containers that request nothing, so that such
# pods still spread (upstream's DefaultMilliCPURequest / DefaultMemoryRequest).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

# One counter for every NodeInfo change (upstream's nextGeneration), so a
# snapshot copy is stale exactly when its generation differs.
_next_generation = itertools.count(1).__next__


# Quantity strings repeat endlessly across pods and nodes ("100m", "64Mi"):
# parse each once (the parse is pure; exact Fractions make it slow).
@functools.lru_cache(maxsize=4096)
def _milli(text) -> int:
    return quantity.milli_value(text)


@functools.lru_cache(maxsize=4096)
def _value(text) -> int:
    return quantity.value(text)


@dataclasses.dataclass
class Resource:
    """Amounts of the resources the scheduler accounts: millicores, bytes of
    memory and of ephemeral storage, pods."""

    milli_cpu: int = 0
    memory: int = 0
    pods: int = 0
    ephemeral_storage: int = 0

    def add(self, other: "Resource") -> None:
        """In place: self += other."""
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.pods += other.pods
        self.ephemeral_storage += other.ephemeral_storage

    def sub(self, other: "Resource") -> None:
        """In place: self -= other."""
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.pods -= other.pods
        self.ephemeral_storage -= other.ephemeral_storage

    @classmethod
    def from_list(cls, rl: dict | None) -> "Resource":
        """From a ResourceList (``{"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"}``).
        Raises ValueError for a malformed quantity."""
        rl = rl or {}
        return cls(milli_cpu=_milli(rl.get("cpu")), memory=_value(rl.get("memory")),
                   pods=_value(rl.get("pods")), ephemeral_storage=_value(rl.get("ephemeral-storage")))


def _container_requests(container: dict, *, non_zero: bool) -> Resource:
    req = (container.get("resources") or {}).get("requests") or {}
    r = Resource(milli_cpu=_milli(req.get("cpu")), memory=_value(req.get("memory")),
                 ephemeral_storage=_value(req.get("ephemeral-storage")))
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
        total.ephemeral_storage = max(total.ephemeral_storage, r.ephemeral_storage)
    overhead = spec.get("overhead")
    if overhead:
        total.add(Resource.from_list(overhead))
    total.pods = 1
    return total


def host_ports(pod: dict) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of every container port that asks for a host
    port; hostIP defaults to 0.0.0.0 and protocol to TCP (upstream's HostPortInfo)."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for port in c.get("ports") or []:
            hp = port.get("hostPort") or 0
            if hp > 0:
                out.append((port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", int(hp)))
    return out


def _affinity(pod: dict, kind: str) -> list[dict]:
    return ((((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {})
            .get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def required_affinity_terms(pod: dict) -> list[dict]:
    """The pod's spec.affinity.podAffinity required PodAffinityTerms."""
    return _affinity(pod, "podAffinity")


def required_anti_affinity_terms(pod: dict) -> list[dict]:
    """The pod's spec.affinity.podAntiAffinity required PodAffinityTerms."""
    return _affinity(pod, "podAntiAffinity")


def _name_of(node: dict | None) -> str:
    return ((node or {}).get("metadata") or {}).get("name", "")


def node_ready_status(node: dict | None) -> str:
    """status of the node's Ready condition: "True", "False" or "Unknown" (also when absent)."""
    for cond in ((node or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") or "Unknown"
    return "Unknown"


class NodeInfo:
    """A node and the pods the scheduler counts against it (bound or assumed).

    ``requested`` sums the pods' requests, ``non_zero_requested`` the same with
    scoring defaults; ``allocatable`` comes from status.allocatable (capacity
    when allocatable is absent). ``node`` may be None while pods refer to a
    node the informer has not delivered yet; ``name`` and ``labels`` are its name
    and labels ("" and {} then); ``taints``, ``unschedulable`` and ``ready_status``
    are spec.taints, spec.unschedulable and the Ready condition's status, read once
    per node object because filters look at them for every node of every cycle;
    ``images`` caches ImageLocality's view of status.images. ``used_ports`` counts the
    (hostIP, protocol, hostPort) triples in use; ``pods_with_affinity`` and
    ``pods_with_required_anti_affinity`` are the keys of pods having such terms
    (upstream keeps the same lists so InterPodAffinity need not scan every pod).
    """

    def __init__(self, node: dict | None = None):
        self.generation = 0
        self.set_node(node)
        self.pods: dict[str, dict] = {}
        self.requested = Resource()
        self.non_zero_requested = Resource()
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.pods_with_affinity: set[str] = set()
        self.pods_with_required_anti_affinity: set[str] = set()

    def set_node(self, node: dict | None) -> None:
        """Set (or clear, None) the Node object; ``node``, ``name`` and ``labels`` are
        plain attributes read in every filter, so they are refreshed here, never computed."""
        self.node = node
        self.name = _name_of(node)
        self.labels = ((node or {}).get("metadata") or {}).get("labels") or {}
        spec = (node or {}).get("spec") or {}
        self.taints: list[dict] = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        self.ready_status = node_ready_status(node)
        self.allocatable = self._parse_allocatable(node)
        self.images: dict[str, int] | None = None
        self.generation = _next_generation()

    @staticmethod
    def _parse_allocatable(node: dict | None) -> Resource:
        # A plain attribute (``allocatable``), not a property: read for every node of every
        # cycle. Parsed once per node object; malformed quantities count as 0. Read-only.
        status = (node or {}).get("status") or {}
        try:
            return Resource.from_list(status.get("allocatable") or status.get("capacity"))
        except ValueError:
            return Resource()

    def add_pod(self, pod: dict) -> None:
        """Count ``pod`` (replacing an earlier version of it)."""
        key = meta_key(pod)
        if key in self.pods:
            self.remove_pod(self.pods[key])
        self.generation = _next_generation()
        self.pods[key] = pod
        self.requested.add(pod_requests(pod))
        self.non_zero_requested.add(pod_requests(pod, non_zero=True))
        for hp in host_ports(pod):
            self.used_ports[hp] = self.used_ports.get(hp, 0) + 1
        affinity = (pod.get("spec") or {}).get("affinity") or {}
        if affinity.get("podAffinity") or affinity.get("podAntiAffinity"):
            self.pods_with_affinity.add(key)
        if required_anti_affinity_terms(pod):
            self.pods_with_required_anti_affinity.add(key)

    def replace_pod(self, pod: dict) -> bool:
        """Swap in a newer version of a counted pod whose spec and labels did not
        change (a status update), skipping the re-accounting ``add_pod`` does.
        False (nothing done) when the pod is not counted or its spec or labels differ."""
        key = meta_key(pod)
        old = self.pods.get(key)
        if old is None or old.get("spec") != pod.get("spec") or \
                (old.get("metadata") or {}).get("labels") != (pod.get("metadata") or {}).get("labels"):
            return False
        self.generation = _next_generation()
        self.pods[key] = pod
        return True

    def remove_pod(self, pod: dict) -> None:
        """Stop counting the pod with ``pod``'s key (no-op if not counted)."""
        key = meta_key(pod)
        old = self.pods.pop(key, None)
        if old is None:
            return
        self.generation = _next_generation()
        self.requested.sub(pod_requests(old))
        self.non_zero_requested.sub(pod_requests(old, non_zero=True))
        for hp in host_ports(old):
            n = self.used_ports.get(hp, 0) - 1
            if n > 0:
                self.used_ports[hp] = n
            else:
                self.used_ports.pop(hp, None)
        self.pods_with_affinity.discard(key)
        self.pods_with_required_anti_affinity.discard(key)

    def clone(self) -> "NodeInfo":
        """A snapshot copy for one scheduling cycle (the pods dict is shallow-copied)."""
        c = NodeInfo.__new__(NodeInfo)  # the node's derived fields are copied, not parsed again
        c.node, c.name, c.labels, c.taints = self.node, self.name, self.labels, self.taints
        c.unschedulable, c.ready_status, c.allocatable = self.unschedulable, self.ready_status, self.allocatable
        c.images = self.images
        c.generation = self.generation
        c.pods = dict(self.pods)
        c.requested = dataclasses.replace(self.requested)
        c.non_zero_requested = dataclasses.replace(self.non_zero_requested)
        c.used_ports = dict(self.used_ports)
        c.pods_with_affinity = set(self.pods_with_affinity)
        c.pods_with_required_anti_affinity = set(self.pods_with_required_anti_affinity)
        return c
