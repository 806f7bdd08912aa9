"""The shim's gRPC server: RuntimeService + ImageService on a unix socket.

Mirrors dockershim's remote/docker_server.go. grpc.aio serves; Docker SDK and
CNI calls run in a thread pool sized for concurrent kubelet calls (ExecSync
probes block a thread for their duration).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal

import docker
import grpc

from cni import install
from kubelet.dockershim.docker_image import DockerImageService
from kubelet.dockershim.docker_service import DockerService
from kubelet.dockershim.logs import LogManager
from kubelet.dockershim.network import CNIServerProcess, NetworkPlugin, forward_to_cni_server
from kubelet.dockershim.sandbox_files import SandboxFiles
from kubelet.dockershim.streaming import StreamingServer
from proto.cri import api_pb2_grpc

log = logging.getLogger("dockershim")

THREAD_POOL_SIZE = 32
DOCKER_TIMEOUT = 120
# Docker container starts in flight, app containers first (start_gate.py); 0: unbounded. On 2 cores
# with Docker 20.10 + runc, 30 pods created at once: 6 brings p50 from ~6 s to ~5 s but the last
# pods' sandboxes wait their turn (p99 0.5-1.5 s later in interleaved runs), so it is opt-in.
DEFAULT_MAX_CONCURRENT_STARTS = 0


@dataclasses.dataclass(frozen=True)
class Options:
    """Command line of ``python -m kubelet.dockershim`` (see __main__)."""

    listen: str
    node_name: str
    state_dir: str
    cni_bin_dir: str
    cni_conf_dir: str
    pod_infra_container_image: str = "busybox:1.35"
    docker_host: str = "unix:///var/run/docker.sock"
    cni_bridge: str = "kubeling0"
    streaming_address: str = "127.0.0.1"
    streaming_port: int = 0  # 0: a free port chosen at start
    max_concurrent_starts: int = DEFAULT_MAX_CONCURRENT_STARTS  # Docker starts in flight (0: unbounded)


def socket_path(listen: str) -> str:
    """``unix:///path`` or ``unix:path`` -> filesystem path; ValueError for other schemes."""
    if listen.startswith("unix://"):
        return listen[len("unix://"):]
    if listen.startswith("unix:"):
        return listen[len("unix:"):]
    raise ValueError(f"--listen must be a unix socket address (unix:///path), got {listen!r}")


def _ensure_cni_plugins(bin_dir: str) -> str:
    """Install our plugin wrappers when the bin dir has neither bridge nor host-local
    (or holds ours from an older release); returns the first bin dir if it holds ours, else ""."""
    first = bin_dir.split(os.pathsep)[0]
    if not any(os.path.exists(os.path.join(first, p)) for p in install.PLUGINS) or install.is_outdated(first):
        install.install(first)
        log.info("installed kubeling CNI plugins into %s", first)
    return first if install.is_installed(first) else ""


async def serve(opts: Options, *, ready: asyncio.Event | None = None) -> None:
    """Run the shim until SIGTERM/SIGINT. Raises ValueError for a bad --listen."""
    path = socket_path(opts.listen)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(THREAD_POOL_SIZE, "dockershim"))
    os.makedirs(opts.state_dir, exist_ok=True)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ours = _ensure_cni_plugins(opts.cni_bin_dir)
    cni_server = CNIServerProcess(state_dir=opts.state_dir, bin_dir=ours) if ours else None
    if cni_server is not None:
        await cni_server.start()
        forward_to_cni_server()
    client = docker.DockerClient(base_url=opts.docker_host, timeout=DOCKER_TIMEOUT, max_pool_size=THREAD_POOL_SIZE)
    log_client = docker.DockerClient(base_url=opts.docker_host, timeout=None, max_pool_size=THREAD_POOL_SIZE)
    network = NetworkPlugin(state_dir=opts.state_dir, cni_bin_dir=opts.cni_bin_dir,
                            cni_conf_dir=opts.cni_conf_dir, bridge=opts.cni_bridge)
    runtime = DockerService(client=client, node_name=opts.node_name, network=network,
                            logs=LogManager(log_client),
                            files=SandboxFiles(os.path.join(opts.state_dir, "sandbox-files")), infra_image=opts.pod_infra_container_image,
                            max_concurrent_starts=opts.max_concurrent_starts)
    # Exec streams go through their own websocket server, as upstream's CRI streaming server.
    streaming = StreamingServer(log_client.api, host=opts.streaming_address, port=opts.streaming_port)
    await streaming.start()
    runtime.streaming = streaming
    server = grpc.aio.server()
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(DockerImageService(client=client), server)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    await runtime.resume()
    log.info("CRI shim for node %s serving on unix://%s (docker %s)", opts.node_name, path, opts.docker_host)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    await server.stop(grace=2)
    await streaming.stop()
    if cni_server is not None:
        await cni_server.stop()
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
