"""``python -m apiserver``: start kube-apiserver (flags named as upstream's).

Example::

    python -m apiserver --etcd-servers http://127.0.0.1:2379 --bind-address 127.0.0.1 \\
        --secure-port 6443 --service-cluster-ip-range 10.96.0.0/12

This milestone serves plain HTTP on --secure-port (TLS comes later). SIGTERM
and SIGINT end every watch, then stop the server gracefully.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys

import uvicorn

from apiserver.app import Config, build_app


def parse_args(argv: list[str] | None = None) -> Config:
    """Config from the command line; exits with a one-line message on a bad flag."""
    p = argparse.ArgumentParser(prog="python -m apiserver", description="kubeling kube-apiserver")
    p.add_argument("--etcd-servers", required=True,
                   help="comma-separated etcd client URLs, e.g. http://127.0.0.1:2379")
    p.add_argument("--bind-address", default="127.0.0.1",
                   help="IP to listen on; kubeling also takes a comma-separated list (e.g. the loopback and a "
                        "node underlay address) where upstream would bind 0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--advertise-address", default=None,
                   help="address published in the default/kubernetes Endpoints (default: --bind-address)")
    p.add_argument("--watch-cache-size", type=int, default=1024, help="events kept per resource for watches")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready:NoExecute toleration added to every pod")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the unreachable:NoExecute toleration added to every pod")
    p.add_argument("-v", "--v", type=int, default=1, help="log verbosity (0-4)")
    a = p.parse_args(argv)
    try:
        ipaddress.ip_network(a.service_cluster_ip_range, strict=False)
    except ValueError as e:
        p.error(f"--service-cluster-ip-range: {e}")
    if not 0 < a.secure_port < 65536:
        p.error("--secure-port must be between 1 and 65535")
    logging.basicConfig(level=logging.DEBUG if a.v >= 4 else logging.INFO if a.v >= 1 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    binds = [b.strip() for b in a.bind_address.split(",") if b.strip()]
    for b in binds:
        try:
            ipaddress.ip_address(b)
        except ValueError:
            p.error(f"--bind-address: {b!r} is not an IP address")
    if not binds:
        p.error("--bind-address: empty")
    return Config(etcd_servers=[s.strip() for s in a.etcd_servers.split(",") if s.strip()],
                  bind_address=binds[0], extra_bind_addresses=binds[1:], secure_port=a.secure_port,
                  service_cluster_ip_range=a.service_cluster_ip_range, advertise_address=a.advertise_address,
                  watch_cache_size=a.watch_cache_size,
                  default_not_ready_toleration_seconds=a.default_not_ready_toleration_seconds,
                  default_unreachable_toleration_seconds=a.default_unreachable_toleration_seconds)


class _Server(uvicorn.Server):
    """uvicorn server that ends open watches first on SIGTERM (else they hold the graceful shutdown)."""

    apiserver = None

    def handle_exit(self, sig, frame) -> None:
        """Stop open watches, then let uvicorn's own SIGINT/SIGTERM handling begin the graceful shutdown."""
        if self.apiserver is not None:
            self.apiserver.stop_watches()
        super().handle_exit(sig, frame)


def _listen(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address:port`` (IPv4 or IPv6), as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    """Run the apiserver until SIGTERM/SIGINT."""
    config = parse_args(argv)
    app, server = build_app(config)
    uv = _Server(uvicorn.Config(app, host=config.bind_address, port=config.secure_port, log_level="warning",
                                timeout_graceful_shutdown=5, access_log=False))
    uv.apiserver = server
    if config.extra_bind_addresses:
        uv.run(sockets=[_listen(a, config.secure_port) for a in [config.bind_address, *config.extra_bind_addresses]])
    else:
        uv.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
