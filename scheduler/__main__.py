"""``python -m scheduler --kubeconfig K --bind-address 127.0.0.1 --secure-port 10259``:
the kube-scheduler process (health and metrics served on the secure port, plain HTTP for now).

With ``--leader-elect`` (default true) it campaigns for the Lease
kube-system/kube-scheduler: a standby keeps its caches warm and serves
/healthz but does not schedule; a leader that loses its lease exits 1 so its
supervisor restarts it (upstream's OnStoppedLeading)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from kubeling import daemon
from kubeling.client import Client, KubeconfigError
from kubeling.client import leaderelection
from scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler

log = logging.getLogger("scheduler")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse kube-scheduler style flags (``argv`` None = sys.argv[1:]); argparse exits 2 on bad flags."""
    p = argparse.ArgumentParser(prog="python -m scheduler", description="kubeling kube-scheduler")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the apiserver")
    p.add_argument("--bind-address", default="127.0.0.1", help="address for /healthz and /metrics")
    p.add_argument("--secure-port", type=int, default=10259, help="port for /healthz and /metrics (0: off)")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule pods whose spec.schedulerName is this")
    leaderelection.add_flags(p, resource_name="kube-scheduler")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT; returns the exit code (1 for a bad
    kubeconfig or leader-election timing, or when leadership is lost)."""
    args = parse_args(argv)
    daemon.setup_logging("scheduler", verbose=args.verbose)
    try:
        leaderelection.validate_timing(args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                                       args.leader_elect_retry_period)
        client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-scheduler/kubeling")
        binding_client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-scheduler/kubeling")
    except (ValueError, KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    async def run(stop):
        sched = Scheduler(client, scheduler_name=args.scheduler_name, freeze_gc_after_sync=True,
                          binding_client=binding_client)
        elector = None
        if args.leader_elect:
            elector = leaderelection.elector_from_args(args, component=args.scheduler_name)
            coros = [sched.run(leading=elector.leading), elector.run(asyncio.Event().wait)]
        else:
            coros = [sched.run()]
        if args.secure_port:
            coros.append(daemon.serve_health(args.bind_address, args.secure_port, lambda: sched.ready))
        log.info("starting scheduler %s", args.scheduler_name)
        try:
            await daemon.run_until_stopped(stop, *coros)
        finally:
            await client.close()
            await binding_client.close()
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
