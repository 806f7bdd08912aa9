"""PodSandbox RPCs: a pause container per pod plus its CNI network.

Mirrors dockershim's docker_sandbox.go. The sandbox is a container running
``sleep`` under docker-init (so SIGTERM stops it at once) in a network
namespace of its own; CNI ADD gives that netns (/proc/<pid>/ns/net) the pod's
interface, and app containers later join it and the IPC namespace.

The pause container is created with ``NetworkDisabled``: runc makes the netns
(loopback up) and Docker's network stack stays out of it. With
``network_mode=none`` instead, Docker re-executes dockerd as the
``libnetwork-setkey`` prestart hook for every sandbox, which measured here as
half of Docker's CPU per pod (60 containers started 8 at a time: 6.1 s with
the hook, 3.1 s without). Docker then writes no resolv.conf or hosts for the
pod; the shim keeps them itself (sandbox_files.py), as containerd does.
"""
from __future__ import annotations

import asyncio
import logging
import json

import docker.errors
import grpc

from cni.skel import CNIError
from kubelet.dockershim import helpers as h
from kubelet.dockershim.start_gate import SANDBOX
from proto.cri import api_pb2

log = logging.getLogger("dockershim.sandbox")

PAUSE_COMMAND = ["sleep", "2147483647"]
PAUSE_STOP_TIMEOUT = 2


