"""``python -m addons.dns``: the cluster DNS server's command line.

Plays the part of CoreDNS started with kubeadm's Corefile: the kubernetes
plugin for ``--cluster-domain`` (and in-addr.arpa), ``forward`` to
``--upstream`` (default: the nameservers of /etc/resolv.conf), ``health``
on ``--health-port`` and ``prometheus`` on ``--metrics-port`` (both on
``--bind-address``). At start it registers the kube-dns Service and its
endpoints (see addons.dns.register). Bad flags and ports that cannot be
bound end the process with one readable line and exit status 1 (2 for usage).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import sys

from kubeling import daemon
from kubeling.client import Client, Informer, KubeconfigError

from addons.dns import metrics
from addons.dns.forward import Forwarder, parse_upstream, resolv_conf_nameservers
from addons.dns.kubernetes import DEFAULT_TTL, Kubernetes
from addons.dns import register
from addons.dns.server import DEFAULT_CACHE_SIZE, DNSServer

log = logging.getLogger("addons.dns")


class UsageError(Exception):
    """A flag value that cannot be used; the message is the one line printed."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the flags (argparse exits 2 with a usage line on unknown flags)."""
    p = argparse.ArgumentParser(prog="python -m addons.dns",
                                description="Cluster DNS (CoreDNS's kubernetes + forward plugins).")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig for the apiserver")
    p.add_argument("--bind-address", default="10.250.0.1", help="address for DNS, health and metrics")
    p.add_argument("--port", type=int, default=53, help="DNS port (UDP and TCP)")
    p.add_argument("--cluster-domain", default="cluster.local", help="the zone answered from the cluster")
    p.add_argument("--service-ip", default="10.96.0.10", help="clusterIP of the kube-dns Service")
    p.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT",
                   help="resolver for other names (repeatable; default: nameservers of /etc/resolv.conf)")
    p.add_argument("--health-port", type=int, default=8080, help="/healthz /readyz (0 = off)")
    p.add_argument("--metrics-port", type=int, default=9153, help="/metrics (0 = off)")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="TTL of cluster records, seconds")
    p.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_SIZE,
                   help="encoded answers kept (0 = no answer cache)")
    p.add_argument("--no-register", action="store_true",
                   help="do not create the kube-dns Service/Endpoints/EndpointSlice")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def validate(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Check flag values; returns the upstreams. Raises UsageError."""
    try:
        bind = ipaddress.ip_address(args.bind_address)
    except ValueError:
        raise UsageError(f"--bind-address {args.bind_address!r} is not an IP address") from None
    if bind.is_unspecified and not args.no_register:
        raise UsageError(f"--bind-address {bind} cannot be the kube-dns endpoint: give the address "
                         f"kube-proxy should send {args.service_ip}:53 to (or --no-register)")
    try:
        ipaddress.ip_address(args.service_ip)
    except ValueError:
        raise UsageError(f"--service-ip {args.service_ip!r} is not an IP address") from None
    for flag, value in (("--port", args.port), ("--health-port", args.health_port),
                        ("--metrics-port", args.metrics_port)):
        if not 0 <= value < 65536 or (flag == "--port" and value == 0):
            raise UsageError(f"{flag} {value} is out of range")
    if args.ttl < 0 or args.cache_size < 0:
        raise UsageError("--ttl and --cache-size must not be negative")
    domain = args.cluster_domain.strip(".")
    if not domain or any(not label for label in domain.split(".")):
        raise UsageError(f"--cluster-domain {args.cluster_domain!r} is not a domain name")
    try:
        upstreams = [parse_upstream(u) for u in args.upstream] or resolv_conf_nameservers()
    except ValueError as e:
        raise UsageError(f"--upstream: {e}") from None
    if not upstreams:
        raise UsageError("no --upstream given and /etc/resolv.conf has no nameserver")
    return upstreams


def check_tcp_bind(host: str, port: int, what: str) -> None:
    """Fail early (UsageError) when ``host:port`` cannot be bound for TCP, so uvicorn does not exit later."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot listen for {what} on {host}:{port}: {e.strerror or e}") from None


