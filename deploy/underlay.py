"""The node underlay of a local cluster: node network namespaces joined by a host bridge.

``make up NODES=N`` (N >= 2) runs each node in its own network namespace, as
if each were a VM: ``kl-<node>`` holds the node's ``eth0`` (one end of a veth
pair whose other end, ``kl-u-<node>``, is a port of the host bridge
``kl-underlay``), the node's underlay address (10.250.0.11, .12, ...) and,
later, its pod bridge and kube-proxy's rules. The host keeps 10.250.0.1 on the
bridge: the control plane and the cluster DNS listen there, so every node
reaches them without NAT. Routes between pod CIDRs are not made here: the
host-gw route controller (``cni.hostgw``) programs them from the Node objects.

The host side always gets the bridge (also with one node in the host
namespace, where it carries the cluster DNS address), plus two safety routes
when no node runs in the host namespace: ``unreachable`` for the cluster and
service CIDRs, so that nothing addressed to the cluster follows the host's
default route off the machine (more specific pod-CIDR routes via the nodes
win over it).

Everything is named ``kl-*`` and removed by ``teardown``; nothing else is
touched. Links and addresses go through pyroute2 (netlink), namespaces through
``pyroute2.netns`` (the same bind mounts under /run/netns as ``ip netns``).
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import os

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

from kubeling import config

RT_UNREACHABLE = 7  # rtnetlink RTN_UNREACHABLE
NETNS_DIR = "/run/netns"


def netns_name(node: str) -> str:
    """Name of ``node``'s network namespace: ``kl-node1``."""
    return f"kl-{node}"


def netns_path(node: str) -> str:
    """Bind-mount path of ``node``'s netns (``/run/netns/kl-node1``), as ``ip netns`` makes it."""
    return os.path.join(NETNS_DIR, netns_name(node))


def nsenter(node: str) -> list[str]:
    """Command prefix that runs a program in ``node``'s netns only (``nsenter --net=...``).

    Not ``ip netns exec``: that also remounts /sys, which hides /sys/fs/cgroup
    from the kubelet's and the shim's stats."""
    return ["nsenter", f"--net={netns_path(node)}", "--"]


def _prefixlen() -> int:
    return ipaddress.ip_network(config.UNDERLAY_CIDR).prefixlen


def _add_addr(ipr, index: int, address: str) -> None:
    try:
        ipr.addr("add", index=index, address=address, prefixlen=_prefixlen())
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def _route_replace(ipr, cidr: str, **kwargs) -> None:
    net = ipaddress.ip_network(cidr)
    ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen, **kwargs)


def ensure_host(*, safety_routes: bool) -> None:
    """Ensure the host bridge ``kl-underlay`` is up with 10.250.0.1/24 (idempotent);
    with ``safety_routes`` also the unreachable routes for the cluster and service CIDRs.
    Raises NetlinkError/RuntimeError on netlink failures."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=config.UNDERLAY_BRIDGE)
        if not idx:
            with contextlib.suppress(NetlinkError):
                ipr.link("add", ifname=config.UNDERLAY_BRIDGE, kind="bridge")
            idx = ipr.link_lookup(ifname=config.UNDERLAY_BRIDGE)
            if not idx:
                raise RuntimeError(f"could not create bridge {config.UNDERLAY_BRIDGE}")
        ipr.link("set", index=idx[0], state="up")
        _add_addr(ipr, idx[0], config.UNDERLAY_HOST_IP)
        if safety_routes:
            for cidr in (config.CLUSTER_CIDR, config.SERVICE_CIDR):
                _route_replace(ipr, cidr, type=RT_UNREACHABLE)


def ensure_node(node: str, address: str) -> None:
    """Ensure ``node``'s netns exists with ``lo`` up and ``eth0`` = ``address``/24 on the
    host bridge (idempotent). The host bridge must exist (``ensure_host``). The
    namespace has no default route, so nothing in it can reach past the
    underlay; it also gets the unreachable cluster CIDR the kubelet would add
    (below the pod routes of the kubelet and host-gw). The service CIDR's route
    via the pod bridge is the kubelet's to make.
    Raises NetlinkError/OSError on failures."""
    name = netns_name(node)
    if name not in netns.listnetns():
        netns.create(name)
    host_end = f"kl-u-{node}"[:15]
    with IPRoute() as ipr:
        bridge = ipr.link_lookup(ifname=config.UNDERLAY_BRIDGE)
        if not bridge:
            raise RuntimeError(f"{config.UNDERLAY_BRIDGE} missing: ensure_host first")
        if not ipr.link_lookup(ifname=host_end):
            ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": f"{host_end}-p"[:15]})
            peer = ipr.link_lookup(ifname=f"{host_end}-p"[:15])
            if peer:  # a leftover half from an interrupted run is moved in as well
                ipr.link("set", index=peer[0], net_ns_fd=name)
        idx = ipr.link_lookup(ifname=host_end)[0]
        ipr.link("set", index=idx, master=bridge[0], state="up")
    with NetNS(name) as ns:
        lo = ns.link_lookup(ifname="lo")
        ns.link("set", index=lo[0], state="up")
        eth = ns.link_lookup(ifname="eth0")
        if not eth:
            peer = ns.link_lookup(ifname=f"{host_end}-p"[:15])
            if not peer:
                raise RuntimeError(f"veth peer of {host_end} not found in {name}")
            ns.link("set", index=peer[0], ifname="eth0")
            eth = peer
        ns.link("set", index=eth[0], state="up")
        _add_addr(ns, eth[0], address)
        _route_replace(ns, config.CLUSTER_CIDR, type=RT_UNREACHABLE)


def teardown(nodes: list[str]) -> list[str]:
    """Remove the given nodes' netns (with everything inside: pod bridge, routes,
    kube-proxy's rules), their host veths, the safety routes and the host bridge.
    Returns what was removed; absent pieces are skipped."""
    done = []
    for node in nodes:
        name = netns_name(node)
        if name in netns.listnetns():
            netns.remove(name)
            done.append(f"removed netns {name}")
    with IPRoute() as ipr:
        for node in nodes:
            idx = ipr.link_lookup(ifname=f"kl-u-{node}"[:15])
            if idx:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx[0])
        for cidr in (config.CLUSTER_CIDR, config.SERVICE_CIDR):
            net = ipaddress.ip_network(cidr)
            with contextlib.suppress(NetlinkError):
                ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, type=RT_UNREACHABLE)
                done.append(f"removed unreachable route {net}")
        idx = ipr.link_lookup(ifname=config.UNDERLAY_BRIDGE)
        if idx:
            ipr.link("del", index=idx[0])
            done.append(f"removed bridge {config.UNDERLAY_BRIDGE}")
    return done
