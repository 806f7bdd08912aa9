"""Making the runtime match one pod's spec, through CRI calls only.

``compute_pod_actions`` decides, from the pod spec and what the runtime has,
what to do: (re)create the sandbox, which init container runs next, which
app containers to start or kill. ``KubeRuntimeManager.sync_pod`` carries it
out (pulling images, creating and starting containers with backoff) and
``kill_pod`` tears a pod down. Mirrors pkg/kubelet/kuberuntime
(kuberuntime_manager.go computePodActions/SyncPod/KillPod,
kuberuntime_container.go startContainer, kuberuntime_sandbox.go,
kuberuntime_image.go) and pkg/kubelet/images (pull policy and backoff).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Callable

from kubelet.backoff import Backoff
from kubelet.container import (CONTAINER_HASH_ANNOTATION, POD_UID_LABEL, RESTART_COUNT_ANNOTATION,
                               STATE_EXITED, STATE_RUNNING, STATE_UNKNOWN,
                               TERMINATION_GRACE_ANNOTATION, ContainerStatus, PodStatus,
                               SandboxStatus, container_hash, container_labels, pod_labels,
                               state_of)
from kubelet.cri import CRIError, RemoteRuntime
from kubelet.envvars import EnvError, container_env, env_references, expand, service_env
from kubelet.etc_hosts import HOSTS_PATH, ensure_hosts_file, mounts_hosts
from kubelet.volumemanager import Volume, VolumeError, VolumeManager, container_mounts
from kubelet.pod_status import should_restart
from kubelet.prober import ProbeResult, run_probe
from proto.cri import api_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_GRACE = 30
MIN_GRACE_AFTER_HOOK = 2   # minimumGracePeriodInSeconds: what a container keeps after its preStop hook
POST_START_TIMEOUT = 30    # seconds a postStart hook may run before it counts as failed


async def run_lifecycle_handler(handler: dict, container: dict | None, *, runtime: RemoteRuntime,
                                container_id: str, pod_ip: str, timeout: float) -> ProbeResult:
    """Run a postStart / preStop LifecycleHandler (exec, httpGet, tcpSocket or sleep) bounded by
    ``timeout`` seconds; never raises (mirrors pkg/kubelet/lifecycle/handlers.go)."""
    if handler.get("sleep") is not None:
        await asyncio.sleep(max(0.0, min(float(handler["sleep"].get("seconds") or 0), timeout)))
        return ProbeResult(True)
    return await run_probe({**handler, "timeoutSeconds": max(int(timeout), 1)}, container or {},
                           runtime=runtime, container_id=container_id, pod_ip=pod_ip)


def _container_spec(pod: dict, name: str) -> dict | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    return None


@dataclasses.dataclass
class PodActions:
    """What ``sync_pod`` must do (mirrors kuberuntime podActions)."""

    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_id: str = ""
    attempt: int = 0
    next_init: dict | None = None
    init_failed: bool = False
    containers_to_start: list[dict] = dataclasses.field(default_factory=list)
    ephemeral_to_start: list[dict] = dataclasses.field(default_factory=list)  # never restarted
    # container id -> (name, message) of running containers to stop first
    containers_to_kill: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SyncResult:
    """Outcome of one sync: per-container waiting reasons (reasonCache) and when
    to sync again at the latest (seconds; None = only on events)."""

    reasons: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    requeue_after: float | None = None
    changed: bool = False  # whether the sync acted on the runtime (the pod's status must be read again)
    created: list[str] = dataclasses.field(default_factory=list)  # ids of the containers it created
    first_start: PodStatus | None = None  # a pod's first start: its status with the new sandbox only

    def soon(self, delay: float) -> None:
        """Ask for a resync within ``delay`` seconds."""
        self.requeue_after = delay if self.requeue_after is None else min(self.requeue_after, delay)


def _container_status(cs: pb.ContainerStatus, fallback_annotations: dict[str, str]) -> ContainerStatus:
    """A CRI ContainerStatus as the kubelet keeps it (times in seconds, restart count and spec hash from
    its annotations, else ``fallback_annotations``: those of the ListContainers entry)."""
    ann = dict(cs.annotations) or fallback_annotations
    return ContainerStatus(
        id=cs.id, name=cs.metadata.name, state=state_of(cs.state),
        created_at=cs.created_at / 1e9, started_at=cs.started_at / 1e9,
        finished_at=cs.finished_at / 1e9, exit_code=cs.exit_code, image=cs.image.image,
        image_ref=cs.image_ref, reason=cs.reason, message=cs.message,
        restart_count=int(ann.get(RESTART_COUNT_ANNOTATION, cs.metadata.attempt) or 0),
        hash=ann.get(CONTAINER_HASH_ANNOTATION, ""), log_path=cs.log_path)


def pod_grace_period(pod: dict) -> int:
    """Seconds between SIGTERM and SIGKILL when stopping this pod's containers."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    for v in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if v is not None:
            return max(int(v), 0)
    return DEFAULT_GRACE


