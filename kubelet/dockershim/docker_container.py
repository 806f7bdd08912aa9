"""Container RPCs: app containers joined to their sandbox's namespaces.

Mirrors dockershim's docker_container.go and docker_exec.go: CRI command is
Docker's entrypoint and CRI args Docker's cmd, mounts become binds, Linux
resources become Docker's cgroup settings, and a started container's output
is copied to the CRI log file the kubelet asked for (see logs.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

import docker.errors
import grpc

from kubelet.dockershim import helpers as h
from kubelet.dockershim.start_gate import APP
from kubelet.dockershim.streaming import ExecSession
from proto.cri import api_pb2

log = logging.getLogger("dockershim.container")

PROPAGATION = {api_pb2.PROPAGATION_PRIVATE: "", api_pb2.PROPAGATION_HOST_TO_CONTAINER: ",rslave",
               api_pb2.PROPAGATION_BIDIRECTIONAL: ",rshared"}


def _namespace_mode(mode: int, sandbox_id: str, target_id: str = "") -> str | None:
    if mode == api_pb2.NODE:
        return "host"
    if mode == api_pb2.POD:
        return f"container:{sandbox_id}"
    if mode == api_pb2.TARGET:
        if not target_id:
            raise h.invalid("namespace_options.target_id is required with pid TARGET")
        return f"container:{target_id}"
    return None


def _resources(res) -> dict:
    """LinuxContainerResources -> docker create_host_config keyword arguments."""
    out = {}
    if res.cpu_shares:
        out["cpu_shares"] = res.cpu_shares
    if res.cpu_period:
        out["cpu_period"] = res.cpu_period
    if res.cpu_quota:
        out["cpu_quota"] = res.cpu_quota
    if res.memory_limit_in_bytes:
        out["mem_limit"] = res.memory_limit_in_bytes
        out["memswap_limit"] = res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes
    if res.oom_score_adj:
        out["oom_score_adj"] = res.oom_score_adj
    if res.cpuset_cpus:
        out["cpuset_cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        out["cpuset_mems"] = res.cpuset_mems
    return out


def _binds(mounts) -> list[str]:
    binds = []
    for m in mounts:
        if not m.container_path or not m.host_path:
            raise h.invalid("mounts need container_path and host_path")
        if not os.path.exists(m.host_path):
            raise h.invalid(f"mount host_path {m.host_path!r} does not exist")
        binds.append(f"{m.host_path}:{m.container_path}:{'ro' if m.readonly else 'rw'}"
                     f"{PROPAGATION.get(m.propagation, '')}")
    return binds


def _reason(state: dict) -> str:
    if state.get("Status") not in ("exited", "dead"):
        return ""
    if state.get("OOMKilled"):
        return "OOMKilled"
    return "Completed" if state.get("ExitCode") == 0 else "Error"


class ContainerMixin:
    """CreateContainer ... ExecSync, Exec of RuntimeService."""

    streaming = None  # the StreamingServer serving Exec URLs (set by server.serve)

    @h.grpc_errors
    async def CreateContainer(self, request, context):
        """CRI CreateContainer: create (not start) a Docker container joined to the sandbox's namespaces;
        INVALID_ARGUMENT without a name or image, NOT_FOUND for an unknown sandbox or missing image.
        """
        config = request.config
        if not config.metadata.name:
            raise h.invalid("config.metadata.name is required")
        if not config.image.image:
            raise h.invalid("config.image.image is required")
        sandbox_id, slabels, _ = await self._own_labels(request.pod_sandbox_id, h.TYPE_SANDBOX)
        log_dir = slabels.get(h.LOG_DIRECTORY) or request.sandbox_config.log_directory
        log_path = os.path.join(log_dir, config.log_path) if log_dir and config.log_path else ""
        internal = {
            h.TYPE: h.TYPE_CONTAINER, h.NODE: self.node_name, h.SANDBOX_ID: sandbox_id,
            h.META_NAME: config.metadata.name, h.META_ATTEMPT: str(config.metadata.attempt),
            h.POD_NAME: slabels.get(h.POD_NAME, ""), h.POD_NAMESPACE: slabels.get(h.POD_NAMESPACE, ""),
            h.POD_UID: slabels.get(h.POD_UID, ""), h.CREATED_AT: str(h.now_ns()),
            h.LOG_PATH: log_path, h.IMAGE: config.image.image,
        }
        labels = h.make_labels(config.labels, config.annotations, internal)
        sec = config.linux.security_context
        ns = sec.namespace_options
        host_network = slabels.get(h.HOST_NETWORK) == "true"
        user = None
        if sec.HasField("run_as_user"):
            user = str(sec.run_as_user.value)
        elif sec.run_as_username:
            user = sec.run_as_username
        if user and sec.HasField("run_as_group"):
            user += f":{sec.run_as_group.value}"
        host_config = self.api.create_host_config(
            network_mode="host" if host_network else f"container:{sandbox_id}",
            ipc_mode=_namespace_mode(ns.ipc, sandbox_id),
            pid_mode=_namespace_mode(ns.pid, sandbox_id, ns.target_id),
            binds=(_binds(config.mounts) + ([] if host_network else self.files.binds(
                sandbox_id, {m.container_path for m in config.mounts}))) or None,
            privileged=sec.privileged,
            cap_add=list(sec.capabilities.add_capabilities) or None,
            cap_drop=list(sec.capabilities.drop_capabilities) or None,
            read_only=sec.readonly_rootfs,
            group_add=[str(g) for g in sec.supplemental_groups] or None,
            cgroup_parent=request.sandbox_config.linux.cgroup_parent or None,
            security_opt=h.seccomp_security_opts(sec) or None,
            **_resources(config.linux.resources))
        sm = slabels
        name = h.docker_name(config.metadata.name, sm.get(h.POD_NAME), sm.get(h.POD_NAMESPACE),
                             sm.get(h.POD_UID), config.metadata.attempt, self.node_name)
        kwargs = dict(image=config.image.image, entrypoint=list(config.command) or None,
                      command=list(config.args) or None, working_dir=config.working_dir or None,
                      environment=[f"{e.key}={e.value}" for e in config.envs], labels=labels, name=name,
                      host_config=host_config, user=user, tty=config.tty, stdin_open=config.stdin,
                      stdin_once=config.stdin_once)
        try:
            created = await self._create_replacing_leftover(kwargs, h.TYPE_CONTAINER)
        except docker.errors.ImageNotFound:
            raise h.CRIError(grpc.StatusCode.NOT_FOUND, f"image {config.image.image!r} not present") from None
        self._remember(created["Id"], labels, tty=config.tty)
        return api_pb2.CreateContainerResponse(container_id=created["Id"])

    @h.grpc_errors
    async def StartContainer(self, request, context):
        """CRI StartContainer: start the container and begin copying its output to the CRI log file;
        NOT_FOUND for an unknown id.
        """
        cid, labels, tty = await self._own_labels(request.container_id, h.TYPE_CONTAINER)
        async with self.start_gate.slot(APP):
            await asyncio.to_thread(self.api.start, cid)
        self._forget(cid)  # a container starts once; later RPCs inspect its current state
        await asyncio.to_thread(self.logs.follow, cid, labels.get(h.LOG_PATH, ""), tty=tty)
        return api_pb2.StartContainerResponse()

    @h.grpc_errors
    async def StopContainer(self, request, context):
        """CRI StopContainer: SIGTERM, then SIGKILL after ``timeout`` seconds; INVALID_ARGUMENT for a negative
        timeout, NOT_FOUND for an unknown id.
        """
        if request.timeout < 0:
            raise h.invalid("timeout must be >= 0")
        info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        if info["State"].get("Running"):
            # Docker sends the image's stop signal (SIGTERM), SIGKILL after `timeout` s.
            await asyncio.to_thread(self.api.stop, info["Id"], timeout=int(request.timeout))
        return api_pb2.StopContainerResponse()

    @h.grpc_errors
    async def RemoveContainer(self, request, context):
        """CRI RemoveContainer: force-remove the container; an unknown id succeeds (idempotent, as upstream)."""
        if not request.container_id:
            raise h.invalid("container_id is required")
        try:
            info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        except h.CRIError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return api_pb2.RemoveContainerResponse()
            raise
        try:
            await asyncio.to_thread(self.api.remove_container, info["Id"], force=True)
        except docker.errors.NotFound:
            pass
        self._forget(info["Id"])
        self.logs.forget(info["Id"])
        return api_pb2.RemoveContainerResponse()

    def _container_metadata(self, labels: dict) -> api_pb2.ContainerMetadata:
        return api_pb2.ContainerMetadata(name=labels.get(h.META_NAME, ""), attempt=h.meta_attempt(labels))

    @h.grpc_errors
    async def ListContainers(self, request, context):
        """CRI ListContainers: our containers matching the filter (id prefix, state, sandbox id, labels)."""
        f = request.filter
        out = []
        full_id = f.pod_sandbox_id if len(f.pod_sandbox_id) == 64 else ""
        for c in await self._list_own(h.TYPE_CONTAINER, sandbox_id=full_id, labels=f.label_selector):
            labels = c.get("Labels") or {}
            sandbox_id = labels.get(h.SANDBOX_ID, "")
            if f.id and not c["Id"].startswith(f.id):
                continue
            if f.pod_sandbox_id and not sandbox_id.startswith(f.pod_sandbox_id):
                continue
            state = h.container_state(c.get("State", ""))
            if f.HasField("state") and f.state.state != state:
                continue
            cri_labels, annotations = h.split_labels(labels)
            if not h.match_labels(cri_labels, f.label_selector):
                continue
            image = labels.get(h.IMAGE) or c.get("Image", "")
            out.append(api_pb2.Container(
                id=c["Id"], pod_sandbox_id=sandbox_id, metadata=self._container_metadata(labels),
                image=api_pb2.ImageSpec(image=image), image_ref=c.get("ImageID", ""),
                image_id=c.get("ImageID", ""), state=state,
                created_at=h.created_ns(labels, c.get("Created", 0)), labels=cri_labels,
                annotations=annotations))
        return api_pb2.ListContainersResponse(containers=out)

    @h.grpc_errors
    async def ContainerStatus(self, request, context):
        """CRI ContainerStatus: state, times (ns), exit code/reason, image, labels, log path; NOT_FOUND if unknown."""
        info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        labels = info["Config"].get("Labels") or {}
        cri_labels, annotations = h.split_labels(labels)
        state = info.get("State") or {}
        hc = info.get("HostConfig") or {}
        mounts = [api_pb2.Mount(container_path=m.get("Destination", ""), host_path=m.get("Source", ""),
                                readonly=not m.get("RW", True))
                  for m in info.get("Mounts") or [] if m.get("Type") == "bind"]
        status = api_pb2.ContainerStatus(
            id=info["Id"], metadata=self._container_metadata(labels),
            state=h.container_state(state.get("Status", "")),
            created_at=h.created_ns(labels) or h.parse_docker_time(info.get("Created")),
            started_at=h.parse_docker_time(state.get("StartedAt")),
            finished_at=h.parse_docker_time(state.get("FinishedAt")),
            exit_code=state.get("ExitCode", 0) or 0,
            image=api_pb2.ImageSpec(image=labels.get(h.IMAGE) or info["Config"].get("Image", "")),
            image_ref=info.get("Image", ""), image_id=info.get("Image", ""),
            reason=_reason(state), message=state.get("Error", "") or "",
            labels=cri_labels, annotations=annotations, mounts=mounts,
            log_path=labels.get(h.LOG_PATH, ""),
            resources=api_pb2.ContainerResources(linux=api_pb2.LinuxContainerResources(
                cpu_period=hc.get("CpuPeriod") or 0, cpu_quota=hc.get("CpuQuota") or 0,
                cpu_shares=hc.get("CpuShares") or 0, memory_limit_in_bytes=hc.get("Memory") or 0,
                cpuset_cpus=hc.get("CpusetCpus") or "", cpuset_mems=hc.get("CpusetMems") or "")))
        resp = api_pb2.ContainerStatusResponse(status=status)
        if request.verbose:
            resp.info["info"] = json.dumps({"pid": state.get("Pid", 0), "sandboxID": labels.get(h.SANDBOX_ID),
                                            "name": info.get("Name", "")})
        return resp

    @h.grpc_errors
    async def ExecSync(self, request, context):
        """CRI ExecSync: run ``cmd`` in a running container, returning stdout, stderr and exit code;
        FAILED_PRECONDITION if not running, DEADLINE_EXCEEDED after ``timeout`` seconds (0 = none).
        """
        if not request.cmd:
            raise h.invalid("cmd is required")
        if request.timeout < 0:
            raise h.invalid("timeout must be >= 0")
        info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        if not info["State"].get("Running"):
            raise h.CRIError(grpc.StatusCode.FAILED_PRECONDITION,
                             f"container {info['Id'][:12]} is not running")
        exec_id = (await asyncio.to_thread(self.api.exec_create, info["Id"], list(request.cmd),
                                           stdout=True, stderr=True))["Id"]
        run = asyncio.to_thread(self.api.exec_start, exec_id, demux=True)
        try:
            out, err = await (asyncio.wait_for(run, request.timeout) if request.timeout else run)
        except asyncio.TimeoutError:
            await asyncio.to_thread(self._kill_exec, exec_id)
            raise h.CRIError(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"command {list(request.cmd)} timed out after {request.timeout}s") from None
        inspect = await asyncio.to_thread(self.api.exec_inspect, exec_id)
        return api_pb2.ExecSyncResponse(stdout=(out or b"")[:h.MAX_EXEC_OUTPUT],
                                        stderr=(err or b"")[:h.MAX_EXEC_OUTPUT],
                                        exit_code=inspect.get("ExitCode") or 0)

    @h.grpc_errors
    async def Exec(self, request, context):
        """CRI Exec: register a streaming exec of ``cmd`` in a running container and return the URL
        of the shim's streaming server serving it (kubelet/dockershim/streaming.py); INVALID_ARGUMENT
        without cmd or without any of stdin/stdout/stderr, FAILED_PRECONDITION if not running.
        Mirrors dockershim's docker_streaming.go Exec -> streaming.Server.GetExec.
        """
        if not request.cmd:
            raise h.invalid("cmd is required")
        info = await self._running_for_stream(request)
        url = self.streaming.get_exec(ExecSession(container_id=info["Id"], cmd=list(request.cmd),
                                                  tty=request.tty, stdin=request.stdin,
                                                  stdout=request.stdout, stderr=request.stderr))
        return api_pb2.ExecResponse(url=url)

    @h.grpc_errors
    async def Attach(self, request, context):
        """CRI Attach: register a streaming attach to a running container's own stdin/stdout/stderr and
        return the URL of the shim's streaming server serving it; INVALID_ARGUMENT without any stream or
        with tty and stderr together, FAILED_PRECONDITION if not running, or for stdin into a container
        created without stdin. Mirrors dockershim's docker_streaming.go Attach -> GetAttach.
        """
        info = await self._running_for_stream(request)
        if request.stdin and not info["Config"].get("OpenStdin"):
            raise h.CRIError(grpc.StatusCode.FAILED_PRECONDITION,
                             f"container {info['Id'][:12]} was not created with stdin (spec stdin: true)")
        url = self.streaming.get_exec(ExecSession(container_id=info["Id"], cmd=None, tty=bool(info["Config"].get("Tty")),
                                                  stdin=request.stdin, stdout=request.stdout,
                                                  stderr=request.stderr and not info["Config"].get("Tty")))
        return api_pb2.AttachResponse(url=url)

    async def _running_for_stream(self, request) -> dict:
        """The inspected container an Exec/Attach ``request`` streams from, after the checks both
        share: some stream asked, not tty with stderr, the streaming server up, the container running."""
        if not (request.stdin or request.stdout or request.stderr):
            raise h.invalid("one of stdin, stdout, or stderr must be set")
        if request.tty and request.stderr:
            raise h.invalid("tty and stderr cannot both be true")
        if self.streaming is None:
            raise h.CRIError(grpc.StatusCode.UNAVAILABLE, "the streaming server is not running")
        info = await self._inspect_own(request.container_id, h.TYPE_CONTAINER)
        if not info["State"].get("Running"):
            raise h.CRIError(grpc.StatusCode.FAILED_PRECONDITION, f"container {info['Id'][:12]} is not running")
        return info

    def _kill_exec(self, exec_id: str) -> None:
        """Docker cannot cancel an exec; the shim runs on the host, so kill its process."""
        try:
            pid = self.api.exec_inspect(exec_id).get("Pid")
            if pid:
                os.kill(pid, signal.SIGKILL)
        except (docker.errors.APIError, ProcessLookupError, PermissionError) as e:
            log.warning("could not kill timed-out exec %s: %s", exec_id[:12], e)
