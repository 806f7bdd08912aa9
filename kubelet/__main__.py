"""Command line of the kubelet: ``python -m kubelet --kubeconfig ... --hostname-override node1 ...``.

Flags carry upstream's names. ``--cleanup-network`` removes the bridge and
safety routes the kubelet set up (used by ``make down``) and exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from kubelet import eviction
from kubeling import config as cluster_config
from kubeling import daemon
from kubeling.duration import flag_duration


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the kubelet's flags."""
    p = argparse.ArgumentParser(prog="kubelet", description="kubeling node agent (kubelet)")
    p.add_argument("--kubeconfig", help="kubeconfig to reach the apiserver")
    p.add_argument("--bootstrap-kubeconfig", default="",
                   help="kubeconfig with a bootstrap token: when --kubeconfig is missing or its certificate "
                        "expired, request a client certificate with it and write --kubeconfig (TLS bootstrap)")
    p.add_argument("--cert-dir", default="",
                   help="where the bootstrapped client certificate goes (default: <root-dir>/pki)")
    p.add_argument("--rotate-certificates", type=lambda v: v.lower() in ("true", "1", "yes"), nargs="?",
                   const=True, default=False,
                   help="renew the client certificate in --cert-dir before it expires (needs --bootstrap-kubeconfig)")
    # How long the TLS bootstrap waits for its certificate to be approved and issued (seconds).
    p.add_argument("--bootstrap-certificate-timeout", type=flag_duration, default=300.0, help=argparse.SUPPRESS)
    p.add_argument("--hostname-override", default="", help="node name (default: the host name)")
    p.add_argument("--node-ip", default="127.0.0.1", help="address the kubelet serves on and reports")
    p.add_argument("--container-runtime-endpoint", default="unix:///var/run/kubeling/cri.sock",
                   help="CRI socket, unix://PATH")
    p.add_argument("--root-dir", default="/var/lib/kubelet", help="state dir (pod logs under pods/)")
    p.add_argument("--port", type=int, default=cluster_config.KUBELET_PORT, help="kubelet API port")
    p.add_argument("--healthz-port", type=int, default=cluster_config.KUBELET_HEALTHZ_PORT)
    p.add_argument("--healthz-bind-address", default="127.0.0.1")
    p.add_argument("--cluster-cidr", default=None,
                   help="pod network of the cluster; when set, an unreachable route for it is added")
    p.add_argument("--service-cluster-ip-range", default=None,
                   help="service CIDR; when set, it is routed to the pod bridge")
    p.add_argument("--bridge-name", default=cluster_config.BRIDGE_NAME, help="pod bridge (same as the CRI shim's)")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for ClusterFirst pods")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--node-status-update-frequency", type=float, default=10.0, help="seconds")
    p.add_argument("--sync-frequency", type=float, default=10.0, help="seconds between full pod resyncs")
    p.add_argument("--crashloop-backoff-initial", type=float, default=10.0,
                   help="seconds before the first restart of a crashed container (doubles each time)")
    p.add_argument("--crashloop-backoff-max", type=float, default=300.0, help="seconds, backoff cap")
    p.add_argument("--eviction-hard", default=eviction.DEFAULT_HARD,
                   help="hard eviction thresholds, e.g. memory.available<100Mi or memory.available<5%%")
    p.add_argument("--eviction-pressure-transition-period", type=flag_duration, default=300.0,
                   help="how long MemoryPressure stays True after the last threshold crossing (e.g. 5m)")
    # How often the eviction manager observes memory (upstream: a fixed 10 s).
    p.add_argument("--eviction-monitoring-interval", type=flag_duration, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--cleanup-network", action="store_true",
                   help="remove the bridge and the safety routes, then exit")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--tls-cert-file", default=None, help="serving certificate of the kubelet API (HTTPS when given)")
    p.add_argument("--tls-private-key-file", default=None, help="key of --tls-cert-file")
    p.add_argument("--client-ca-file", default=None, help="CA that client certificates are verified against")
    p.add_argument("--anonymous-auth", default="true", choices=["true", "false"],
                   help="false: refuse requests without a verified client certificate (401)")
    args = p.parse_args(argv)
    try:
        eviction.parse_thresholds(args.eviction_hard)
    except ValueError as e:
        p.error(f"--eviction-hard: {e}")
    if not args.cleanup_network and not args.kubeconfig:
        p.error("--kubeconfig is required")
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file must be given together")
    for flag in ("tls_cert_file", "tls_private_key_file", "client_ca_file"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            p.error(f"--{flag.replace('_', '-')}: {path}: no such file")
    if args.client_ca_file and not args.tls_cert_file:
        p.error("--client-ca-file needs --tls-cert-file (client certificates are checked only over TLS)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    daemon.setup_logging("kubelet", verbose=args.verbose)
    if args.cleanup_network:
        from kubelet import network
        try:
            removed = network.teardown(bridge=args.bridge_name, cluster_cidr=args.cluster_cidr,
                                       service_cidr=args.service_cluster_ip_range)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"kubelet: network cleanup failed: {e}", file=sys.stderr)
            return 1
        for r in removed:
            print(f"removed {r}")
        return 0

    from kubelet.kubelet import Kubelet, KubeletConfig
    from kubelet.server import ServingTLS
    from kubeling.client import KubeconfigError
    cfg = KubeletConfig(
        kubeconfig=args.kubeconfig, node_name=(args.hostname_override or socket.gethostname()).lower(),
        node_ip=args.node_ip, runtime_endpoint=args.container_runtime_endpoint, root_dir=args.root_dir,
        port=args.port, healthz_port=args.healthz_port, healthz_bind_address=args.healthz_bind_address,
        cluster_cidr=args.cluster_cidr, service_cidr=args.service_cluster_ip_range,
        bridge_name=args.bridge_name, cluster_dns=[s for s in args.cluster_dns.split(",") if s],
        cluster_domain=args.cluster_domain, node_status_update_frequency=args.node_status_update_frequency,
        sync_frequency=args.sync_frequency, backoff_initial=args.crashloop_backoff_initial,
        backoff_max=args.crashloop_backoff_max, eviction_hard=args.eviction_hard,
        eviction_pressure_transition_period=args.eviction_pressure_transition_period,
        eviction_monitoring_interval=args.eviction_monitoring_interval,
        tls=ServingTLS(args.tls_cert_file, args.tls_private_key_file, client_ca_file=args.client_ca_file,
                       anonymous_auth=args.anonymous_auth == "true") if args.tls_cert_file else None)

    async def run(stop):
        import asyncio
        if args.bootstrap_kubeconfig:
            from kubelet.certificate import bootstrap
            boot = asyncio.ensure_future(bootstrap.load_client_cert(
                args.kubeconfig, args.bootstrap_kubeconfig, args.cert_dir or os.path.join(args.root_dir, "pki"),
                cfg.node_name, timeout=args.bootstrap_certificate_timeout))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({boot, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if boot not in done:  # SIGTERM while waiting for the certificate
                boot.cancel()
                return
            boot.result()
        kubelet = Kubelet(cfg)
        rotation = None
        if args.rotate_certificates and args.bootstrap_kubeconfig:
            from kubelet.certificate import manager

            def reload(pem) -> None:  # new connections present the new certificate
                if kubelet.client.ssl_context is not None:
                    kubelet.client.ssl_context.load_cert_chain(str(pem), str(pem))
            rotation = asyncio.ensure_future(manager.run(
                args.kubeconfig, args.cert_dir or os.path.join(args.root_dir, "pki"), cfg.node_name, reload=reload,
                stop=stop, timeout=args.bootstrap_certificate_timeout))
        try:
            await kubelet.run(stop)
        finally:
            if rotation is not None:
                rotation.cancel()
    import httpx
    from kubeling.client import ApiError
    from kubeling.client.csr import CSRError
    try:
        daemon.run(run)
    except (KubeconfigError, CSRError) as e:
        logging.getLogger("kubelet").error("%s", e)
        return 1
    except ApiError as e:
        logging.getLogger("kubelet").error("TLS bootstrap: %s", e)
        return 1
    except httpx.HTTPError as e:  # the apiserver could not be reached during the bootstrap
        logging.getLogger("kubelet").error("TLS bootstrap: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
