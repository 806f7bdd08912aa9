"""``python -m deploy up|down|status|prepare|clean``: the commands behind the Makefile."""
from __future__ import annotations

import argparse
import shutil
import sys
import time

from rich.console import Console
from rich.table import Table

from deploy import host
from kubeling import config
from deploy.cluster import PROXY_MODES, Cluster, LaunchError

console = Console(highlight=False, width=max(100, Console().width))


def cmd_prepare(cluster: Cluster) -> int:
    """``make prepare``: start dockerd and build busybox:1.35 if missing; returns 0, raises host.HostError."""
    with console.status("starting dockerd / building local images"):
        started = host.ensure_dockerd(cluster.run, cluster.logs)
        built = host.ensure_busybox_image()
    console.print(f"[green]✓[/] docker {'started' if started else 'running'}; "
                  f"busybox:1.35 {'built' if built else 'present'}")
    return 0


def cmd_up(cluster: Cluster) -> int:
    """``make up``: prepare, start every component not yet running (waiting for its health), then wait for node
    Ready; returns 0, raises LaunchError if a component or the node does not come up.
    """
    t0 = time.monotonic()
    started_at = time.time()
    cmd_prepare(cluster)
    cluster.write_state()
    with console.status("node network"):
        cluster.setup_network()
    cluster.supervise()
    if cluster.netns_mode:
        console.print(f"[green]✓[/] underlay {config.UNDERLAY_BRIDGE} {config.UNDERLAY_CIDR}: "
                      + ", ".join(f"{n.name} {n.ip} (netns kl-{n.name})" for n in cluster.nodes))
    comps = cluster.components()
    for wave in sorted({c.wave for c in comps}):
        group = [c for c in comps if c.wave == wave]
        with console.status("starting " + ", ".join(c.name for c in group)):
            results = cluster.start_components(group)
        for comp in group:
            started, secs = results[comp.name]
            console.print(f"[green]✓[/] {comp.name:<26} {'healthy' if started else 'already running'}"
                          f"{f' ({secs:.1f}s)' if started else ''}")
    names = ", ".join(n.name for n in cluster.nodes)
    with console.status(f"waiting for {names} to be Ready"):
        secs = cluster.wait_node_ready(since=started_at)
    console.print(f"[green]✓[/] {names} Ready ({secs:.1f}s)")
    kc = cluster.home / "admin.kubeconfig"
    console.print(f"\nCluster up in {time.monotonic() - t0:.1f}s. State: {cluster.home}\n"
                  f"  .venv/bin/kubeling apply -f deploy/examples/web.yaml\n"
                  f"  .venv/bin/kubeling get pods -o wide\n"
                  f"  kubectl --kubeconfig {kc} get nodes\n"
                  f"Logs: {cluster.logs}/<component>.log   Status: make status   Stop: make down")
    if cluster.secure:
        token = cluster.static_tokens()["admin"]
        console.print(f"Dashboard: http://127.0.0.1:{config.DASHBOARD_PORT}/#token={token}", soft_wrap=True)
    else:
        console.print(f"Dashboard: http://127.0.0.1:{config.DASHBOARD_PORT}/")
    return 0


def cmd_down(cluster: Cluster) -> int:
    """``make down``: stop every component this launcher started; the state dir is kept. Returns 0."""
    for line in cluster.down():
        console.print(f"[green]✓[/] {line}")
    console.print("cluster stopped (state kept; `make clean` removes it)")
    return 0


def cmd_status(cluster: Cluster) -> int:
    """``make status``: each component's state under supervisord, PID, health, uptime, restarts and log;
    returns 1 unless all are healthy."""
    table = Table("COMPONENT", "STATE", "PID", "HEALTH", "UPTIME", "RESTARTS", "LOG")
    all_ok = True
    now = time.time()
    restarts = cluster.supervisor.restarts()
    for comp in cluster.components():
        info = cluster.supervisor.info(comp.name)
        state = info.get("statename", "-")
        pid = int(info.get("pid") or 0) if state == "RUNNING" else 0
        healthy = bool(pid) and comp.healthy()
        all_ok &= healthy
        uptime = f"{now - info['start']:.0f}s" if pid and info.get("start") else "-"
        table.add_row(comp.name, state, str(pid or "-"),
                      "[green]healthy[/]" if healthy else ("[red]unhealthy[/]" if pid else "[red]stopped[/]"),
                      uptime, str(restarts.get(comp.name, 0)), f"{comp.name}.log")
    console.print(table)
    console.print(f"logs: {cluster.logs}/ (supervisord: {cluster.supervisor.log})", soft_wrap=True)
    return 0 if all_ok else 1


def cmd_unprepare(cluster: Cluster) -> int:
    """Stop dockerd if kubeling started it (``prepare`` did); returns 0."""
    if host.stop_dockerd(cluster.run):
        console.print("[green]✓[/] stopped dockerd (started by kubeling)")
    return 0


def cmd_clean(cluster: Cluster) -> int:
    """``make clean``: stop the cluster and remove its state dir (.cluster/); returns 0."""
    cmd_down(cluster)
    shutil.rmtree(cluster.home, ignore_errors=True)
    console.print(f"removed {cluster.home}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy {up,down,status,prepare,unprepare,clean}`` (and ``units ...`` for VMs, see
    deploy.units); returns the exit code (1 on a launch error)."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["units"]:
        from deploy import units

        return units.main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m deploy", description="kubeling local cluster launcher")
    parser.add_argument("command", choices=["up", "down", "status", "prepare", "unprepare", "clean"])
    parser.add_argument("--nodes", type=int, default=None,
                        help="number of nodes (default: $NODES, else the last `up`'s, else 1); "
                             "with 2 or more each node gets its own network namespace")
    parser.add_argument("--ha", action="store_true", default=None,
                        help="highly available control plane: 3 etcdlite members, 2 apiservers behind haproxy, "
                             "2 controller-managers, 2 schedulers (default: $HA, else the last `up`'s)")
    parser.add_argument("--proxy-mode", choices=PROXY_MODES, default=None,
                        help="kube-proxy's mode (default: $PROXY_MODE, else the last `up`'s, else iptables)")
    args = parser.parse_args(args_in)
    try:
        cluster = Cluster(nodes=args.nodes, ha=args.ha, proxy_mode=args.proxy_mode)
    except ValueError as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "prepare": cmd_prepare,
                "unprepare": cmd_unprepare, "clean": cmd_clean}[args.command](cluster)
    except (LaunchError, host.HostError) as e:
        console.print(f"[red]error:[/] {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