class SandboxMixin:
    """RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox."""

    # ---- helpers shared with containers --------------------------------------

    def _sandbox_ready(self, sandbox_id: str, docker_state: str, labels: dict) -> bool:
        if docker_state != "running":
            return False
        return labels.get(h.HOST_NETWORK) == "true" or bool(self.network.record(sandbox_id).get("added"))

    def _sandbox_metadata(self, labels: dict) -> api_pb2.PodSandboxMetadata:
        return api_pb2.PodSandboxMetadata(name=labels.get(h.META_NAME, ""), uid=labels.get(h.POD_UID, ""),
                                          namespace=labels.get(h.POD_NAMESPACE, ""),
                                          attempt=h.meta_attempt(labels))

    async def _teardown_network(self, sandbox_id: str, info: dict) -> None:
        state = info.get("State") or {}
        netns = f"/proc/{state['Pid']}/ns/net" if state.get("Running") and state.get("Pid") else ""
        try:
            await self.network.teardown(sandbox_id, netns)
        except CNIError as e:
            raise h.CRIError(grpc.StatusCode.UNKNOWN,
                             f"failed to tear down network of sandbox {sandbox_id}: {e.msg} {e.details}".strip())

    # ---- RPCs ------------------------------------------------------------------

    @h.grpc_errors
    async def RunPodSandbox(self, request, context):
        """CRI RunPodSandbox: start the pause container and, unless hostNetwork, set up its network with CNI;
        returns the sandbox id. INVALID_ARGUMENT for missing metadata or a runtime handler, UNKNOWN if CNI fails.
        """
        config = request.config
        md = config.metadata
        if not (md.name and md.namespace and md.uid):
            raise h.invalid("config.metadata name, namespace and uid are required")
        if request.runtime_handler:
            raise h.invalid(f"unknown runtime handler {request.runtime_handler!r} (only the default exists)")
        ns_opts = config.linux.security_context.namespace_options
        host_network = ns_opts.network == api_pb2.NODE
        labels = h.make_labels(config.labels, config.annotations, {
            h.TYPE: h.TYPE_SANDBOX, h.NODE: self.node_name, h.META_NAME: md.name,
            h.META_ATTEMPT: str(md.attempt), h.POD_NAME: md.name, h.POD_NAMESPACE: md.namespace,
            h.POD_UID: md.uid, h.CREATED_AT: str(h.now_ns()), h.LOG_DIRECTORY: config.log_directory,
            h.HOST_NETWORK: "true" if host_network else "false",
        })
        host_config = self.api.create_host_config(
            network_mode="host" if host_network else "none", init=True, ipc_mode="shareable",
            security_opt=h.seccomp_security_opts(config.linux.security_context) or None,
            pid_mode="host" if ns_opts.pid == api_pb2.NODE else None,
            cgroup_parent=config.linux.cgroup_parent or None,
            sysctls=dict(config.linux.sysctls) or None)
        name = h.docker_name("POD", md.name, md.namespace, md.uid, md.attempt, self.node_name)
        kwargs = dict(image=self.infra_image, command=PAUSE_COMMAND, labels=labels, name=name,
                      host_config=host_config, hostname=None if host_network else (config.hostname or None),
                      network_disabled=not host_network)
        created = await self._create_replacing_leftover(kwargs, h.TYPE_SANDBOX)
        sandbox_id = created["Id"]
        try:
            if not host_network:
                await asyncio.to_thread(self.files.write, sandbox_id, config.dns_config)
            async with self.start_gate.slot(SANDBOX):
                await asyncio.to_thread(self.api.start, sandbox_id)
            info = await asyncio.to_thread(self.api.inspect_container, sandbox_id)
            if not host_network:
                pid = info["State"].get("Pid")
                if not pid:
                    raise h.CRIError(grpc.StatusCode.UNKNOWN, f"sandbox {sandbox_id} exited right after start")
                await self.network.setup(sandbox_id, f"/proc/{pid}/ns/net")
        except BaseException as e:
            await self._abandon_sandbox(sandbox_id)
            if isinstance(e, CNIError):
                raise h.CRIError(grpc.StatusCode.UNKNOWN,
                                 f"failed to set up network of sandbox for pod {md.namespace}/{md.name}: "
                                 f"{e.msg}{': ' + e.details if e.details else ''}") from None
            raise
        self._remember(sandbox_id, labels)
        log.info("sandbox %s ready for pod %s/%s ip=%s", sandbox_id[:12], md.namespace, md.name,
                 self.network.pod_ip(sandbox_id))
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    async def _abandon_sandbox(self, sandbox_id: str) -> None:
        """Undo a half-made sandbox: CNI DEL (while its netns lives), then remove it."""
        try:
            info = await asyncio.to_thread(self.api.inspect_container, sandbox_id)
            await self._teardown_network(sandbox_id, info)
        except Exception as e:
            log.warning("cleanup of sandbox %s: %s", sandbox_id[:12], e)
        try:
            await asyncio.to_thread(self.api.remove_container, sandbox_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        self._forget(sandbox_id)
        self.network.forget(sandbox_id)
        await asyncio.to_thread(self.files.remove, sandbox_id)

    async def _create_replacing_leftover(self, kwargs: dict, kind: str) -> dict:
        """docker create; a name conflict with our own leftover (same node) removes it once."""
        try:
            return await asyncio.to_thread(self._docker_create, kwargs)
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
        old = await asyncio.to_thread(self.api.inspect_container, kwargs["name"])
        labels = old["Config"].get("Labels") or {}
        if labels.get(h.NODE) != self.node_name or labels.get(h.TYPE) != kind:
            raise h.CRIError(grpc.StatusCode.ALREADY_EXISTS, f"docker name {kwargs['name']} is taken")
        log.info("replacing leftover %s %s", kind, old["Id"][:12])
        if kind == h.TYPE_SANDBOX:
            await self._remove_sandbox(old["Id"], old)
        else:
            await asyncio.to_thread(self.api.remove_container, old["Id"], force=True)
        return await asyncio.to_thread(self._docker_create, kwargs)

    def _docker_create(self, kwargs: dict) -> dict:
        """APIClient.create_container(**kwargs), plus ``stdin_once`` (Docker's StdinOnce, which
        docker-py's keyword arguments lack) set on the container config it builds."""
        if not kwargs.get("stdin_once"):
            return self.api.create_container(**{k: v for k, v in kwargs.items() if k != "stdin_once"})
        kw = {k: v for k, v in kwargs.items() if k not in ("stdin_once", "name")}
        config = self.api.create_container_config(**kw)
        config["StdinOnce"] = True
        return self.api.create_container_from_config(config, kwargs.get("name"))

    @h.grpc_errors
    async def StopPodSandbox(self, request, context):
        """CRI StopPodSandbox: tear down its network, stop its containers, then the pause container;
        NOT_FOUND for an unknown id.
        """
        info = await self._inspect_own(request.pod_sandbox_id, h.TYPE_SANDBOX)
        await self._stop_sandbox(info["Id"], info)
        return api_pb2.StopPodSandboxResponse()

    async def _stop_sandbox(self, sandbox_id: str, info: dict) -> None:
        # DEL first: once the pause container stops its netns is gone.
        await self._teardown_network(sandbox_id, info)
        members = await self._list_own(h.TYPE_CONTAINER, sandbox_id=sandbox_id)
        await asyncio.gather(*(asyncio.to_thread(self.api.stop, c["Id"], timeout=0)
                               for c in members if c.get("State") == "running"), return_exceptions=True)
        if (info.get("State") or {}).get("Running"):
            try:
                await asyncio.to_thread(self.api.stop, sandbox_id, timeout=PAUSE_STOP_TIMEOUT)
            except docker.errors.NotFound:
                pass

    @h.grpc_errors
    async def RemovePodSandbox(self, request, context):
        """CRI RemovePodSandbox: stop, then remove the sandbox and its containers; an unknown id succeeds."""
        if not request.pod_sandbox_id:
            raise h.invalid("pod_sandbox_id is required")
        try:
            info = await self._inspect_own(request.pod_sandbox_id, h.TYPE_SANDBOX)
        except h.CRIError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return api_pb2.RemovePodSandboxResponse()  # already removed: success, as upstream
            raise
        await self._remove_sandbox(info["Id"], info)
        return api_pb2.RemovePodSandboxResponse()

    async def _remove_sandbox(self, sandbox_id: str, info: dict) -> None:
        await self._stop_sandbox(sandbox_id, info)
        for c in await self._list_own(h.TYPE_CONTAINER, sandbox_id=sandbox_id):
            try:
                await asyncio.to_thread(self.api.remove_container, c["Id"], force=True)
            except docker.errors.NotFound:
                pass
            self._forget(c["Id"])
            self.logs.forget(c["Id"])
        try:
            await asyncio.to_thread(self.api.remove_container, sandbox_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        self._forget(sandbox_id)
        self.network.forget(sandbox_id)
        await asyncio.to_thread(self.files.remove, sandbox_id)

    @h.grpc_errors
    async def PodSandboxStatus(self, request, context):
        """CRI PodSandboxStatus: state, creation time (ns), pod IP, namespace options, labels;
        NOT_FOUND for an unknown id.
        """
        info = await self._inspect_own(request.pod_sandbox_id, h.TYPE_SANDBOX)
        sandbox_id = info["Id"]
        labels = info["Config"].get("Labels") or {}
        cri_labels, annotations = h.split_labels(labels)
        host_network = labels.get(h.HOST_NETWORK) == "true"
        ready = self._sandbox_ready(sandbox_id, info["State"].get("Status", ""), labels)
        ns_mode = api_pb2.NODE if host_network else api_pb2.POD
        status = api_pb2.PodSandboxStatus(
            id=sandbox_id, metadata=self._sandbox_metadata(labels),
            state=api_pb2.SANDBOX_READY if ready else api_pb2.SANDBOX_NOTREADY,
            created_at=h.created_ns(labels) or h.parse_docker_time(info.get("Created")),
            network=api_pb2.PodSandboxNetworkStatus(ip="" if host_network else self.network.pod_ip(sandbox_id)),
            linux=api_pb2.LinuxPodSandboxStatus(namespaces=api_pb2.Namespace(
                options=api_pb2.NamespaceOption(network=ns_mode, pid=api_pb2.CONTAINER, ipc=ns_mode))),
            labels=cri_labels, annotations=annotations)
        resp = api_pb2.PodSandboxStatusResponse(status=status, timestamp=h.now_ns())
        if request.verbose:
            resp.info["info"] = json.dumps({"pid": info["State"].get("Pid", 0),
                                            "network": self.network.record(sandbox_id),
                                            "image": self.infra_image})
        return resp

    @h.grpc_errors
    async def ListPodSandbox(self, request, context):
        """CRI ListPodSandbox: our sandboxes matching the filter (id prefix, state, labels)."""
        f = request.filter
        items = []
        for c in await self._list_own(h.TYPE_SANDBOX, labels=f.label_selector):
            if f.id and not c["Id"].startswith(f.id):
                continue
            labels = c.get("Labels") or {}
            cri_labels, annotations = h.split_labels(labels)
            if not h.match_labels(cri_labels, f.label_selector):
                continue
            ready = self._sandbox_ready(c["Id"], c.get("State", ""), labels)
            state = api_pb2.SANDBOX_READY if ready else api_pb2.SANDBOX_NOTREADY
            if f.HasField("state") and f.state.state != state:
                continue
            items.append(api_pb2.PodSandbox(
                id=c["Id"], metadata=self._sandbox_metadata(labels), state=state,
                created_at=h.created_ns(labels, c.get("Created", 0)), labels=cri_labels,
                annotations=annotations))
        return api_pb2.ListPodSandboxResponse(items=items)
