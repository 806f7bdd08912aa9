"""The kubelet's main loop: wire the pieces together and sync pods.

Start-up order matters: wait for the CRI runtime, register the Node, wait
for the pod informer's first list (so that PLEG never mistakes a pod that
is merely not yet listed for an orphan), then start PLEG, the pod workers,
the heartbeats, the node network (once the Node has a podCIDR) and the
HTTP servers. ``sync_pod(uid)`` is the one place where a pod is made to
match its spec: run it, kill it on deletion, clean up after it when it is
gone. Mirrors pkg/kubelet/kubelet.go (Run, syncLoop, SyncPod,
SyncTerminatingPod, HandlePodCleanups) in one asyncio process.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time

import httpx
import prometheus_client

from kubelet import metrics as kubelet_metrics
from kubelet import network
from kubelet import eviction
from kubelet.backoff import Backoff
from kubelet.container import POD_UID_LABEL, STATE_RUNNING, PodStatus
from kubelet.cri import CRIError, RemoteRuntime
from kubeling.client.record import EventRecorder
from kubelet.kuberuntime import KubeRuntimeManager, pod_grace_period, pod_log_dir
from kubelet.nodestatus import NodeStatusManager
from kubelet.pleg import CONTAINER_CHANGED, CONTAINER_DIED, CONTAINER_STARTED, GenericPLEG, PodLifecycleEvent
from kubelet.pod_status import TERMINAL_PHASES, generate_api_pod_status
from kubelet.pod_workers import PodWorkers
from kubelet.prober import ProbeManager
from kubelet.server import ServingTLS, build_app, serve
from kubelet.status_manager import StatusManager
from kubelet.stats import read_meminfo
from kubelet.volumemanager import VolumeManager
from kubeling import daemon, klog
from kubeling.client import ApiError, Client, Informer
from proto.cri import api_pb2 as pb

log = logging.getLogger(__name__)

SYNC_DURATION = prometheus_client.Histogram("kubelet_pod_worker_duration_seconds",
                                            "Duration in seconds to sync a single pod.")
RUNNING_PODS = prometheus_client.Gauge("kubelet_running_pods", "Number of pods that have a running sandbox.")
PLEG_EVENTS = prometheus_client.Counter("kubelet_pleg_events_total", "PLEG events by type.", ["type"])


def pods_differ_semantically(old: dict, new: dict) -> bool:
    """Whether an update of a pod needs a sync: anything but its status changed (spec, labels,
    annotations, deletionTimestamp, deletionGracePeriodSeconds, uid). Mirrors
    pkg/kubelet/config's podsDifferSemantically, which keeps status-only updates from the pod workers."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return (old.get("spec") != new.get("spec")
            or any(om.get(k) != nm.get(k) for k in ("uid", "labels", "annotations", "deletionTimestamp",
                                                      "deletionGracePeriodSeconds")))


@dataclasses.dataclass
class KubeletConfig:
    """Everything the command line sets (see kubelet/__main__.py for the flags)."""

    kubeconfig: str
    node_name: str
    node_ip: str = "127.0.0.1"
    runtime_endpoint: str = "unix:///var/run/kubeling/cri.sock"
    root_dir: str = "/var/lib/kubelet"
    port: int = 10250
    healthz_port: int = 10248
    healthz_bind_address: str = "127.0.0.1"
    cluster_cidr: str | None = None
    service_cidr: str | None = None
    bridge_name: str = "kubeling0"
    cluster_dns: list[str] = dataclasses.field(default_factory=list)
    cluster_domain: str = "cluster.local"
    node_status_update_frequency: float = 10.0
    sync_frequency: float = 10.0
    pleg_period: float = 1.0
    eviction_hard: str = eviction.DEFAULT_HARD
    eviction_pressure_transition_period: float = 300.0
    eviction_monitoring_interval: float = 10.0
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    tls: ServingTLS | None = None  # HTTPS on ``port`` (kubelet's --tls-cert-file ...); None: plain HTTP


