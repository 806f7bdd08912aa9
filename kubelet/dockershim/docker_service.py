"""RuntimeService over Docker: runtime-wide RPCs and the lookups all others share.

Mirrors dockershim's docker_service.go (Version, Status, UpdateRuntimeConfig)
and docker_stats_linux.go. Sandbox and container RPCs come from the mixins in
docker_sandbox.py and docker_container.py. Every Docker object we look at must
carry our node's label; anything else is NOT_FOUND to this shim.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os

import docker
import docker.errors

from kubelet.dockershim import helpers as h
from kubelet.dockershim.docker_container import ContainerMixin
from kubelet.dockershim.docker_sandbox import SandboxMixin
from kubelet.dockershim.logs import LogManager
from kubelet.dockershim.network import NetworkPlugin
from kubelet.dockershim.sandbox_files import SandboxFiles
from kubelet.dockershim.start_gate import StartGate
from proto.cri import api_pb2, api_pb2_grpc

log = logging.getLogger("dockershim")

RUNTIME_NAME = "docker"
RUNTIME_API_VERSION = "v1"
CGROUP_ROOT = "/sys/fs/cgroup"


class DockerService(SandboxMixin, ContainerMixin, api_pb2_grpc.RuntimeServiceServicer):
    """The runtime.v1 RuntimeService of one node.

    ``client``: a docker.DockerClient; ``network``: the node's NetworkPlugin;
    ``logs``: the LogManager copying container output to CRI log files;
    ``files``: the SandboxFiles holding each pod's resolv.conf and hosts;
    ``max_concurrent_starts``: Docker starts in flight (0 = unbounded, see start_gate.py).
    RPCs not defined here answer UNIMPLEMENTED (the generated base class).
    """

    def __init__(self, *, client: docker.DockerClient, node_name: str, network: NetworkPlugin,
                 logs: LogManager, files: SandboxFiles, infra_image: str, max_concurrent_starts: int = 0) -> None:
        self.client = client
        self.start_gate = StartGate(max_concurrent_starts)  # Docker starts in flight, app containers first
        self.api = client.api
        self.node_name = node_name
        self.network = network
        self.logs = logs
        self.files = files
        self.infra_image = infra_image
        # id -> {"labels", "tty"} of sandboxes and containers this shim created, so that the
        # CreateContainer / StartContainer following a create need not inspect (a Docker call each,
        # queued behind the starts of a burst of pods). A restarted shim falls back to inspect.
        self._created: dict[str, dict] = {}

    def _remember(self, ident: str, labels: dict, *, tty: bool = False) -> None:
        if len(self._created) >= 4096:
            self._created.pop(next(iter(self._created)))
        self._created[ident] = {"labels": labels, "tty": tty}

    def _forget(self, ident: str) -> None:
        self._created.pop(ident, None)

    async def _own_labels(self, ident: str, kind: str) -> tuple[str, dict, bool]:
        """(full id, Docker labels, tty) of a sandbox/container of this node: from what this shim
        created, else inspected (CRIError NOT_FOUND as _inspect_own)."""
        known = self._created.get(ident)
        if known is not None and known["labels"].get(h.TYPE) == kind:
            return ident, known["labels"], known["tty"]
        info = await self._inspect_own(ident, kind)
        return info["Id"], info["Config"].get("Labels") or {}, bool(info["Config"].get("Tty"))

    # ---- lookups ---------------------------------------------------------------

    async def _list_own(self, kind: str, *, sandbox_id: str = "", labels=None) -> list[dict]:
        """Docker's container list entries of this node of one type (podsandbox|container), with
        ``sandbox_id`` and every pair of ``labels`` (a CRI label_selector) among their Docker labels.
        Docker filters: a kubelet asking for one pod's objects gets those, not the node's all."""
        label_filter = [f"{h.TYPE}={kind}", f"{h.NODE}={self.node_name}"]
        if sandbox_id:
            label_filter.append(f"{h.SANDBOX_ID}={sandbox_id}")
        label_filter += [f"{k}={v}" for k, v in sorted((labels or {}).items()) if "=" not in k]
        return await asyncio.to_thread(self.api.containers, all=True, filters={"label": label_filter})

    async def _inspect_own(self, ident: str, kind: str) -> dict:
        """Inspect a sandbox/container of this node by (a prefix of) its id; CRIError otherwise."""
        what = "sandbox" if kind == h.TYPE_SANDBOX else "container"
        if not ident:
            raise h.invalid(f"{what} id is required")
        if not all(c in "0123456789abcdef" for c in ident):
            raise h.not_found(what, ident)  # keeps names and odd strings away from Docker's lookup
        try:
            info = await asyncio.to_thread(self.api.inspect_container, ident)
        except docker.errors.NotFound:
            raise h.not_found(what, ident) from None
        labels = info["Config"].get("Labels") or {}
        if labels.get(h.NODE) != self.node_name or labels.get(h.TYPE) != kind:
            raise h.not_found(what, ident)
        return info

    # ---- runtime-wide RPCs -------------------------------------------------------

    @h.grpc_errors
    async def Version(self, request, context):
        """CRI Version: the runtime name, Docker's version and the CRI API version (v1)."""
        version = await asyncio.to_thread(self.api.version)
        return api_pb2.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME,
                                       runtime_version=version.get("Version", ""),
                                       runtime_api_version=RUNTIME_API_VERSION)

    @h.grpc_errors
    async def Status(self, request, context):
        """CRI Status: RuntimeReady from a Docker ping, NetworkReady from the CNI network plugin's status."""
        try:
            await asyncio.to_thread(self.api.ping)
            runtime = api_pb2.RuntimeCondition(type="RuntimeReady", status=True)
        except Exception as e:
            runtime = api_pb2.RuntimeCondition(type="RuntimeReady", status=False,
                                               reason="DockerDaemonNotReady", message=str(e))
        ready, message = await asyncio.to_thread(self.network.status)
        network = api_pb2.RuntimeCondition(type="NetworkReady", status=ready,
                                           reason="" if ready else "NetworkPluginNotReady",
                                           message=message)
        return api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=[runtime, network]),
                                      runtime_handlers=[api_pb2.RuntimeHandler(name="")])

    @h.grpc_errors
    async def UpdateRuntimeConfig(self, request, context):
        """CRI UpdateRuntimeConfig: write the CNI config for bridge "kubeling0" with host-local IPAM over ``pod_cidr``;
        INVALID_ARGUMENT for a bad or too small CIDR.
        """
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise h.invalid(f"runtime_config.network_config.pod_cidr: {e}") from None
            if net.version != 4 or net.prefixlen > 30:
                raise h.invalid(f"runtime_config.network_config.pod_cidr: {cidr} must be IPv4 with room for pods")
            await asyncio.to_thread(self.network.update_pod_cidr, str(net))
        return api_pb2.UpdateRuntimeConfigResponse()

    # ---- stats (cgroup v1 files: `docker stats` costs about 1 s a call) -----------

    def _cgroup_dir(self, controller: str, info: dict) -> str:
        parent = (info.get("HostConfig") or {}).get("CgroupParent") or "/docker"
        return os.path.join(CGROUP_ROOT, controller, parent.lstrip("/"), info["Id"])

    def _read_int(self, path: str) -> int | None:
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stats(self, info: dict) -> api_pb2.ContainerStats:
        labels = info["Config"].get("Labels") or {}
        cri_labels, annotations = h.split_labels(labels)
        ts = h.now_ns()
        stats = api_pb2.ContainerStats(attributes=api_pb2.ContainerAttributes(
            id=info["Id"], metadata=self._container_metadata(labels), labels=cri_labels,
            annotations=annotations))
        cpu = self._read_int(os.path.join(self._cgroup_dir("cpuacct", info), "cpuacct.usage"))
        if cpu is not None:
            stats.cpu.timestamp = ts
            stats.cpu.usage_core_nano_seconds.value = cpu
        mem_dir = self._cgroup_dir("memory", info)
        usage = self._read_int(os.path.join(mem_dir, "memory.usage_in_bytes"))
        if usage is not None:
            inactive = 0
            try:
                with open(os.path.join(mem_dir, "memory.stat")) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == "total_inactive_file":
                            inactive = int(v)
            except (OSError, ValueError):
                pass
            stats.memory.timestamp = ts
            stats.memory.usage_bytes.value = usage
            stats.memory.working_set_bytes.value = max(0, usage - inactive)
        stats.writable_layer.timestamp = ts
        return stats

    @h.grpc_errors
    async def ContainerStats(self, request, context):
        """CRI ContainerStats: cpu (ns) and memory (bytes) usage of one container; NOT_FOUND for an unknown id."""
        info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        return api_pb2.ContainerStatsResponse(stats=await asyncio.to_thread(self._stats, info))

    @h.grpc_errors
    async def ListContainerStats(self, request, context):
        """CRI ListContainerStats: usage of every running container matching the filter."""
        f = request.filter
        out = []
        for c in await self._list_own(h.TYPE_CONTAINER):
            labels = c.get("Labels") or {}
            if c.get("State") != "running":
                continue
            if f.id and not c["Id"].startswith(f.id):
                continue
            if f.pod_sandbox_id and not labels.get(h.SANDBOX_ID, "").startswith(f.pod_sandbox_id):
                continue
            if not h.match_labels(h.split_labels(labels)[0], f.label_selector):
                continue
            try:
                info = await asyncio.to_thread(self.api.inspect_container, c["Id"])
            except docker.errors.NotFound:
                continue
            out.append(await asyncio.to_thread(self._stats, info))
        return api_pb2.ListContainerStatsResponse(stats=out)

    # ---- recovery ------------------------------------------------------------------

    async def resume(self) -> None:
        """After a (re)start: follow the logs of every started container of this node."""
        for c in await self._list_own(h.TYPE_CONTAINER):
            if c.get("State") in ("running", "exited"):
                path = (c.get("Labels") or {}).get(h.LOG_PATH, "")
                await asyncio.to_thread(self.logs.follow, c["Id"], path)
