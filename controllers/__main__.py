"""``python -m controllers --kubeconfig K --bind-address 127.0.0.1 --secure-port 10257
--allocate-node-cidrs --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24
--service-cluster-ip-range 10.96.0.0/12``: the kube-controller-manager process.

With ``--leader-elect`` (default true) the controllers (and their informers)
start only once this process holds the Lease kube-system/kube-controller-manager,
as upstream; a standby serves /healthz. A leader that loses its lease exits 1."""
from __future__ import annotations

import argparse
import logging
import sys

from kubeling import config, daemon
from kubeling.client import Client, KubeconfigError
from kubeling.client import leaderelection
from kubeling.duration import flag_duration
from controllers.manager import ALL_CONTROLLERS, ControllerManager, InformerFactory, build_controllers, \
    enabled_controllers
from controllers.certificates.signer import DEFAULT_DURATION as SIGNING_DURATION
from controllers.podgc import TERMINATED_POD_GC_THRESHOLD
from controllers.resourcequota import RESOURCE_QUOTA_SYNC_PERIOD
from controllers.nodelifecycle import NODE_MONITOR_GRACE_PERIOD, NODE_MONITOR_PERIOD, NODE_STARTUP_GRACE_PERIOD

log = logging.getLogger("controller-manager")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse kube-controller-manager style flags (``argv`` None = sys.argv[1:]); argparse exits 2 on bad flags."""
    p = argparse.ArgumentParser(prog="python -m controllers", description="kubeling kube-controller-manager")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the apiserver")
    p.add_argument("--bind-address", default="127.0.0.1", help="address for /healthz and /metrics")
    p.add_argument("--secure-port", type=int, default=config.CONTROLLER_MANAGER_PORT,
                   help="port for /healthz and /metrics (0: off)")
    p.add_argument("--controllers", default="*",
                   help=f"'*' for all, 'foo' to enable, '-foo' to disable; known: {', '.join(ALL_CONTROLLERS)}")
    p.add_argument("--allocate-node-cidrs", action="store_true", help="give each node a pod CIDR")
    p.add_argument("--cluster-cidr", default=config.CLUSTER_CIDR, help="pod CIDR range of the cluster")
    p.add_argument("--node-cidr-mask-size", type=int, default=config.NODE_CIDR_MASK_SIZE,
                   help="prefix length of each node's pod CIDR")
    p.add_argument("--service-cluster-ip-range", default=config.SERVICE_CIDR,
                   help="service CIDR (accepted for compatibility; the apiserver allocates cluster IPs)")
    p.add_argument("--node-monitor-period", type=flag_duration, default=NODE_MONITOR_PERIOD,
                   help="how often node health is checked (5s)")
    p.add_argument("--node-monitor-grace-period", type=flag_duration, default=NODE_MONITOR_GRACE_PERIOD,
                   help="silence after which a node is marked Unknown / unreachable (40s)")
    p.add_argument("--node-startup-grace-period", type=flag_duration, default=NODE_STARTUP_GRACE_PERIOD,
                   help="grace for a node that never posted status (1m0s)")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=TERMINATED_POD_GC_THRESHOLD,
                   help="terminated pods kept before the oldest are deleted (<= 0: never)")
    p.add_argument("--resource-quota-sync-period", type=flag_duration, default=RESOURCE_QUOTA_SYNC_PERIOD,
                   help="how often every ResourceQuota's usage is recounted (5m0s)")
    leaderelection.add_flags(p, resource_name="kube-controller-manager")
    p.add_argument("--root-ca-file", default="",
                   help="the cluster CA (PEM) published as the kube-root-ca.crt ConfigMap in every namespace")
    p.add_argument("--cluster-signing-cert-file", default="",
                   help="PEM CA certificate the csrsigning controller issues certificates with")
    p.add_argument("--cluster-signing-key-file", default="", help="PEM private key of --cluster-signing-cert-file")
    p.add_argument("--cluster-signing-duration", type=flag_duration, default=SIGNING_DURATION,
                   help="longest validity of a signed certificate (8760h0m0s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the enabled controllers until SIGTERM/SIGINT; returns the exit code (1 for a bad
    kubeconfig, --controllers or leader-election timing, or when leadership is lost)."""
    args = parse_args(argv)
    daemon.setup_logging("controller-manager", verbose=args.verbose)
    try:
        names = enabled_controllers(args.controllers)
        leaderelection.validate_timing(args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                                       args.leader_elect_retry_period)
        client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-controller-manager/kubeling")
        root_ca = open(args.root_ca_file).read() if args.root_ca_file else ""
    except OSError as e:
        print(f"error: --root-ca-file: {e.strerror}: {args.root_ca_file}", file=sys.stderr)
        return 1
    except (ValueError, KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    async def run(stop):
        factory = InformerFactory(client)
        try:
            controllers = build_controllers(client, factory, names, allocate_node_cidrs=args.allocate_node_cidrs,
                                            cluster_cidr=args.cluster_cidr,
                                            node_cidr_mask_size=args.node_cidr_mask_size,
                                            node_monitor_period=args.node_monitor_period,
                                            node_monitor_grace_period=args.node_monitor_grace_period,
                                            node_startup_grace_period=args.node_startup_grace_period,
                                            terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
                                            resource_quota_sync_period=args.resource_quota_sync_period,
                                            root_ca=root_ca,
                                            cluster_signing_cert_file=args.cluster_signing_cert_file,
                                            cluster_signing_key_file=args.cluster_signing_key_file,
                                            cluster_signing_duration=args.cluster_signing_duration)
        except ValueError as e:
            log.error("%s", e)
            await client.close()
            raise SystemExit(1)
        manager = ControllerManager(client, controllers, factory)
        healthy = lambda: manager.ready  # noqa: E731
        elector = None
        if args.leader_elect:
            elector = leaderelection.elector_from_args(args, component="kube-controller-manager")
            coros = [elector.run(manager.run)]
            healthy = lambda: manager.ready or not elector.leading.is_set()  # noqa: E731 (standby: ok)
        else:
            coros = [manager.run()]
        if args.secure_port:
            coros.append(daemon.serve_health(args.bind_address, args.secure_port, healthy))
        log.info("starting controllers: %s", ", ".join(c.name for c in controllers))
        try:
            await daemon.run_until_stopped(stop, *coros)
        finally:
            await client.close()
            if elector is not None:
                await elector.lock.client.close()

    try:
        daemon.run(run)
    except leaderelection.LeaderElectionLost as e:
        log.error("leaderelection lost: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