def compute_pod_actions(pod: dict, status: PodStatus, *,
                        liveness_failed: Callable[[str, str], bool] = lambda name, cid: False) -> PodActions:
    """Decide what to change for ``pod`` given the runtime ``status``.

    ``liveness_failed(container name, container id)`` reports a failed
    liveness probe of a running container. Mirrors computePodActions
    (without sidecar init containers or in-place resize).
    """
    spec = pod.get("spec", {})
    policy = spec.get("restartPolicy", "Always")
    init_containers, containers = spec.get("initContainers", []), spec.get("containers", [])
    newest = status.sandboxes[0] if status.sandboxes else None
    if newest is None or not newest.ready:
        attempt = newest.attempt + 1 if newest else 0
        actions = PodActions(kill_pod=True, create_sandbox=True, attempt=attempt)
        if policy == "Never" and newest is not None and status.containers:
            # Every container already ran once in a sandbox that is gone: nothing may run again.
            actions.create_sandbox = False
            return actions
        if init_containers:
            # A new sandbox restarts initialization, unless it had completed.
            done = all((c := status.find(ic["name"])) is not None and c.state == STATE_EXITED
                       and c.exit_code == 0 for ic in init_containers)
            if not done:
                actions.next_init = init_containers[0]
                return actions
        for c in containers:
            latest = status.find(c["name"])
            if policy == "OnFailure" and latest is not None and latest.state == STATE_EXITED \
                    and latest.exit_code == 0:
                continue
            actions.containers_to_start.append(c)
        if newest is not None and not actions.containers_to_start:
            actions.create_sandbox = False
        return actions

    actions = PodActions(sandbox_id=newest.id, attempt=newest.attempt)
    # Ephemeral containers start even before initialization completes, once each, never again.
    actions.ephemeral_to_start = [c for c in spec.get("ephemeralContainers") or [] if status.find(c["name"]) is None]
    for ic in init_containers:
        latest = status.find(ic["name"])
        if latest is not None and latest.state == STATE_EXITED and latest.exit_code == 0:
            continue
        if latest is not None and latest.state == STATE_RUNNING:
            return actions  # wait for it
        if latest is not None and latest.state == STATE_EXITED and policy == "Never":
            actions.init_failed = True
            actions.kill_pod = True
            return actions
        if latest is not None and latest.state == STATE_UNKNOWN:
            actions.containers_to_kill[latest.id] = (ic["name"], "unknown state")
        actions.next_init = ic
        return actions

    keep = 0
    for c in containers:
        latest = status.find(c["name"])
        if latest is None or latest.state != STATE_RUNNING:
            if should_restart(c, pod, latest):
                actions.containers_to_start.append(c)
                if latest is not None and latest.state == STATE_UNKNOWN:
                    actions.containers_to_kill[latest.id] = (c["name"], "unknown state")
            continue
        message = ""
        if latest.hash and latest.hash != container_hash(c):
            message = f"Container {c['name']} definition changed, will be restarted"
        elif liveness_failed(c["name"], latest.id):
            message = f"Container {c['name']} failed liveness probe, will be restarted"
        if not message:
            keep += 1
            continue
        actions.containers_to_kill[latest.id] = (c["name"], message)
        if policy != "Never":
            actions.containers_to_start.append(c)
    if keep == 0 and not actions.containers_to_start:
        actions.kill_pod = True
    return actions


