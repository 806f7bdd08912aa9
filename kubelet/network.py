"""Node networking the kubelet owns: the pod bridge and the safety routes.

Once the node has a pod CIDR the kubelet makes sure the bridge exists, is
up and carries the CIDR's first address (the pods' gateway; the CNI bridge
plugin ensures the same on every ADD, both idempotently), turns on
ip_forward, and adds two safety routes so no cluster address ever follows
the default route off the machine: the service CIDR via the bridge (an
unprogrammed service IP stays local) and ``unreachable`` for the whole
cluster CIDR (the node's own /24 on the bridge is more specific and wins).
``teardown`` removes exactly these. Upstream's kubelet leaves this to the
network plugin (kubenet's bridge setup in pkg/kubelet/network/kubenet).

The kubelet runs ``setup`` in a child process (``python -m kubelet.network
setup ...``), not in a thread: pyroute2 0.9 drives netlink with an asyncio
loop of its own, and a second event loop in the process stalls grpc.aio's
poller, i.e. every CRI call of the kubelet.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import sys

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

RT_UNREACHABLE = 7  # rtnetlink RTN_UNREACHABLE


def gateway_of(pod_cidr: str) -> ipaddress.IPv4Interface:
    """First host address of the CIDR with its prefix: ``10.244.0.0/24`` -> ``10.244.0.1/24``.
    Raises ValueError on a malformed CIDR."""
    net = ipaddress.ip_network(pod_cidr, strict=False)
    return ipaddress.ip_interface(f"{net.network_address + 1}/{net.prefixlen}")


def _ensure_bridge(ipr: IPRoute, name: str) -> int:
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        with contextlib.suppress(NetlinkError):  # the CNI plugin may create it at the same time
            ipr.link("add", ifname=name, kind="bridge")
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise RuntimeError(f"could not create bridge {name}")
    info = ipr.get_links(idx[0])[0].get_attr("IFLA_LINKINFO")
    if info is not None and info.get_attr("IFLA_INFO_KIND") != "bridge":
        raise RuntimeError(f"{name} exists but is not a bridge")
    ipr.link("set", index=idx[0], state="up")
    return idx[0]


def _route(ipr: IPRoute, cidr: str, **kwargs) -> None:
    net = ipaddress.ip_network(cidr, strict=False)
    ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen, **kwargs)


def setup(*, bridge: str, pod_cidr: str, cluster_cidr: str | None = None,
          service_cidr: str | None = None) -> None:
    """Ensure bridge ``bridge`` is up with ``pod_cidr``'s gateway address,
    ip_forward is on, and (when given) the service-CIDR route via the bridge
    and the unreachable cluster-CIDR route exist. Idempotent. Raises
    ValueError on bad CIDRs, NetlinkError/OSError on netlink failures."""
    gw = gateway_of(pod_cidr)
    with IPRoute() as ipr:
        idx = _ensure_bridge(ipr, bridge)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (str(gw.ip), gw.network.prefixlen) not in have:
            try:
                ipr.addr("add", index=idx, address=str(gw.ip), prefixlen=gw.network.prefixlen)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        if service_cidr:
            _route(ipr, service_cidr, oif=idx)
        if cluster_cidr:
            _route(ipr, cluster_cidr, type=RT_UNREACHABLE)
    log.info("node network ready: bridge %s %s%s%s", bridge, gw,
             f", route {service_cidr} dev {bridge}" if service_cidr else "",
             f", unreachable {cluster_cidr}" if cluster_cidr else "")


def teardown(*, bridge: str, cluster_cidr: str | None = None, service_cidr: str | None = None) -> list[str]:
    """Remove the bridge and the two safety routes if present; returns what was removed.
    Never touches anything else (the routes are matched by destination and kind)."""
    removed = []
    with IPRoute() as ipr:
        if service_cidr:
            net = ipaddress.ip_network(service_cidr, strict=False)
            idx = ipr.link_lookup(ifname=bridge)
            if idx:
                with contextlib.suppress(NetlinkError):
                    ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, oif=idx[0])
                    removed.append(f"route {net} dev {bridge}")
        if cluster_cidr:
            net = ipaddress.ip_network(cluster_cidr, strict=False)
            with contextlib.suppress(NetlinkError):
                ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, type=RT_UNREACHABLE)
                removed.append(f"unreachable {net}")
        idx = ipr.link_lookup(ifname=bridge)
        if idx:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=idx[0])
                removed.append(f"bridge {bridge}")
    return removed


async def setup_in_subprocess(*, bridge: str, pod_cidr: str, cluster_cidr: str | None = None,
                              service_cidr: str | None = None, timeout: float = 30.0) -> None:
    """Run ``setup`` in a child process (see the module docstring for why).
    Raises RuntimeError with the child's error output on failure or timeout."""
    args = [sys.executable, "-m", "kubelet.network", "setup", "--bridge-name", bridge, "--pod-cidr", pod_cidr]
    if cluster_cidr:
        args += ["--cluster-cidr", cluster_cidr]
    if service_cidr:
        args += ["--service-cluster-ip-range", service_cidr]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"node network setup timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"node network setup failed: {err.decode(errors='replace').strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    """``python -m kubelet.network setup|teardown --bridge-name B [--pod-cidr C]
    [--cluster-cidr C] [--service-cluster-ip-range C]``; exit 1 with one line on error."""
    p = argparse.ArgumentParser(prog="python -m kubelet.network")
    p.add_argument("action", choices=["setup", "teardown"])
    p.add_argument("--bridge-name", required=True)
    p.add_argument("--pod-cidr")
    p.add_argument("--cluster-cidr")
    p.add_argument("--service-cluster-ip-range")
    a = p.parse_args(argv)
    try:
        if a.action == "setup":
            if not a.pod_cidr:
                p.error("setup needs --pod-cidr")
            setup(bridge=a.bridge_name, pod_cidr=a.pod_cidr, cluster_cidr=a.cluster_cidr,
                  service_cidr=a.service_cluster_ip_range)
        else:
            for r in teardown(bridge=a.bridge_name, cluster_cidr=a.cluster_cidr,
                              service_cidr=a.service_cluster_ip_range):
                print(f"removed {r}")
    except (OSError, ValueError, RuntimeError, NetlinkError) as e:
        print(f"kubelet network {a.action}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
