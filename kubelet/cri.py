"""The kubelet's client of the Container Runtime Interface.

The kubelet never touches Docker: every container operation is a CRI v1
gRPC call (``runtime.v1.RuntimeService`` / ``ImageService``) on the runtime's
unix socket. Mirrors k8s.io/cri-client's remote runtime and image services:
one channel, one method per RPC, a deadline on every call, and gRPC errors
surfaced as ``CRIError`` carrying the status code and the runtime's message.
"""
from __future__ import annotations

import os

import grpc

from proto.cri import api_pb2 as pb
from proto.cri import api_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT = 30.0  # seconds; upstream uses 2 min for runtime ops, our shim is local
PULL_TIMEOUT = 300.0


class CRIError(Exception):
    """A failed CRI call: ``code`` is the grpc.StatusCode, ``message`` the runtime's details."""

    def __init__(self, method: str, code: grpc.StatusCode | None, message: str):
        self.method = method
        self.code = code
        self.message = message
        super().__init__(f"{method}: {message}" if message else f"{method}: {code}")

    @property
    def not_found(self) -> bool:
        """True when the runtime answered NOT_FOUND (object already gone)."""
        return self.code == grpc.StatusCode.NOT_FOUND


def grpc_target(endpoint: str) -> str:
    """``unix://relative/or/abs/path.sock`` or a bare path -> a gRPC target
    ``unix:///abs/path.sock`` (relative paths resolved against the cwd)."""
    path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
    if path.startswith("unix:"):
        path = path[len("unix:"):]
    return "unix://" + os.path.abspath(path)