def namespaces_for_pod(pod: dict, *, target_id: str = "") -> pb.NamespaceOption:
    """The CRI namespace modes of ``pod``'s sandbox and containers (mirrors the kubelet's namespacesForPod).

    Network and IPC are the pod's (NODE with hostNetwork / hostIPC); PID is each
    container's own (CONTAINER) unless shareProcessNamespace (POD) or hostPID
    (NODE), so a container's command is its PID 1 as upstream. ``target_id`` (an ephemeral
    container's target) gives PID TARGET of that container, as upstream's debug containers.
    """
    spec = pod.get("spec", {})
    pid = pb.NODE if spec.get("hostPID") else pb.POD if spec.get("shareProcessNamespace") else pb.CONTAINER
    if target_id and pid == pb.CONTAINER:
        return pb.NamespaceOption(network=pb.NODE if spec.get("hostNetwork") else pb.POD,
                                  ipc=pb.NODE if spec.get("hostIPC") else pb.POD, pid=pb.TARGET, target_id=target_id)
    return pb.NamespaceOption(network=pb.NODE if spec.get("hostNetwork") else pb.POD,
                              ipc=pb.NODE if spec.get("hostIPC") else pb.POD, pid=pid)


def seccomp_profile(pod: dict, container: dict | None = None, *,
                    seccomp_root: str = "/var/lib/kubelet/seccomp") -> pb.SecurityProfile:
    """The CRI seccomp profile of ``container`` (or of the pod's sandbox when None).

    Mirrors the kubelet's getSeccompProfile (pkg/kubelet/kuberuntime/helpers.go):
    the container's securityContext.seccompProfile wins over the pod's;
    RuntimeDefault and Localhost (``localhostProfile`` under ``seccomp_root``)
    pass through; Unconfined or nothing set is Unconfined, as with the
    kubelet's --seccomp-default=false (upstream's default).
    """
    sp = None
    if container is not None:
        sp = (container.get("securityContext") or {}).get("seccompProfile")
    if not sp:
        sp = (pod.get("spec", {}).get("securityContext") or {}).get("seccompProfile")
    kind = (sp or {}).get("type")
    if kind == "RuntimeDefault":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    if kind == "Localhost":
        ref = os.path.join(seccomp_root, sp.get("localhostProfile") or "")
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=ref)
    return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)