async def dns_main(args: argparse.Namespace, upstreams: list[tuple[str, int]], stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set. Raises UsageError when a port cannot be bound."""
    host = args.bind_address
    http_ports = [p for p in dict.fromkeys((args.health_port, args.metrics_port)) if p]
    for p in http_ports:
        check_tcp_bind(host, p, "health/metrics")
    try:
        client = Client.from_kubeconfig(args.kubeconfig, user_agent="kubeling-dns")
    except (KubeconfigError, OSError) as e:
        raise UsageError(f"--kubeconfig {args.kubeconfig}: {e}") from None
    server: DNSServer | None = None

    def changed(keys: list[tuple[str, str]]) -> None:
        if server is not None:
            server.invalidate(keys)

    plugin = Kubernetes(zone=args.cluster_domain, ttl=args.ttl, dns_ip=args.service_ip, on_change=changed)
    plugin.synced = False
    server = DNSServer(plugin, Forwarder(upstreams), server=f"dns://{host}:{args.port}",
                       cache_size=args.cache_size)
    try:
        await server.start(host, args.port)
    except OSError as e:
        await client.close()
        raise UsageError(f"cannot listen for DNS on {host}:{args.port}: {e.strerror or e}") from None

    services = Informer(client, "services")
    slices = Informer(client, "endpointslices")

    reregister = asyncio.Event()

    def counted(kind: str, fn, *, ours: str | None = None):
        child = metrics.KUBERNETES_EVENTS.labels(kind)

        def handler(*objs: dict) -> None:
            child.inc()
            fn(objs[-1])
            meta = objs[-1].get("metadata") or {}
            if ours and meta.get("name") == ours and meta.get("namespace") == register.NAMESPACE:
                reregister.set()
        return handler

    services.add_handlers(on_add=counted("Service", plugin.upsert_service),
                          on_update=counted("Service", plugin.upsert_service),
                          on_delete=counted("Service", plugin.remove_service, ours=register.NAME))
    slices.add_handlers(on_add=counted("EndpointSlice", plugin.upsert_endpointslice),
                        on_update=counted("EndpointSlice", plugin.upsert_endpointslice),
                        on_delete=counted("EndpointSlice", plugin.remove_endpointslice, ours=register.SLICE_NAME))

    def healthy() -> bool:
        return services.has_synced and slices.has_synced

    async def mark_synced() -> None:
        await services.wait_synced()
        await slices.wait_synced()
        plugin.synced = True
        server.clear_cache()
        log.info("informers synced: %d services, %d services with endpoint slices",
                 len(plugin.services), len(plugin.slices))

    tasks = [services.run(), slices.run(), mark_synced()]
    if not args.no_register:
        tasks.append(register.keep_registered(client, reregister, service_ip=args.service_ip, address=host,
                                              port=args.port, metrics_port=args.metrics_port or 9153))
    for p in http_ports:
        tasks.append(daemon.serve_health(host, p, healthy))
    log.info("cluster DNS for %s on %s:%d (udp+tcp), upstreams %s", plugin.zone, host, args.port,
             ",".join(f"{h}:{p}" for h, p in upstreams))
    try:
        await daemon.run_until_stopped(stop, *tasks)
    finally:
        await server.close()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, validate, serve. Returns the exit status."""
    args = parse_args(argv)
    daemon.setup_logging("dns", verbose=args.verbose)
    try:
        upstreams = validate(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    failure: list[str] = []

    async def guarded(stop: asyncio.Event) -> None:
        try:
            await dns_main(args, upstreams, stop)
        except UsageError as e:
            failure.append(str(e))

    daemon.run(guarded)
    if failure:
        print(f"error: {failure[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
