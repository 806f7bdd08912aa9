"""``python -m kubelet.dockershim``: start the CRI shim of one node."""
from __future__ import annotations

import argparse
import asyncio
import sys

from kubelet.dockershim.server import DEFAULT_MAX_CONCURRENT_STARTS, Options, serve, socket_path
from kubeling import klog


def parse_args(argv: list[str]) -> Options:
    """Flags, named after the kubelet's dockershim flags where one existed."""
    p = argparse.ArgumentParser(prog="python -m kubelet.dockershim", description="CRI v1 shim over Docker")
    p.add_argument("--listen", required=True, help="unix:///PATH/cri.sock")
    p.add_argument("--node-name", required=True, help="node whose objects this shim owns (Docker label)")
    p.add_argument("--state-dir", required=True, help="pod IP records, IPAM leases")
    p.add_argument("--cni-bin-dir", required=True, help="CNI_PATH (our plugins installed if absent)")
    p.add_argument("--cni-conf-dir", required=True, help="network config dir (10-kubeling.conflist written here)")
    p.add_argument("--pod-infra-container-image", default="busybox:1.35")
    p.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    p.add_argument("--cni-bridge", default="kubeling0", help="bridge name in the conflist we write")
    p.add_argument("--streaming-address", default="127.0.0.1", help="address of the exec streaming server")
    p.add_argument("--streaming-port", type=int, default=0, help="its port (0: a free port chosen at start)")
    p.add_argument("--max-concurrent-starts", type=int, default=DEFAULT_MAX_CONCURRENT_STARTS,
                   help="Docker container starts in flight, app containers of started pods before new "
                        f"sandboxes (0: unbounded; default {DEFAULT_MAX_CONCURRENT_STARTS})")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    if a.max_concurrent_starts < 0:
        p.error("--max-concurrent-starts must be >= 0")
    try:
        socket_path(a.listen)
    except ValueError as e:
        p.error(str(e))
    klog.setup("dockershim", level=a.log_level)
    return Options(listen=a.listen, node_name=a.node_name, state_dir=a.state_dir, cni_bin_dir=a.cni_bin_dir,
                   cni_conf_dir=a.cni_conf_dir, pod_infra_container_image=a.pod_infra_container_image,
                   docker_host=a.docker_host, cni_bridge=a.cni_bridge,
                   streaming_address=a.streaming_address, streaming_port=a.streaming_port,
                   max_concurrent_starts=a.max_concurrent_starts)


def main(argv: list[str] | None = None) -> int:
    """``python -m kubelet.dockershim``: serve the CRI on ``--listen`` until SIGTERM/Ctrl-C; returns 0."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(opts))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