class RemoteRuntime:
    """Async CRI client for both the RuntimeService and the ImageService.

    ``RemoteRuntime("unix:///path/cri.sock")``. Each method takes and returns
    the generated protobuf messages (proto.cri.api_pb2) or plain values as
    documented, and raises CRIError on any gRPC failure. Mirrors
    k8s.io/cri-client pkg/remote_runtime.go and remote_image.go.
    """

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(grpc_target(endpoint))
        self._rt = pb_grpc.RuntimeServiceStub(self._channel)
        self._img = pb_grpc.ImageServiceStub(self._channel)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _call(self, stub, method: str, request, *, timeout: float | None = None):
        try:
            return await getattr(stub, method)(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as e:
            raise CRIError(method, e.code(), e.details() or "") from None

    # ---- runtime ----------------------------------------------------------

    async def version(self) -> pb.VersionResponse:
        """Runtime name/version (e.g. ``docker`` / ``20.10.24``) and CRI API version."""
        return await self._call(self._rt, "Version", pb.VersionRequest(version="v1"), timeout=5)

    async def status(self) -> pb.RuntimeStatus:
        """Runtime conditions (RuntimeReady, NetworkReady)."""
        resp = await self._call(self._rt, "Status", pb.StatusRequest(), timeout=5)
        return resp.status

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """Tell the runtime this node's pod CIDR (the shim writes its CNI config)."""
        req = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=pod_cidr)))
        await self._call(self._rt, "UpdateRuntimeConfig", req)

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig) -> str:
        """Create and start a sandbox (pause container + network); returns its id."""
        resp = await self._call(self._rt, "RunPodSandbox", pb.RunPodSandboxRequest(config=config),
                                timeout=max(self.timeout, 120))
        return resp.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox and every container in it (idempotent)."""
        await self._call(self._rt, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                         timeout=max(self.timeout, 120))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers (idempotent)."""
        await self._call(self._rt, "RemovePodSandbox",
                         pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                         timeout=max(self.timeout, 120))

    async def pod_sandbox_status(self, sandbox_id: str) -> pb.PodSandboxStatus:
        """Status of one sandbox (state, network.ip, metadata, labels)."""
        resp = await self._call(self._rt, "PodSandboxStatus",
                                pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        return resp.status

    async def list_pod_sandbox(self, *, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
        """All sandboxes (ready and not ready), optionally matching ``labels``."""
        flt = pb.PodSandboxFilter(label_selector=labels or {})
        resp = await self._call(self._rt, "ListPodSandbox", pb.ListPodSandboxRequest(filter=flt))
        return list(resp.items)

    async def create_container(self, sandbox_id: str, config: pb.ContainerConfig,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        """Create a container in the sandbox; returns its id."""
        req = pb.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config,
                                        sandbox_config=sandbox_config)
        resp = await self._call(self._rt, "CreateContainer", req, timeout=max(self.timeout, 60))
        return resp.container_id

    async def start_container(self, container_id: str) -> None:
        """Start a created container."""
        await self._call(self._rt, "StartContainer", pb.StartContainerRequest(container_id=container_id),
                         timeout=max(self.timeout, 60))

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (0: at once)."""
        await self._call(self._rt, "StopContainer",
                         pb.StopContainerRequest(container_id=container_id, timeout=timeout),
                         timeout=self.timeout + max(timeout, 0))

    async def remove_container(self, container_id: str) -> None:
        """Remove a (stopped) container."""
        await self._call(self._rt, "RemoveContainer", pb.RemoveContainerRequest(container_id=container_id))

    async def list_containers(self, *, sandbox_id: str = "",
                              labels: dict[str, str] | None = None) -> list[pb.Container]:
        """All containers (any state), optionally of one sandbox / matching ``labels``."""
        flt = pb.ContainerFilter(pod_sandbox_id=sandbox_id, label_selector=labels or {})
        resp = await self._call(self._rt, "ListContainers", pb.ListContainersRequest(filter=flt))
        return list(resp.containers)

    async def list_container_stats(self) -> list[pb.ContainerStats]:
        """CRI ListContainerStats of every container: cpu (usage_core_nano_seconds),
        memory (working_set_bytes) and writable layer, each with a timestamp in ns."""
        resp = await self._call(self._rt, "ListContainerStats",
                                pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter()))
        return list(resp.stats)

    async def container_status(self, container_id: str) -> pb.ContainerStatus:
        """Detailed status (state, timestamps in ns, exit code, reason, log_path)."""
        resp = await self._call(self._rt, "ContainerStatus",
                                pb.ContainerStatusRequest(container_id=container_id))
        return resp.status

    async def exec_sync(self, container_id: str, cmd: list[str], *, timeout: int) -> pb.ExecSyncResponse:
        """Run ``cmd`` in the container, wait at most ``timeout`` s; returns stdout, stderr, exit_code."""
        req = pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        return await self._call(self._rt, "ExecSync", req, timeout=timeout + 5)

    async def exec(self, container_id: str, cmd: list[str], *, tty: bool = False, stdin: bool = False,
                   stdout: bool = True, stderr: bool = True) -> str:
        """CRI Exec: the URL of the runtime's streaming server serving this exec session (one use;
        the caller connects to it with a remotecommand websocket subprotocol)."""
        req = pb.ExecRequest(container_id=container_id, cmd=cmd, tty=tty, stdin=stdin, stdout=stdout,
                             stderr=stderr)
        resp = await self._call(self._rt, "Exec", req)
        return resp.url

    async def attach(self, container_id: str, *, tty: bool = False, stdin: bool = False, stdout: bool = True,
                     stderr: bool = True) -> str:
        """CRI Attach: the URL of the runtime's streaming server attaching to the container's own
        stdio (one use; a remotecommand websocket, as exec)."""
        req = pb.AttachRequest(container_id=container_id, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)
        resp = await self._call(self._rt, "Attach", req)
        return resp.url

    # ---- images -----------------------------------------------------------

    async def image_status(self, image: str) -> pb.Image | None:
        """The local image named ``image``, or None if absent."""
        resp = await self._call(self._img, "ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
        return resp.image if resp.HasField("image") and resp.image.id else None

    async def pull_image(self, image: str, *, sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        """Pull ``image``; returns the image reference (id)."""
        req = pb.PullImageRequest(image=pb.ImageSpec(image=image), sandbox_config=sandbox_config)
        resp = await self._call(self._img, "PullImage", req, timeout=PULL_TIMEOUT)
        return resp.image_ref
