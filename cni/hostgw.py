"""The host-gw route controller: one route per other node's pod CIDR, via that node's address.

Pods on different nodes talk without NAT or encapsulation when every node
routes each other node's ``spec.podCIDR`` via that node's InternalIP, which
works while the nodes share one L2 segment (the local cluster's underlay
bridge, or VMs on one subnet). This is flannel's host-gw backend, reduced to
its core: watch the Node objects, keep the kernel's routes equal to what they
say. It runs on every node (in the node's netns), and on a control-plane host
that is not a node (``--node-name`` empty) so the host reaches every pod too.

Routes it owns carry the routing protocol number ``RTPROT_HOSTGW`` (76), so a
resync replaces and deletes exactly its own routes and nothing else; a
restarted controller converges from the routes it finds. Netlink goes through
pyroute2's AsyncIPRoute on the daemon's own event loop.

    python -m cni.hostgw --kubeconfig K --node-name node1 --healthz-bind-address 10.250.0.11:10252
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from kubeling import daemon
from kubeling.client import Client, Informer, KubeconfigError

log = logging.getLogger("hostgw")

RTPROT_HOSTGW = 76  # our routes' rtm_protocol: the kernel keeps it, `ip route` shows "proto 76"
AF_INET = 2


def node_address(node: dict) -> str | None:
    """The node's InternalIP from ``status.addresses`` (None when it has none)."""
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP" and a.get("address"):
            return a["address"]
    return None


def desired_routes(nodes: list[dict], *, self_name: str) -> dict[str, str]:
    """``{pod CIDR: gateway}`` for every node other than ``self_name`` that has an IPv4
    ``spec.podCIDR`` and an InternalIP (flannel host-gw's route per subnet lease).
    Nodes with a malformed CIDR or address are skipped."""
    routes = {}
    for node in nodes:
        if node.get("metadata", {}).get("name") == self_name:
            continue
        cidr, gw = (node.get("spec") or {}).get("podCIDR"), node_address(node)
        if not cidr or not gw:
            continue
        try:
            net, addr = ipaddress.ip_network(cidr, strict=False), ipaddress.ip_address(gw)
        except ValueError:
            continue
        if net.version == 4 and addr.version == 4:
            routes[str(net)] = str(addr)
    return routes


class RouteSyncer:
    """Makes the kernel's ``RTPROT_HOSTGW`` routes equal to a desired ``{cidr: gateway}`` map."""

    def __init__(self):
        self.synced_once = False
        self.last_error: str | None = None

    async def sync(self, desired: dict[str, str]) -> None:
        """Replace the routes in ``desired`` and delete our routes not in it. A route
        whose gateway is not on a connected subnet is logged and skipped (host-gw
        needs the nodes on one L2 segment). Raises OSError/NetlinkError on netlink failures."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        async with AsyncIPRoute() as ipr:
            have = {}
            async for r in await ipr.route("dump", family=AF_INET, proto=RTPROT_HOSTGW):
                if r["proto"] != RTPROT_HOSTGW:
                    continue
                dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                have[dst] = r.get_attr("RTA_GATEWAY")
            errors = []
            for cidr, gw in desired.items():
                if have.get(cidr) == gw:
                    continue
                net = ipaddress.ip_network(cidr)
                try:
                    await ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen,
                                    gateway=gw, proto=RTPROT_HOSTGW)
                    log.info("route %s via %s", cidr, gw)
                except NetlinkError as e:
                    errors.append(f"{cidr} via {gw}: {e}")
            for cidr in set(have) - set(desired):
                net = ipaddress.ip_network(cidr)
                try:
                    await ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen,
                                    proto=RTPROT_HOSTGW)
                    log.info("removed route %s", cidr)
                except NetlinkError as e:
                    errors.append(f"del {cidr}: {e}")
        self.last_error = "; ".join(errors) or None
        if errors:
            log.warning("route sync: %s", self.last_error)
        self.synced_once = True


async def hostgw_main(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Watch Nodes and resync routes on every change, and every ``--resync-period`` s."""
    client = Client.from_kubeconfig(args.kubeconfig, user_agent="kubeling-hostgw")
    nodes = Informer(client, "nodes")
    syncer = RouteSyncer()
    wake = asyncio.Event()

    def changed(old: dict, new: dict) -> None:
        # Heartbeats update every Node each few seconds; only a new pod CIDR or address matters.
        if desired_routes([old], self_name="") != desired_routes([new], self_name=""):
            wake.set()
    nodes.add_handlers(on_add=lambda o: wake.set(), on_update=changed, on_delete=lambda o: wake.set())

    async def loop() -> None:
        await nodes.wait_synced()
        while True:
            wake.clear()
            try:
                await syncer.sync(desired_routes(nodes.lister.list(), self_name=args.node_name))
            except OSError as e:
                log.warning("route sync failed: %s", e)
            try:
                await asyncio.wait_for(wake.wait(), args.resync_period)
            except asyncio.TimeoutError:
                pass

    tasks = [nodes.run(), loop()]
    if args.healthz_bind_address:
        host, _, port = args.healthz_bind_address.rpartition(":")
        tasks.append(daemon.serve_health(host, int(port), lambda: syncer.synced_once))
    log.info("host-gw route controller for node %r", args.node_name or "(none: control-plane host)")
    try:
        await daemon.run_until_stopped(stop, *tasks)
    finally:
        await client.close()


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m cni.hostgw``."""
    p = argparse.ArgumentParser(prog="python -m cni.hostgw", description="kubeling host-gw route controller")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", default="", help="this node (its own pod CIDR is local); empty on a non-node host")
    p.add_argument("--healthz-bind-address", default="", help="IP:PORT for /healthz (off when empty)")
    p.add_argument("--resync-period", type=float, default=30.0, help="seconds between full resyncs")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 with one line on a bad kubeconfig)."""
    args = build_parser().parse_args(argv)
    daemon.setup_logging("hostgw", verbose=args.verbose)
    try:
        daemon.run(lambda stop: hostgw_main(args, stop))
    except KubeconfigError as e:
        print(f"hostgw: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
