"""The kubelet's runtime-side view of a pod, independent of the API objects.

Mirrors pkg/kubelet/container (runtime.go: PodStatus, Status, SandboxStatus)
and kuberuntime/labels.go: the labels and annotations the kubelet puts on
sandboxes and containers so that, after a restart, it can tell which pod
and which container spec each runtime object belongs to (the runtime keeps
no other record of that).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from proto.cri import api_pb2 as pb

POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_HASH_ANNOTATION = "io.kubernetes.container.hash"
RESTART_COUNT_ANNOTATION = "io.kubernetes.container.restartCount"
TERMINATION_GRACE_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"

STATE_CREATED = "created"
STATE_RUNNING = "running"
STATE_EXITED = "exited"
STATE_UNKNOWN = "unknown"

_CRI_STATES = {pb.CONTAINER_CREATED: STATE_CREATED, pb.CONTAINER_RUNNING: STATE_RUNNING,
               pb.CONTAINER_EXITED: STATE_EXITED, pb.CONTAINER_UNKNOWN: STATE_UNKNOWN}


def state_of(cri_state: int) -> str:
    """CRI ContainerState enum -> one of the STATE_* strings."""
    return _CRI_STATES.get(cri_state, STATE_UNKNOWN)


def pod_labels(pod: dict) -> dict[str, str]:
    """Labels on a pod's sandbox: the pod's own labels plus name/namespace/uid
    (mirrors kuberuntime newPodLabels)."""
    meta = pod["metadata"]
    labels = dict(meta.get("labels") or {})
    labels.update({POD_NAME_LABEL: meta["name"], POD_NAMESPACE_LABEL: meta.get("namespace", "default"),
                   POD_UID_LABEL: meta["uid"]})
    return labels


def container_labels(pod: dict, container: dict) -> dict[str, str]:
    """Labels on one container (mirrors kuberuntime newContainerLabels)."""
    meta = pod["metadata"]
    return {POD_NAME_LABEL: meta["name"], POD_NAMESPACE_LABEL: meta.get("namespace", "default"),
            POD_UID_LABEL: meta["uid"], CONTAINER_NAME_LABEL: container["name"]}


def container_hash(container: dict) -> str:
    """A stable hash of the container spec; a change means the container must be
    recreated (mirrors kubecontainer.HashContainer)."""
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass
class ContainerStatus:
    """One runtime container of a pod (mirrors kubecontainer.Status).

    Times are seconds since the epoch (floats, 0.0 = unset).
    """

    id: str
    name: str
    state: str
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    image: str = ""
    image_ref: str = ""
    reason: str = ""
    message: str = ""
    restart_count: int = 0
    hash: str = ""
    log_path: str = ""


@dataclasses.dataclass
class SandboxStatus:
    """One sandbox of a pod (mirrors runtimeapi.PodSandboxStatus as the kubelet keeps it)."""

    id: str
    ready: bool
    attempt: int = 0
    created_at: float = 0.0
    ip: str = ""


@dataclasses.dataclass
class PodStatus:
    """Everything the runtime knows about one pod (mirrors kubecontainer.PodStatus).

    ``sandboxes`` and ``containers`` are sorted newest first.
    """

    uid: str
    name: str = ""
    namespace: str = ""
    sandboxes: list[SandboxStatus] = dataclasses.field(default_factory=list)
    containers: list[ContainerStatus] = dataclasses.field(default_factory=list)

    @property
    def ip(self) -> str:
        """The newest ready sandbox's IP ('' if none)."""
        for s in self.sandboxes:
            if s.ready and s.ip:
                return s.ip
        return ""

    def find(self, name: str) -> ContainerStatus | None:
        """The newest container named ``name``, or None."""
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def all_of(self, name: str) -> list[ContainerStatus]:
        """All containers named ``name``, newest first."""
        return [c for c in self.containers if c.name == name]
