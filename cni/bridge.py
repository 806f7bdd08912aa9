"""bridge CNI plugin: a Linux bridge on the host, a veth pair per container.

Mirrors containernetworking/plugins plugins/main/bridge. Configuration keys:
``bridge`` (default "kubeling0"), ``isGateway`` (give the bridge the range's
gateway address and turn on ip_forward), ``isDefaultGateway`` (default route
via that gateway inside the container; implies isGateway), ``ipMasq``
(masquerade traffic leaving the pod network, in a CNI-<hash> nat chain),
``mtu``, ``hairpinMode`` and ``ipam`` (delegated to the plugin named by
``ipam.type`` found in CNI_PATH).

The host end of the veth is named from a hash of (container id, ifname) so
that DEL can remove it even when CNI_NETNS is empty.

Run as ``python -m cni.bridge``.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import subprocess
import sys
import threading
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cni.invoke import exec_plugin
from cni.ns import iproute_in, netlink_socket
from cni.rtnl import IFF_UP, Rtnl
from cni.skel import (ERR_INTERNAL, ERR_INVALID_NETCONF, ERR_IO, CmdArgs,
                      CNIError, plugin_main)

DEFAULT_BRIDGE = "kubeling0"


def host_veth_name(container_id: str, ifname: str) -> str:
    """Deterministic host-side veth name, at most 15 characters (IFNAMSIZ - 1)."""
    return "veth" + hashlib.sha1(f"{container_id}/{ifname}".encode()).hexdigest()[:8]


def _conf(args: CmdArgs) -> dict:
    conf = args.conf
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict) or not ipam.get("type"):
        raise CNIError(ERR_INVALID_NETCONF, "bridge: ipam with a type is required")
    mtu = conf.get("mtu", 0)
    if not isinstance(mtu, int) or mtu < 0:
        raise CNIError(ERR_INVALID_NETCONF, f"bridge: invalid mtu {mtu!r}")
    name = conf.get("bridge") or DEFAULT_BRIDGE
    if len(name) > 15:
        raise CNIError(ERR_INVALID_NETCONF, f"bridge: name {name!r} longer than 15 characters")
    return conf


def _netns_path(args: CmdArgs) -> str:
    if not os.path.exists(args.netns):
        raise CNIError(ERR_IO, f"failed to open netns {args.netns!r}: no such file")
    return args.netns


_local = threading.local()


@contextlib.contextmanager
def _per_thread(attr: str, make) -> Iterator:
    """A netlink socket in our own netns kept per thread (``make()`` opens it): the CNI server's
    pooled threads reuse it across invocations. Dropped after an unexpected error."""
    sock = getattr(_local, attr, None)
    if sock is None:
        sock = make()
        setattr(_local, attr, sock)
    try:
        yield sock
    except (NetlinkError, CNIError):
        raise
    except BaseException:
        setattr(_local, attr, None)
        with contextlib.suppress(Exception):
            sock.close()
        raise


def host_iproute() -> contextlib.AbstractContextManager[IPRoute]:
    """pyroute2 in our netns, per thread: creating veth pairs (see cni.rtnl for why only that)."""
    return _per_thread("ipr", IPRoute)


def host_rtnl() -> contextlib.AbstractContextManager[Rtnl]:
    """cni.rtnl in our netns, per thread: every other request of an ADD or DEL."""
    return _per_thread("rtnl", Rtnl)


def _ensure_bridge(r: Rtnl, name: str, mtu: int) -> int:
    link = r.get_link(name=name)
    if link is None:
        with contextlib.suppress(NetlinkError), host_iproute() as ipr:  # a concurrent ADD may win the race
            ipr.link("add", ifname=name, kind="bridge")
        link = r.get_link(name=name)
        if link is None:
            raise CNIError(ERR_INTERNAL, f"could not create bridge {name}")
    if link.kind and link.kind != "bridge":
        raise CNIError(ERR_INTERNAL, f"{name} already exists but is not a bridge")
    # Each netlink write takes the kernel's rtnl lock: skip the ones that change nothing.
    if (mtu and link.mtu != mtu) or not link.flags & IFF_UP:
        r.set_link(link.index, up=True, mtu=mtu if mtu and link.mtu != mtu else None)
    return link.index


def _ensure_gateway_addr(r: Rtnl, bridge_idx: int, gateway: str, prefixlen: int) -> None:
    # Added blindly, EEXIST meaning it is there: one request instead of dumping the addresses.
    with contextlib.suppress(NetlinkError):
        if ipaddress.ip_address(gateway).version == 4:
            r.add_addr(bridge_idx, gateway, prefixlen)
        else:
            with host_iproute() as ipr:
                ipr.addr("add", index=bridge_idx, address=gateway, prefixlen=prefixlen)


def _set_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _masq_chain(conf: dict, container_id: str) -> str:
    return "CNI-" + hashlib.sha256(f"{conf.get('name')}{container_id}".encode()).hexdigest()[:24]


def _setup_masq(conf: dict, container_id: str, ip: ipaddress.IPv4Interface) -> None:
    chain = _masq_chain(conf, container_id)
    comment = f'name: "{conf.get("name")}" id: "{container_id}"'
    cmds = [["-N", chain], ["-A", chain, "-d", str(ip.network), "-j", "ACCEPT", "-m", "comment", "--comment", comment],
            ["-A", chain, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE", "-m", "comment", "--comment", comment],
            ["-A", "POSTROUTING", "-s", str(ip.ip), "-j", chain, "-m", "comment", "--comment", comment]]
    for c in cmds:
        subprocess.run(["iptables", "-w", "5", "-t", "nat", *c], capture_output=True, timeout=10, check=False)


def _teardown_masq(conf: dict, container_id: str) -> None:
    chain = _masq_chain(conf, container_id)
    listing = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    for line in listing.splitlines():
        if f"-j {chain}" in line and line.startswith("-A "):
            subprocess.run(["iptables", "-w", "5", "-t", "nat", "-D", *line.split()[1:]],
                           capture_output=True, timeout=10, check=False)
    for op in ("-F", "-X"):
        subprocess.run(["iptables", "-w", "5", "-t", "nat", op, chain], capture_output=True, timeout=10, check=False)


def cmd_add(args: CmdArgs) -> dict:
    """Bridge + veth + IPAM + addresses and routes in the container netns."""
    conf = _conf(args)
    netns = _netns_path(args)
    bridge = conf.get("bridge") or DEFAULT_BRIDGE
    mtu = conf.get("mtu", 0)
    is_default_gw = bool(conf.get("isDefaultGateway"))
    is_gw = bool(conf.get("isGateway")) or is_default_gw
    host_if = host_veth_name(args.container_id, args.ifname)

    # One netlink socket in the container's netns and one in ours for the whole ADD, each request
    # written by cni.rtnl but the veth pair's creation (pyroute2 costs ~0.5 ms a request).
    with Rtnl(netlink_socket(netns)) as ns, host_rtnl() as r:
        if ns.get_link(name=args.ifname) is not None:
            raise CNIError(ERR_INTERNAL, f"container veth name provided ({args.ifname}) already exists")
        bridge_idx = _ensure_bridge(r, bridge, mtu)
        fd = os.open(netns, os.O_RDONLY)
        try:
            peer = {"ifname": args.ifname, "net_ns_fd": fd}
            if mtu:
                peer["mtu"] = mtu
            with host_iproute() as ipr:
                try:
                    ipr.link("add", ifname=host_if, kind="veth", peer=peer, **({"mtu": mtu} if mtu else {}))
                except NetlinkError as e:
                    stale = r.get_link(name=host_if) if e.code == errno.EEXIST else None
                    if stale is None:
                        raise
                    r.del_link(stale.index)  # left by an ADD that failed half way
                    ipr.link("add", ifname=host_if, kind="veth", peer=peer, **({"mtu": mtu} if mtu else {}))
        finally:
            os.close(fd)
        host = r.get_link(name=host_if)
        host_idx, host_mac = host.index, host.mac
        r.set_link(host_idx, up=True, master=bridge_idx)
        if conf.get("hairpinMode"):
            # Over netlink (IFLA_BRPORT_MODE), not /sys/class/net/*/brport: sysfs shows the
            # links of the netns it was mounted in, which is not ours when the plugin runs
            # in a node netns entered with setns (nsenter) only.
            r.set_hairpin(host_idx)

        try:
            ipam_conf = {k: v for k, v in conf.items() if k != "prevResult"}
            ipam_result = exec_plugin(conf["ipam"]["type"], command="ADD", conf=ipam_conf,
                                      container_id=args.container_id, netns=args.netns,
                                      ifname=args.ifname, paths=args.path, args=args.args)
            if not ipam_result or not ipam_result.get("ips"):
                raise CNIError(ERR_INTERNAL, "IPAM plugin returned missing IP config")
            ips = ipam_result["ips"]
            routes = list(ipam_result.get("routes") or [])
            container = ns.get_link(name=args.ifname)
            cidx, container_mac = container.index, container.mac
            lo = ns.get_link(name="lo")
            if lo is not None and not lo.flags & IFF_UP:  # what the loopback plugin would do
                ns.set_link(lo.index, up=True)
            v6 = []
            for entry in ips:
                iface = ipaddress.ip_interface(entry["address"])
                if iface.version == 4:
                    ns.add_addr(cidx, str(iface.ip), iface.network.prefixlen)
                else:
                    v6.append(iface)
            ns.set_link(cidx, up=True)
            first_gw = ips[0].get("gateway")
            if is_default_gw and first_gw and not any(rt.get("dst") in ("0.0.0.0/0", "default") for rt in routes):
                routes.append({"dst": "0.0.0.0/0", "gw": first_gw})
            if v6 or routes:
                with iproute_in(netns) as pr:
                    for iface in v6:
                        pr.addr("add", index=cidx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                    for route in routes:
                        gw = route.get("gw") or first_gw
                        dst = ipaddress.ip_network(route["dst"], strict=False)
                        with contextlib.suppress(NetlinkError):  # an existing identical route is fine
                            pr.route("add", dst=str(dst.network_address), dst_len=dst.prefixlen, gateway=gw,
                                     oif=cidx)
            if is_gw:
                for entry in ips:
                    if entry.get("gateway"):
                        prefix = ipaddress.ip_interface(entry["address"]).network.prefixlen
                        _ensure_gateway_addr(r, bridge_idx, entry["gateway"], prefix)
                _set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
            if conf.get("ipMasq"):
                _setup_masq(conf, args.container_id, ipaddress.ip_interface(ips[0]["address"]))
            # Read last, as the reference plugin does: a bridge's MAC may change as ports join.
            bridge_mac = r.get_link(index=bridge_idx).mac
        except BaseException:
            with contextlib.suppress(Exception):
                exec_plugin(conf["ipam"]["type"], command="DEL", conf=conf, container_id=args.container_id,
                            netns=args.netns, ifname=args.ifname, paths=args.path, args=args.args)
            with contextlib.suppress(Exception):
                r.del_link(host_idx)
            raise

    version = conf.get("cniVersion", "1.0.0")
    out_ips = []
    for entry in ips:
        e = {"address": entry["address"], "interface": 2}
        if entry.get("gateway"):
            e["gateway"] = entry["gateway"]
        if version < "1.0.0":
            e["version"] = entry.get("version", "4")
        out_ips.append(e)
    result = {
        "cniVersion": version,
        "interfaces": [{"name": bridge, "mac": bridge_mac},
                       {"name": host_if, "mac": host_mac},
                       {"name": args.ifname, "mac": container_mac, "sandbox": args.netns}],
        "ips": out_ips,
        "routes": routes,
        "dns": conf.get("dns") or ipam_result.get("dns") or {},
    }
    return result


def cmd_del(args: CmdArgs) -> None:
    """IPAM DEL, then remove the veth; every step tolerates absence."""
    conf = _conf(args)
    exec_plugin(conf["ipam"]["type"], command="DEL", conf=conf, container_id=args.container_id,
                netns=args.netns, ifname=args.ifname, paths=args.path, args=args.args)
    if args.netns and os.path.exists(args.netns):
        with contextlib.suppress(NetlinkError, OSError, CNIError), Rtnl(netlink_socket(args.netns)) as ns:
            link = ns.get_link(name=args.ifname)
            if link is not None:
                ns.del_link(link.index)
    with host_rtnl() as r:
        host = r.get_link(name=host_veth_name(args.container_id, args.ifname))
        if host is not None:
            try:
                r.del_link(host.index)
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
    if conf.get("ipMasq"):
        _teardown_masq(conf, args.container_id)
    return None


def cmd_check(args: CmdArgs) -> None:
    """Verify bridge, container interface and the addresses of prevResult."""
    conf = _conf(args)
    netns = _netns_path(args)
    bridge = conf.get("bridge") or DEFAULT_BRIDGE
    exec_plugin(conf["ipam"]["type"], command="CHECK", conf=conf, container_id=args.container_id,
                netns=args.netns, ifname=args.ifname, paths=args.path, args=args.args)
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=bridge):
            raise CNIError(ERR_INTERNAL, f"bridge {bridge} does not exist")
        if not ipr.link_lookup(ifname=host_veth_name(args.container_id, args.ifname)):
            raise CNIError(ERR_INTERNAL, "host veth of the container does not exist")
    with iproute_in(netns) as ns:
        idx = ns.link_lookup(ifname=args.ifname)
        if not idx:
            raise CNIError(ERR_INTERNAL, f"interface {args.ifname} not found in {netns}")
        have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ns.get_addr(index=idx[0])}
    prev = conf.get("prevResult") or {}
    for entry in prev.get("ips") or []:
        if entry["address"] not in have:
            raise CNIError(ERR_INTERNAL, f"address {entry['address']} not set on {args.ifname}")
    return None


def main() -> int:
    """Entry point of ``python -m cni.bridge``."""
    return plugin_main(add=cmd_add, delete=cmd_del, check=cmd_check, about="kubeling bridge plugin")


if __name__ == "__main__":
    sys.exit(main())
