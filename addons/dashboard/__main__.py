"""``python -m addons.dashboard``: the web dashboard's command line.

Plays the part of kubernetes/dashboard's ``dashboard`` binary (plain HTTP, as
its --insecure-port): ``--kubeconfig`` names the apiserver (and the identity
used only with ``--enable-skip-login``), the page is served on
``--bind-address``:``--port`` with /healthz and /metrics beside it. A bad
kubeconfig or flag ends the process with one readable line and exit status 1
(2 for usage).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

import uvicorn

from kubeling import daemon
from kubeling.client import KubeconfigError
from kubeling.client import kubeconfig

from addons.dashboard.server import Settings, create_app

log = logging.getLogger("addons.dashboard")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the flags (argparse exits 2 with a usage line on unknown flags)."""
    p = argparse.ArgumentParser(prog="python -m addons.dashboard",
                                description="Web dashboard (mirrors kubernetes/dashboard).")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig naming the apiserver")
    p.add_argument("--bind-address", default="127.0.0.1", help="address the page is served on")
    p.add_argument("--port", type=int, default=8001, help="HTTP port of the page, API, /healthz and /metrics")
    p.add_argument("--enable-skip-login", action="store_true",
                   help="let a browser without a token act as the --kubeconfig identity")
    p.add_argument("--metrics-interval", type=float, default=5.0,
                   help="seconds between the page's metrics.k8s.io samples (CPU/memory charts)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port. Raises OSError (address in use, not an address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(settings: Settings, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve the dashboard on the listening ``sock`` until ``stop`` is set (open streams are ended first)."""
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # daemon.run owns SIGTERM/SIGINT
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    app.state.closing.set()
    server.should_exit = True
    stopper.cancel()
    await task


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    daemon.setup_logging("dashboard", verbose=args.verbose)
    if not 0 < args.port < 65536:
        print(f"dashboard: --port {args.port} is out of range", file=sys.stderr)
        return 1
    if args.metrics_interval <= 0:
        print("dashboard: --metrics-interval must be positive", file=sys.stderr)
        return 1
    try:
        base = kubeconfig.load(args.kubeconfig)
    except (KubeconfigError, OSError, ValueError) as e:
        print(f"dashboard: cannot use --kubeconfig {args.kubeconfig}: {e}", file=sys.stderr)
        return 1
    try:
        sock = listen(args.bind_address, args.port)
    except OSError as e:
        print(f"dashboard: cannot listen on {args.bind_address}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    settings = Settings(base, skip_login=args.enable_skip_login, metrics_interval=args.metrics_interval)
    log.info("serving http://%s:%d/ for apiserver %s (skip login: %s)", args.bind_address, args.port,
             base.server, args.enable_skip_login)
    daemon.run(lambda stop: serve(settings, sock, stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