class Kubelet:
    """One node agent. ``await Kubelet(config).run(stop)`` runs until ``stop`` is set;
    containers are left running on exit, as upstream's kubelet does."""

    def __init__(self, config: KubeletConfig):
        self.config = config
        self.client = Client.from_kubeconfig(config.kubeconfig, user_agent=f"kubelet/{config.node_name}")
        self.runtime = RemoteRuntime(config.runtime_endpoint)
        self.recorder = EventRecorder(self.client, "kubelet", host=config.node_name)
        self.pods = Informer(self.client, "pods", field_selector=f"spec.nodeName={config.node_name}")
        self.services = Informer(self.client, "services")  # service env vars of new containers
        self.pod_by_uid: dict[str, dict] = {}
        self.workers = PodWorkers(self.sync_pod)
        self.pleg = GenericPLEG(self.runtime, self._on_pleg_event, period=config.pleg_period)
        self.pod_starts = kubelet_metrics.PodStartTracker()  # kubelet_pod_start_duration_seconds
        self.status_manager = StatusManager(self.client)
        self.prober = ProbeManager(self.runtime, on_change=self.workers.update, recorder=self.recorder.event)
        self.runtime_manager = KubeRuntimeManager(
            self.runtime, root_dir=config.root_dir, node_ip=config.node_ip, recorder=self.recorder.event,
            backoff=Backoff(initial=config.backoff_initial, max=config.backoff_max),
            cluster_dns=config.cluster_dns, cluster_domain=config.cluster_domain,
            volumes=VolumeManager(self.client, config.root_dir))
        self.runtime_manager.services = self.services.lister.list
        self.eviction = eviction.EvictionManager(
            eviction.parse_thresholds(config.eviction_hard),
            pressure_transition_period=config.eviction_pressure_transition_period)
        self.evicted: set[str] = set()  # uids failed by eviction or admission, never restarted
        self.node_status = NodeStatusManager(
            self.client, name=config.node_name, node_ip=config.node_ip, port=config.port,
            root_dir=config.root_dir, readiness=self._node_readiness,
            interval=config.node_status_update_frequency, recorder=self.recorder.event,
            pressure=lambda: {"MemoryPressure": self.eviction.under_pressure(time.monotonic())})
        # Containers and sandboxes each pod's last sync saw running (id -> "container" | "sandbox"),
        # and the PLEG events that came while its sync ran: PLEG reporting the creation and start
        # the kubelet made itself (see _stale_events) needs no second sync.
        self._seen_running: dict[str, dict[str, str]] = {}
        self._syncing: set[str] = set()
        self._events_during_sync: dict[str, list[PodLifecycleEvent]] = {}
        self._synced_once: set[str] = set()  # pods this process synced at least once
        self.runtime_conditions: dict[str, tuple[bool, str]] = {}
        self.runtime_up = False
        self.network_ready = False
        self.pod_cidr = ""

    # ---- health -----------------------------------------------------------

    def healthy(self) -> bool:
        """/healthz: the runtime answered and PLEG keeps relisting."""
        return self.runtime_up and self.pleg.healthy()

    def _node_readiness(self) -> tuple[bool, str]:
        if not self.runtime_up:
            return False, "container runtime is down"
        for ctype in ("RuntimeReady", "NetworkReady"):
            ok, why = self.runtime_conditions.get(ctype, (False, "unknown"))
            if not ok:
                what = "network" if ctype == "NetworkReady" else "status check"
                return False, f"container runtime {what} not ready: {ctype}=false {why}"
        if not self.network_ready:
            return False, "node network not ready: waiting for spec.podCIDR"
        return True, ""

    async def _refresh_runtime_status(self) -> None:
        """One CRI Status call; kicks a node status update when readiness flips."""
        before = self._node_readiness()[0]
        try:
            st = await self.runtime.status()
            self.runtime_conditions = {c.type: (c.status, f"reason:{c.reason} message:{c.message}")
                                       for c in st.conditions}
            self.runtime_up = True
        except CRIError as e:
            if self.runtime_up:
                log.warning("container runtime status check failed: %s", e)
            self.runtime_up = False
        if self._node_readiness()[0] != before:
            self.node_status.kick.set()

    async def _update_runtime_status(self) -> None:
        """Poll CRI Status every 5 s (mirrors updateRuntimeUp)."""
        while True:
            await self._refresh_runtime_status()
            await asyncio.sleep(5)

    # ---- start-up ---------------------------------------------------------

    async def _wait_runtime(self, stop: asyncio.Event) -> bool:
        delay = 0.2
        while not stop.is_set():
            try:
                v = await self.runtime.version()
                self.node_status.runtime_version = f"{v.runtime_name}://{v.runtime_version}"
                self.runtime_up = True
                log.info("container runtime %s, CRI %s", self.node_status.runtime_version, v.runtime_api_version)
                return True
            except CRIError as e:
                log.info("waiting for the container runtime at %s: %s", self.config.runtime_endpoint, e)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                delay = min(delay * 2, 5.0)
        return False

    async def _register(self, stop: asyncio.Event) -> bool:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.node_status.register()
                return True
            except (ApiError, httpx.HTTPError) as e:
                log.warning("unable to register node %s: %s", self.config.node_name, e)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                delay = min(delay * 2, 7.0)
        return False

    async def _setup_network(self) -> None:
        """Wait for spec.podCIDR, tell the runtime, set up bridge and routes."""
        while True:
            try:
                node = await self.client.get("nodes", self.config.node_name)
                cidr = node.get("spec", {}).get("podCIDR", "")
                if cidr:
                    await self.runtime.update_runtime_config(cidr)
                    await network.setup_in_subprocess(bridge=self.config.bridge_name, pod_cidr=cidr,
                                                      cluster_cidr=self.config.cluster_cidr,
                                                      service_cidr=self.config.service_cidr)
                    self.pod_cidr = cidr
                    self.network_ready = True
                    log.info("pod CIDR %s; node network ready", cidr)
                    await self._refresh_runtime_status()
                    self.node_status.kick.set()
                    for uid in list(self.pod_by_uid):
                        self.workers.update(uid)
                    return
            except (ApiError, httpx.HTTPError, CRIError, OSError, RuntimeError) as e:
                log.warning("setting up the node network: %s", e)
            await asyncio.sleep(1.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        cfg = self.config
        app = build_app(self)
        servers = [asyncio.ensure_future(serve(app, cfg.node_ip, cfg.port, tls=cfg.tls)),
                   asyncio.ensure_future(daemon.serve_health(cfg.healthz_bind_address, cfg.healthz_port,
                                                             self.healthy))]
        try:
            if not await self._wait_runtime(stop) or not await self._register(stop):
                return
            self.pods.add_handlers(on_add=self._on_pod_add, on_update=self._on_pod_update,
                                   on_delete=self._on_pod_delete)
            informer = asyncio.ensure_future(self.pods.run())
            services = asyncio.ensure_future(self.services.run())
            # Containers get the service variables of the moment they start, as upstream's (whose
            # kubelet also waits for its service informer before starting pods).
            synced = asyncio.ensure_future(asyncio.gather(self.pods.wait_synced(), self.services.wait_synced()))
            await asyncio.wait([synced, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                informer.cancel()
                services.cancel()
                synced.cancel()
                await asyncio.gather(informer, services, synced, return_exceptions=True)
                return
            log.info("pod informer synced (%d pods); starting pod workers and PLEG", len(self.pods.store))
            await daemon.run_until_stopped(
                stop, informer, services, self.pleg.run(), self.node_status.run(),
                self._update_runtime_status(), self._setup_network(), self._resync_loop(),
                self._eviction_loop(), *servers)
        finally:
            for s in servers:
                s.cancel()
            await asyncio.gather(*servers, return_exceptions=True)
            await self.workers.close()
            await self.prober.close()
            await self.runtime.close()
            await self.recorder.flush(timeout=2.0)
            await self.client.close()
            log.info("kubelet stopped; containers left running")

    # ---- event sources ----------------------------------------------------

    def _on_pod_add(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        self.pod_by_uid[uid] = pod
        self.pod_starts.seen(pod)
        self.workers.update(uid)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        if pods_differ_semantically(old, new):
            self._on_pod_add(new)
            return
        # A status-only change (mostly our own status writes) is stored but syncs nothing: the
        # next sync compares against it. Each write would otherwise cost the runtime a relist.
        uid = new["metadata"]["uid"]
        if uid in self.pod_by_uid:
            self.pod_by_uid[uid] = new
        else:
            self._on_pod_add(new)

    def _on_pod_delete(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        self.pod_by_uid.pop(uid, None)
        self.pod_starts.forget(uid)
        self.workers.update(uid)  # the sync sees it gone and cleans up

    def _on_pleg_event(self, ev: PodLifecycleEvent) -> None:
        PLEG_EVENTS.labels(ev.type).inc()
        if ev.uid in self._syncing:  # decided when that sync ends (sync_pod's finally)
            self._events_during_sync.setdefault(ev.uid, []).append(ev)
            return
        if ev.type == CONTAINER_STARTED and ev.data in self._seen_running.get(ev.uid, {}):
            return  # the sync that started it already reported it
        self.workers.update(ev.uid)

    def _stale_events(self, uid: str, events: list[PodLifecycleEvent]) -> bool:
        """Whether PLEG events that came during a sync of ``uid`` told nothing that sync's final status
        did not see: a start (or the created state, ContainerChanged) of what it saw running, or a
        sandbox first listed before it was up (NOTREADY counts as died) that it saw ready. A container
        seen only in its created state keeps PLEG's view "unknown", so its later death still is an event."""
        seen = self._seen_running.get(uid, {})
        for ev in events:
            kind = seen.get(ev.data)
            if kind is None:
                return False
            if ev.type in (CONTAINER_STARTED, CONTAINER_CHANGED):
                continue
            if ev.type == CONTAINER_DIED and kind == "sandbox":
                continue
            return False
        return True

    async def _resync_loop(self) -> None:
        """Every sync_frequency: the running-pods gauge and the backoff GC. Pods themselves are
        resynced one by one, sync_frequency (+ up to 50% jitter) after their own last sync
        (sync_pod), as upstream's pod workers requeue each pod: a tick syncing every pod at once
        would hit the runtime with a relist per pod in the middle of a burst of starts."""
        while True:
            await asyncio.sleep(self.config.sync_frequency)
            RUNNING_PODS.set(sum(1 for p in self.pleg.pods.values()
                                 if any(s.state == pb.SANDBOX_READY for s in p.sandboxes)))
            self.runtime_manager.backoff.gc()

    # ---- node-pressure eviction (kubelet.eviction) -------------------------

    async def _eviction_loop(self) -> None:
        """Every monitoring interval: observe memory, report pressure, evict one pod if a threshold is met."""
        was = False
        while True:
            try:
                await self.evict_once()
            except (CRIError, ApiError, OSError) as e:
                log.warning("eviction manager: %s", e)
            now_pressure = self.eviction.under_pressure(time.monotonic())
            if now_pressure != was:
                was = now_pressure
                self.node_status.kick.set()
            await asyncio.sleep(self.config.eviction_monitoring_interval)

    async def evict_once(self) -> str | None:
        """One synchronize of the eviction manager; returns the uid of the pod evicted, if any."""
        info = await asyncio.to_thread(read_meminfo)
        usage: dict[str, int] = {}
        for s in await self.runtime.list_container_stats():
            uid = s.attributes.labels.get(POD_UID_LABEL, "")
            if uid and s.HasField("memory"):
                usage[uid] = usage.get(uid, 0) + s.memory.working_set_bytes.value
        active = [p for uid, p in self.pod_by_uid.items() if uid not in self.evicted
                  and not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in TERMINAL_PHASES
                  and not (p.get("metadata", {}).get("annotations") or {}).get("kubernetes.io/config.mirror")]
        d = self.eviction.synchronize(now=time.monotonic(), available=info.get("MemAvailable", 0),
                                      capacity=info.get("MemTotal", 0), pods=active, usage=usage)
        if d.evict is None:
            return None
        await self._fail_pod(d.evict, "Evicted", d.message, kill=True)
        return d.evict["metadata"]["uid"]

    async def _fail_pod(self, pod: dict, reason: str, message: str, *, kill: bool) -> None:
        """Phase Failed with ``reason``/``message`` (an eviction or a refused admission); with ``kill``
        the containers stop at once (hard eviction has no grace period)."""
        uid = pod["metadata"]["uid"]
        self.evicted.add(uid)
        log.warning("%s pod %s/%s: %s", reason.lower(), pod["metadata"].get("namespace"), pod["metadata"]["name"],
                    message, extra=klog.kv(pod=pod))
        status = await self.runtime_manager.get_pod_status(uid)
        if kill:
            await self.runtime_manager.kill_pod(pod, status, grace=0)
            status = await self.runtime_manager.get_pod_status(uid)
        api_status = generate_api_pod_status(pod, status, node_ip=self.config.node_ip, now=time.time(),
                                             reasons={}, ready=False)
        api_status.update(phase="Failed", reason=reason, message=message)
        self.prober.remove_pod(uid)
        self.recorder.event(pod, "Warning", reason, message)
        await self.status_manager.set_pod_status(pod, api_status)

    # ---- the sync ---------------------------------------------------------

    async def sync_pod(self, uid: str) -> None:
        """Make the runtime match pod ``uid`` and report its status. Raises on
        runtime/API failures (the pod worker retries)."""
        self._seen_running.pop(uid, None)
        self._syncing.add(uid)
        try:
            await self._sync_pod(uid)
        finally:
            self._syncing.discard(uid)
            events = self._events_during_sync.pop(uid, [])
            if events and not self._stale_events(uid, events):
                self.workers.update(uid)
            if uid in self.pod_by_uid and uid in self.workers:
                # Probes, backoffs, volume sources and missed events converge (upstream's resyncInterval
                # with workerResyncIntervalJitterFactor 0.5); an earlier pending sync wins.
                self.workers.update_after(uid, self.config.sync_frequency * (1 + 0.5 * random.random()))

    async def _sync_pod(self, uid: str) -> None:
        with SYNC_DURATION.time():
            pod = self.pod_by_uid.get(uid)
            first = uid not in self._synced_once
            self._synced_once.add(uid)
            if first and pod is not None and self.pleg.relisted.is_set() and uid not in self.pleg.pods:
                # Nothing of a pod this process never synced can exist unless an earlier kubelet made
                # it, and that would be in every relist: no need to ask the runtime.
                status = PodStatus(uid)
            else:
                status = await self.runtime_manager.get_pod_status(uid)
            if pod is None:
                await self._cleanup_orphan(uid, status)
                return
            if pod["metadata"].get("deletionTimestamp"):
                await self._terminate(pod, status)
                return
            if uid not in self.evicted and not status.sandboxes and not status.containers \
                    and not (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                refused = self.eviction.admit(pod, now=time.monotonic())
                if refused:  # upstream's admission handlers: the pod fails before it starts
                    await self._fail_pod(pod, "Evicted", refused, kill=False)
                    return
            if uid in self.evicted or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                # Finished pods keep their status; only make sure nothing runs.
                if any(s.ready for s in status.sandboxes) or any(c.state == STATE_RUNNING
                                                                 for c in status.containers):
                    await self.runtime_manager.kill_pod(pod, status, grace=pod_grace_period(pod))
                self.prober.remove_pod(uid)
                return
            reasons: dict[str, tuple[str, str]] = {}
            if not self.network_ready and not pod.get("spec", {}).get("hostNetwork"):
                for c in pod.get("spec", {}).get("containers", []):
                    reasons[c["name"]] = ("ContainerCreating", "network is not ready")
            else:
                result = await self.runtime_manager.sync_pod(
                    pod, status, liveness_failed=lambda n, cid: self.prober.liveness_failed(uid, n, cid))
                reasons = result.reasons
                if result.requeue_after is not None:
                    self.workers.update_after(uid, result.requeue_after)
                if result.changed:
                    status = await self.runtime_manager.status_after(result, uid)
            self.prober.update(pod, status)
            pod = self.pod_by_uid.get(uid, pod)
            api_status = generate_api_pod_status(pod, status, node_ip=self.config.node_ip, now=time.time(),
                                                 reasons=reasons, ready=self.prober.readiness(uid))
            if api_status.get("phase") == "Running":
                self.pod_starts.running(uid)
            await self.status_manager.set_pod_status(pod, api_status)
            self._seen_running[uid] = {**{c.id: "container" for c in status.containers if c.state == STATE_RUNNING},
                                       **{s.id: "sandbox" for s in status.sandboxes if s.ready}}

    async def _terminate(self, pod: dict, status: PodStatus) -> None:
        """Graceful deletion: stop containers, remove the sandbox, then delete the
        pod object for good (mirrors SyncTerminatingPod + the status manager's final delete)."""
        uid = pod["metadata"]["uid"]
        self.prober.remove_pod(uid)
        await self.runtime_manager.kill_pod(pod, status, grace=pod_grace_period(pod))
        await self.runtime_manager.remove_pod(await self.runtime_manager.get_pod_status(uid))
        await self.runtime_manager.volumes.teardown_pod(uid)
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], namespace=meta.get("namespace"),
                                     grace_period_seconds=0, preconditions={"uid": uid})
            log.info("pod %s/%s deleted", meta.get("namespace"), meta["name"], extra=klog.kv(pod=pod))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        self.status_manager.forget(uid)
        self._seen_running.pop(uid, None)
        self._synced_once.discard(uid)
        self.workers.forget(uid)

    async def _cleanup_orphan(self, uid: str, status: PodStatus) -> None:
        """Runtime objects of a pod the API no longer has (force-deleted, or left
        from an earlier run): stop and remove them (mirrors HandlePodCleanups)."""
        if status.sandboxes or status.containers:
            log.info("removing orphaned pod %s/%s (uid %s)", status.namespace, status.name, uid,
                     extra={"pod": f"{status.namespace}/{status.name}", "podUID": uid})
            await self.runtime_manager.kill_pod(None, status, grace=1)
            await self.runtime_manager.remove_pod(status)
        await self.runtime_manager.volumes.teardown_pod(uid)
        self.prober.remove_pod(uid)
        self.status_manager.forget(uid)
        self._seen_running.pop(uid, None)
        self._synced_once.discard(uid)
        self.workers.forget(uid)

    # ---- server host interface --------------------------------------------

    def list_pods(self) -> list[dict]:
        """Pods bound to this node (informer cache)."""
        return list(self.pods.store.values())

    def find_pod(self, namespace: str, name: str) -> dict | None:
        """The pod ``namespace/name`` if it is bound to this node."""
        return self.pods.lister.get(name, namespace)

    async def container_log_file(self, pod: dict, container: str, *, previous: bool) -> tuple[str, str]:
        """(CRI log file, container id) of the current or previous run of ``container``.
        Raises LookupError with a kubectl-style message."""
        spec = pod.get("spec", {})
        name = pod["metadata"]["name"]
        names = [c["name"] for c in spec.get("initContainers", []) + spec.get("containers", [])
                 + spec.get("ephemeralContainers", [])]
        if container not in names:
            raise LookupError(f'container {container} is not valid for pod {name}')
        status = await self.runtime_manager.get_pod_status(pod["metadata"]["uid"])
        runs = status.all_of(container)
        idx = 1 if previous else 0
        if len(runs) <= idx:
            if previous:
                raise LookupError(f'previous terminated container "{container}" in pod "{name}" not found')
            raise LookupError(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        run = runs[idx]
        path = run.log_path or os.path.join(pod_log_dir(self.config.root_dir, pod), container,
                                            f"{run.restart_count}.log")
        return path, run.id

    async def container_running(self, container_id: str) -> bool:
        """Whether the container is still running (False if gone)."""
        try:
            st = await self.runtime.container_status(container_id)
        except CRIError:
            return False
        return st.state == pb.CONTAINER_RUNNING