def dns_config(pod: dict, *, cluster_dns: list[str], cluster_domain: str) -> pb.DNSConfig:
    """The sandbox's resolver settings per dnsPolicy (mirrors pkg/kubelet/network/dns
    GetPodDNS): ClusterFirst uses the cluster DNS with the namespace search
    path and ndots:5 (falling back to the runtime's default when no cluster
    DNS is configured or the pod uses the host network), None uses only
    spec.dnsConfig, Default leaves the runtime's default; spec.dnsConfig is merged in."""
    spec = pod.get("spec", {})
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    ns = pod["metadata"].get("namespace", "default")
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        if cluster_dns:
            servers = list(cluster_dns)
            searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            options = ["ndots:5"]
    extra = spec.get("dnsConfig") or {}
    servers += [s for s in extra.get("nameservers") or [] if s not in servers]
    searches += [s for s in extra.get("searches") or [] if s not in searches]
    for o in extra.get("options") or []:
        if o.get("name"):
            options.append(f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"])
    return pb.DNSConfig(servers=servers[:3], searches=searches[:32], options=options)


def pod_log_dir(root_dir: str, pod: dict) -> str:
    """``<root>/pods/<namespace>_<name>_<uid>`` (upstream: /var/log/pods/...)."""
    meta = pod["metadata"]
    return os.path.join(os.path.abspath(root_dir), "pods",
                        f"{meta.get('namespace', 'default')}_{meta['name']}_{meta['uid']}")


class KubeRuntimeManager:
    """Runs pods through a CRI runtime.

    ``recorder(pod, type, reason, message)`` posts events (best-effort, must
    not block). ``backoff`` is the CrashLoopBackOff / image pull backoff
    (keys ``<uid>/<container>`` and ``<uid>/<image>``).
    """

    def __init__(self, runtime: RemoteRuntime, *, root_dir: str, node_ip: str,
                 recorder: Callable[[dict, str, str, str], None],
                 backoff: Backoff | None = None, image_backoff: Backoff | None = None,
                 cluster_dns: list[str] | None = None, cluster_domain: str = "cluster.local",
                 volumes: VolumeManager | None = None):
        self.runtime = runtime
        self.services: Callable[[], list[dict]] | None = None  # the kubelet's service lister (env vars)
        self.volumes = volumes
        self.cluster_dns = cluster_dns or []
        self.cluster_domain = cluster_domain
        self.root_dir = root_dir
        self.node_ip = node_ip
        self.recorder = recorder
        self.backoff = backoff or Backoff(initial=10, max=300)
        self.image_backoff = image_backoff or Backoff(initial=10, max=300)
        self._pull_retry_at: dict[str, float] = {}  # image backoff key -> earliest next pull

    # ---- reading ----------------------------------------------------------

    async def get_pod_status(self, uid: str) -> PodStatus:
        """Sandboxes and containers of pod ``uid``, newest first. Raises CRIError."""
        status = PodStatus(uid)
        for s in await self.runtime.list_pod_sandbox(labels={POD_UID_LABEL: uid}):
            ip = ""
            ready = s.state == pb.SANDBOX_READY
            if ready:
                try:
                    ip = (await self.runtime.pod_sandbox_status(s.id)).network.ip
                except CRIError as e:
                    if not e.not_found:
                        raise
                    continue
            status.name, status.namespace = s.metadata.name, s.metadata.namespace
            status.sandboxes.append(SandboxStatus(s.id, ready, s.metadata.attempt, s.created_at / 1e9, ip))
        status.sandboxes.sort(key=lambda s: (s.created_at, s.attempt), reverse=True)
        for c in await self.runtime.list_containers(labels={POD_UID_LABEL: uid}):
            try:
                cs = await self.runtime.container_status(c.id)
            except CRIError as e:
                if e.not_found:
                    continue
                raise
            status.containers.append(_container_status(cs, dict(c.annotations)))
        status.containers.sort(key=lambda c: (c.restart_count, c.created_at), reverse=True)
        return status

    async def status_after(self, result: SyncResult, uid: str) -> PodStatus:
        """The pod's status after a sync that changed something: for a pod's first start, its new
        sandbox plus a ContainerStatus of each container the sync created (nothing else of it can
        exist); otherwise get_pod_status. Raises CRIError."""
        if result.first_start is None:
            return await self.get_pod_status(uid)
        status = dataclasses.replace(result.first_start, containers=[])
        for cid in result.created:
            try:
                status.containers.append(_container_status(await self.runtime.container_status(cid), {}))
            except CRIError as e:
                if not e.not_found:
                    raise
        status.containers.sort(key=lambda c: (c.restart_count, c.created_at), reverse=True)
        return status

    async def _first_sandbox_status(self, status: PodStatus, sandbox_id: str, attempt: int) -> PodStatus:
        """``status`` (a pod with no sandbox nor container yet) plus its new sandbox ``sandbox_id``,
        from PodSandboxStatus; the full get_pod_status if that sandbox is not ready. Raises CRIError."""
        s = await self.runtime.pod_sandbox_status(sandbox_id)
        if s.state != pb.SANDBOX_READY:
            return await self.get_pod_status(status.uid)
        out = PodStatus(status.uid, name=s.metadata.name, namespace=s.metadata.namespace)
        out.sandboxes.append(SandboxStatus(sandbox_id, True, s.metadata.attempt or attempt, s.created_at / 1e9,
                                           s.network.ip))
        return out

    # ---- configs ----------------------------------------------------------

    def sandbox_config(self, pod: dict, attempt: int) -> pb.PodSandboxConfig:
        """PodSandboxConfig for ``pod`` (mirrors generatePodSandboxConfig)."""
        meta, spec = pod["metadata"], pod.get("spec", {})
        ns = meta.get("namespace", "default")
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=meta["name"], uid=meta["uid"], namespace=ns, attempt=attempt),
            hostname=spec.get("hostname") or meta["name"],
            log_directory=pod_log_dir(self.root_dir, pod),
            dns_config=dns_config(pod, cluster_dns=self.cluster_dns, cluster_domain=self.cluster_domain),
            labels=pod_labels(pod),
            annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items()},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=namespaces_for_pod(pod), seccomp=seccomp_profile(pod))))
        for c in spec.get("containers", []):
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    cfg.port_mappings.append(pb.PortMapping(
                        protocol={"UDP": pb.UDP, "SCTP": pb.SCTP}.get(p.get("protocol", "TCP"), pb.TCP),
                        container_port=int(p["containerPort"]), host_port=int(p["hostPort"]),
                        host_ip=p.get("hostIP", "")))
        return cfg

    def container_config(self, pod: dict, container: dict, restart_count: int, *, pod_ip: str,
                         volumes: dict[str, Volume] | None = None,
                         sources: dict[tuple[str, str], dict | None] | None = None,
                         target_id: str = "", hosts_file: str = "") -> pb.ContainerConfig:
        """ContainerConfig (mirrors generateContainerConfig): command/args with
        $(VAR) expansion, env (from ``sources``: the ConfigMaps and Secrets it references),
        volume mounts plus ``hosts_file`` (the managed /etc/hosts, see ``hosts_file``) at /etc/hosts,
        workingDir, log path ``<name>/<restartCount>.log``; ``target_id``: the running container whose
        PID namespace an ephemeral container's targetContainerName joins. Raises EnvError or
        VolumeError when the environment or a mount cannot be built."""
        env = container_env(pod, container, pod_ip=pod_ip, node_ip=self.node_ip, sources=sources,
                            services=service_env(pod, self.services()) if self.services else None)
        mounts = container_mounts(container, volumes or {})
        if hosts_file and not mounts_hosts(container):  # upstream's shouldMountHostsFile + makeHostsMount
            mounts.append(pb.Mount(container_path=HOSTS_PATH, host_path=hosts_file))
        grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=container["name"], attempt=restart_count),
            image=pb.ImageSpec(image=container.get("image", "")),
            command=[expand(str(a), env) for a in container.get("command") or []],
            args=[expand(str(a), env) for a in container.get("args") or []],
            working_dir=container.get("workingDir", ""),
            envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()],
            mounts=mounts,
            labels=container_labels(pod, container),
            annotations={RESTART_COUNT_ANNOTATION: str(restart_count),
                         CONTAINER_HASH_ANNOTATION: container_hash(container),
                         TERMINATION_GRACE_ANNOTATION: str(grace)},
            log_path=f"{container['name']}/{restart_count}.log",
            stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")),
            tty=bool(container.get("tty")),
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=namespaces_for_pod(pod, target_id=target_id),
                seccomp=seccomp_profile(pod, container))))

    def hosts_file(self, pod: dict, *, pod_ip: str) -> str:
        """Write ``pod``'s managed hosts file (etc_hosts.py) and return its path; "" while the pod
        has no IP (upstream mounts it only then). Blocking file I/O: call it in a thread.
        Raises OSError."""
        ips = [self.node_ip] if pod.get("spec", {}).get("hostNetwork") else [pod_ip]
        if not ips[0]:
            return ""
        return ensure_hosts_file(os.path.join(os.path.abspath(self.root_dir), "pods", pod["metadata"]["uid"]),
                                 pod, ips, cluster_domain=self.cluster_domain)

    # ---- acting -----------------------------------------------------------

    async def ensure_image(self, pod: dict, container: dict, sandbox_config: pb.PodSandboxConfig,
                           result: SyncResult) -> str | None:
        """Make the container's image present per imagePullPolicy; on failure
        record ErrImagePull / ImagePullBackOff / ErrImageNeverPull and return None."""
        image = container.get("image", "")
        name = container["name"]
        uid = pod["metadata"]["uid"]
        tag = image.rsplit("/", 1)[-1]
        default_policy = "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag \
            else "IfNotPresent"
        policy = container.get("imagePullPolicy") or default_policy
        present = await self.runtime.image_status(image)
        if present is not None and policy != "Always":
            self.recorder(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
            return present.id
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            result.reasons[name] = ("ErrImageNeverPull", msg)
            self.recorder(pod, "Warning", "ErrImageNeverPull", msg)
            return None
        key = f"{uid}/{image}"
        now = self.image_backoff.clock()
        retry_at = self._pull_retry_at.get(key, 0.0)
        if now < retry_at:
            msg = f'Back-off pulling image "{image}"'
            result.reasons[name] = ("ImagePullBackOff", msg)
            result.soon(max(retry_at - now, 0.2))
            self.recorder(pod, "Normal", "BackOff", msg)
            return None
        try:
            self.recorder(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            ref = await self.runtime.pull_image(image, sandbox_config=sandbox_config)
        except CRIError as e:
            self.image_backoff.next(key)
            self._pull_retry_at[key] = self.image_backoff.clock() + self.image_backoff.get(key)
            msg = f'Failed to pull image "{image}": {e.message}'
            result.reasons[name] = ("ErrImagePull", msg)
            result.soon(self.image_backoff.get(key))
            self.recorder(pod, "Warning", "Failed", msg)
            return None
        self.image_backoff.reset(key)
        self._pull_retry_at.pop(key, None)
        self.recorder(pod, "Normal", "Pulled", f'Successfully pulled image "{image}"')
        return ref

    async def start_container(self, pod: dict, container: dict, status: PodStatus, sandbox_id: str,
                              sandbox_config: pb.PodSandboxConfig, result: SyncResult, *,
                              volumes: dict[str, Volume] | None = None) -> bool:
        """Backoff check, image, create, start. Returns True if it started;
        failures are recorded in ``result.reasons`` (mirrors startContainer + doBackOff)."""
        name = container["name"]
        uid = pod["metadata"]["uid"]
        latest = status.find(name)
        key = f"{uid}/{name}"
        if latest is not None and latest.state == STATE_EXITED:
            finished = latest.finished_at or latest.created_at
            if self.backoff.in_backoff_since(key, finished):
                delay = self.backoff.get(key)
                msg = (f"back-off {delay:.0f}s restarting failed container={name} "
                       f"pod={pod['metadata']['name']}_{pod['metadata'].get('namespace', 'default')}({uid})")
                result.reasons[name] = ("CrashLoopBackOff", msg)
                result.soon(max(self.backoff.remaining(key, finished), 0.2))
                self.recorder(pod, "Warning", "BackOff", "Back-off restarting failed container "
                              f"{name} in pod {pod['metadata']['name']}")
                return False
            self.backoff.next(key)
        restart_count = latest.restart_count + 1 if latest is not None else 0
        if await self.ensure_image(pod, container, sandbox_config, result) is None:
            return False
        pod_ip = status.ip
        try:
            sources = await self.volumes.fetch(pod["metadata"].get("namespace", "default"),
                                               env_references(pod, container)) if self.volumes else {}
            target = status.find(container.get("targetContainerName") or "")
            hosts = await asyncio.to_thread(self.hosts_file, pod, pod_ip=pod_ip)
            cfg = self.container_config(pod, container, restart_count, pod_ip=pod_ip, volumes=volumes,
                                        sources=sources, target_id=target.id if target is not None and
                                        target.state == STATE_RUNNING else "", hosts_file=hosts)
        except (EnvError, VolumeError, OSError) as e:
            result.reasons[name] = ("CreateContainerConfigError", str(e))
            self.recorder(pod, "Warning", "Failed", f"Error: {e}")
            result.soon(2.0)
            return False
        try:
            cid = await self.runtime.create_container(sandbox_id, cfg, sandbox_config)
            result.created.append(cid)
        except CRIError as e:
            result.reasons[name] = ("CreateContainerError", e.message)
            self.recorder(pod, "Warning", "Failed", f"Error: {e.message}")
            result.soon(self.backoff.initial)
            return False
        self.recorder(pod, "Normal", "Created", f"Created container {name}")
        try:
            await self.runtime.start_container(cid)
        except CRIError as e:
            result.reasons[name] = ("RunContainerError", e.message)
            self.recorder(pod, "Warning", "Failed", f"Error: {e.message}")
            result.soon(self.backoff.initial)
            return False
        self.recorder(pod, "Normal", "Started", f"Started container {name}")
        post_start = (container.get("lifecycle") or {}).get("postStart")
        if post_start:
            res = await run_lifecycle_handler(post_start, container, runtime=self.runtime, container_id=cid,
                                              pod_ip=pod_ip, timeout=POST_START_TIMEOUT)
            if not res.ok:
                msg = f"PostStartHook failed: {res.message}"
                self.recorder(pod, "Warning", "FailedPostStartHook", msg)
                self.recorder(pod, "Normal", "Killing", f"Stopping container {name}: FailedPostStartHook")
                await self._stop_container(cid, pod_grace_period(pod))
                result.reasons[name] = ("PostStartHookError", msg)
                result.soon(self.backoff.initial)
                return False
        result.reasons.pop(name, None)
        await self._prune_dead(status, name)
        return True

    async def _prune_dead(self, status: PodStatus, name: str) -> None:
        """Keep only the previous run of ``name`` (for ``logs --previous``);
        mirrors the container GC's MaxPerPodContainer=1."""
        for old in status.all_of(name)[1:]:
            if old.state == STATE_EXITED:
                try:
                    await self.runtime.remove_container(old.id)
                except CRIError as e:
                    log.debug("removing dead container %s: %s", old.id, e)

    async def sync_pod(self, pod: dict, status: PodStatus, *,
                       liveness_failed: Callable[[str, str], bool] = lambda n, c: False) -> SyncResult:
        """Make the runtime match ``pod`` (mirrors SyncPod). Returns the
        per-container reasons and when to resync. Raises CRIError on runtime failures."""
        result = SyncResult()
        actions = compute_pod_actions(pod, status, liveness_failed=liveness_failed)
        result.changed = bool(actions.kill_pod or actions.containers_to_kill or actions.create_sandbox
                              or actions.next_init is not None or actions.containers_to_start
                              or actions.ephemeral_to_start)
        if actions.kill_pod:
            await self.kill_pod(pod, status, grace=pod_grace_period(pod) if not actions.create_sandbox else 0)
            if not actions.create_sandbox:
                return result
        for cid, (name, message) in actions.containers_to_kill.items():
            self.recorder(pod, "Normal", "Killing", f"Stopping container {name}" +
                          (f": {message}" if message else ""))
            await self._kill_container(pod, name, cid, pod_grace_period(pod), pod_ip=status.ip)
        sandbox_id = actions.sandbox_id
        sandbox_config = self.sandbox_config(pod, actions.attempt)
        volumes: dict[str, Volume] = {}
        if self.volumes is not None:
            try:
                volumes = await self.volumes.setup_pod(pod, pod_ip=status.ip, node_ip=self.node_ip)
            except VolumeError as e:
                msg = f'MountVolume.SetUp failed for volume "{e.volume}" : {e}'
                self.recorder(pod, "Warning", "FailedMount", msg)
                result.soon(2.0)
                for c in pod.get("spec", {}).get("containers", []):
                    if status.find(c["name"]) is None:
                        result.reasons[c["name"]] = ("ContainerCreating", msg)
                return result
        if actions.create_sandbox:
            try:
                os.makedirs(sandbox_config.log_directory, exist_ok=True)
                sandbox_id = await self.runtime.run_pod_sandbox(sandbox_config)
            except CRIError as e:
                msg = f"Failed to create pod sandbox: {e.message}"
                self.recorder(pod, "Warning", "FailedCreatePodSandBox", msg)
                result.soon(self.backoff.initial)
                for c in pod.get("spec", {}).get("containers", []):
                    result.reasons[c["name"]] = ("ContainerCreating", msg)
                return result
            if status.sandboxes or status.containers:
                status = await self.get_pod_status(pod["metadata"]["uid"])
            else:
                # A pod's first sandbox: nothing else of it exists, so its status is known but for
                # the IP; one PodSandboxStatus instead of relisting every sandbox and container.
                status = await self._first_sandbox_status(status, sandbox_id, actions.attempt)
                if len(status.sandboxes) == 1 and not status.containers:
                    result.first_start = status
        for c in actions.ephemeral_to_start:
            await self.start_container(pod, c, status, sandbox_id, sandbox_config, result, volumes=volumes)
        if actions.next_init is not None:
            await self.start_container(pod, actions.next_init, status, sandbox_id, sandbox_config, result,
                                       volumes=volumes)
            return result
        for c in actions.containers_to_start:
            await self.start_container(pod, c, status, sandbox_id, sandbox_config, result, volumes=volumes)
        return result

    async def _kill_container(self, pod: dict | None, name: str, cid: str, grace: int, *, pod_ip: str) -> None:
        """Run the container's preStop hook (bounded by the grace period), then stop it with what
        is left of the grace period, at least 2 s (mirrors killContainer + executePreStopHook)."""
        spec = _container_spec(pod, name) if pod is not None else None
        pre_stop = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if pre_stop and grace > 0:
            start = time.monotonic()
            res = await run_lifecycle_handler(pre_stop, spec, runtime=self.runtime, container_id=cid,
                                              pod_ip=pod_ip, timeout=grace)
            if not res.ok:
                self.recorder(pod, "Warning", "FailedPreStopHook",
                              f"PreStopHook failed: {res.message}")
            grace = max(int(grace - (time.monotonic() - start)), MIN_GRACE_AFTER_HOOK)
        await self._stop_container(cid, grace)

    async def _stop_container(self, cid: str, grace: int) -> None:
        try:
            await self.runtime.stop_container(cid, grace)
        except CRIError as e:
            if not e.not_found:
                raise

    async def kill_pod(self, pod: dict | None, status: PodStatus, *, grace: int) -> None:
        """Stop every running container (in parallel, SIGKILL after ``grace`` s)
        and every sandbox of the pod (mirrors KillPod)."""
        running = [c for c in status.containers if c.state not in (STATE_EXITED,)]
        if pod is not None:
            for c in running:
                self.recorder(pod, "Normal", "Killing", f"Stopping container {c.name}")
        await asyncio.gather(*(self._kill_container(pod, c.name, c.id, grace, pod_ip=status.ip) for c in running))
        for s in status.sandboxes:
            if s.ready:
                try:
                    await self.runtime.stop_pod_sandbox(s.id)
                except CRIError as e:
                    if not e.not_found:
                        raise

    async def remove_pod(self, status: PodStatus) -> None:
        """Remove every sandbox (and with it its containers) and stray container of the pod."""
        for c in status.containers:
            try:
                await self.runtime.remove_container(c.id)
            except CRIError as e:
                if not e.not_found:
                    log.warning("removing container %s: %s", c.id, e)
        for s in status.sandboxes:
            try:
                await self.runtime.remove_pod_sandbox(s.id)
            except CRIError as e:
                if not e.not_found:
                    raise
