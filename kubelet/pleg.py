"""Pod Lifecycle Event Generator: notice container state changes by relisting.

The runtime does not push events, so the kubelet lists all sandboxes and
containers every second, compares with the previous list, and emits one
event per container whose state changed, keyed by pod uid. The pod worker
of that pod then syncs it (and only it). Mirrors pkg/kubelet/pleg/generic.go
(GenericPLEG: relist, generateEvents, Healthy).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable

from kubelet.container import (POD_UID_LABEL, STATE_EXITED, STATE_RUNNING, STATE_UNKNOWN,
                               state_of)
from kubelet import metrics
from kubelet.cri import CRIError, RemoteRuntime
from proto.cri import api_pb2 as pb

log = logging.getLogger(__name__)

CONTAINER_STARTED = "ContainerStarted"
CONTAINER_DIED = "ContainerDied"
CONTAINER_REMOVED = "ContainerRemoved"
CONTAINER_CHANGED = "ContainerChanged"

NON_EXISTENT = "non-existent"

# Relisting slower than this means the runtime is stuck (upstream: 3 minutes).
RELIST_THRESHOLD = 180.0


@dataclasses.dataclass(frozen=True)
class PodLifecycleEvent:
    """One change: ``uid`` of the pod, ``type`` (ContainerStarted ...), ``data`` the container/sandbox id."""

    uid: str
    type: str
    data: str


@dataclasses.dataclass
class RelistedPod:
    """What one relist saw of a pod: its sandboxes and containers (CRI messages)."""

    uid: str
    name: str = ""
    namespace: str = ""
    sandboxes: list = dataclasses.field(default_factory=list)
    containers: list = dataclasses.field(default_factory=list)

    def states(self) -> dict[str, str]:
        """container-or-sandbox id -> pleg state (running / exited / unknown).
        Sandboxes count as containers, as upstream does."""
        out = {}
        for s in self.sandboxes:
            out[s.id] = STATE_RUNNING if s.state == pb.SANDBOX_READY else STATE_EXITED
        for c in self.containers:
            st = state_of(c.state)
            out[c.id] = st if st in (STATE_RUNNING, STATE_EXITED) else STATE_UNKNOWN
        return out


def generate_events(uid: str, cid: str, old: str, new: str) -> list[PodLifecycleEvent]:
    """Events for one container going from state ``old`` to ``new`` (either may
    be NON_EXISTENT). Mirrors generic.go generateEvents."""
    if old == new:
        return []
    if new == STATE_RUNNING:
        return [PodLifecycleEvent(uid, CONTAINER_STARTED, cid)]
    if new == STATE_EXITED:
        return [PodLifecycleEvent(uid, CONTAINER_DIED, cid)]
    if new == STATE_UNKNOWN:
        return [PodLifecycleEvent(uid, CONTAINER_CHANGED, cid)]
    if old == STATE_EXITED:
        return [PodLifecycleEvent(uid, CONTAINER_REMOVED, cid)]
    return [PodLifecycleEvent(uid, CONTAINER_DIED, cid), PodLifecycleEvent(uid, CONTAINER_REMOVED, cid)]


def compute_events(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> list[PodLifecycleEvent]:
    """Diff two relists given as ``{pod uid: {container id: state}}``; events in
    a stable order (pod uid, then container id)."""
    events = []
    for uid in sorted(set(old) | set(new)):
        o, n = old.get(uid, {}), new.get(uid, {})
        for cid in sorted(set(o) | set(n)):
            events += generate_events(uid, cid, o.get(cid, NON_EXISTENT), n.get(cid, NON_EXISTENT))
    return events


def group_by_pod(sandboxes: list, containers: list) -> dict[str, RelistedPod]:
    """Group CRI sandboxes and containers by pod uid (sandbox metadata, else the
    uid label; a container is tied to its sandbox's pod when it lacks the label)."""
    pods: dict[str, RelistedPod] = {}
    sandbox_uid = {}
    for s in sandboxes:
        uid = s.metadata.uid or s.labels.get(POD_UID_LABEL, "")
        if not uid:
            continue
        sandbox_uid[s.id] = uid
        p = pods.setdefault(uid, RelistedPod(uid, s.metadata.name, s.metadata.namespace))
        p.sandboxes.append(s)
    for c in containers:
        uid = c.labels.get(POD_UID_LABEL) or sandbox_uid.get(c.pod_sandbox_id, "")
        if not uid:
            continue
        pods.setdefault(uid, RelistedPod(uid)).containers.append(c)
    return pods


class GenericPLEG:
    """Relists the runtime every ``period`` seconds and calls ``on_event`` for each change.

    ``pods`` holds the last relist (``{uid: RelistedPod}``); ``healthy()`` is
    False when the last successful relist is older than RELIST_THRESHOLD.
    """

    def __init__(self, runtime: RemoteRuntime, on_event: Callable[[PodLifecycleEvent], None], *,
                 period: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.runtime = runtime
        self.on_event = on_event
        self.period = period
        self.clock = clock
        self.pods: dict[str, RelistedPod] = {}
        self._states: dict[str, dict[str, str]] = {}
        self.last_relist = clock()
        self.relisted = asyncio.Event()
        self._timer = metrics.RelistTimer()  # kubelet_pleg_relist_duration/interval_seconds
        metrics.watch_pleg(self)  # kubelet_running_containers

    def healthy(self) -> bool:
        """Whether relisting keeps up (mirrors GenericPLEG.Healthy)."""
        return self.clock() - self.last_relist < RELIST_THRESHOLD

    async def relist(self) -> list[PodLifecycleEvent]:
        """List once, update ``pods``, deliver and return the events. Raises CRIError."""
        self._timer.start()
        sandboxes = await self.runtime.list_pod_sandbox()
        containers = await self.runtime.list_containers()
        pods = group_by_pod(sandboxes, containers)
        states = {uid: p.states() for uid, p in pods.items()}
        events = compute_events(self._states, states)
        self.pods, self._states = pods, states
        self.last_relist = self.clock()
        self.relisted.set()
        self._timer.done()
        for ev in events:
            try:
                self.on_event(ev)
            except Exception:  # a handler bug must not stop relisting
                log.exception("PLEG event handler failed for %s", ev)
        return events

    async def run(self) -> None:
        """Relist forever (until cancelled)."""
        while True:
            try:
                await self.relist()
            except CRIError as e:
                log.warning("PLEG relist failed: %s", e)
            await asyncio.sleep(self.period)
