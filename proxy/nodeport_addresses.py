"""Which local addresses node ports answer on (upstream's --nodeport-addresses).

By default a node port answers on every local address of the node (one
``-m addrtype --dst-type LOCAL`` rule). With --nodeport-addresses (CIDRs) it
answers only on the node's addresses inside them, written as one ``-d IP``
rule each, re-read on every sync so that a new underlay address is picked
up. Mirrors upstream's pkg/proxy/util/nodeport_addresses.go (NodePortAddresses,
MatchAll, GetNodeIPs).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Sequence


class NodePortAddresses:
    """``cidrs``: IPv4 CIDR texts; empty (or containing 0.0.0.0/0) means every local address."""

    def __init__(self, cidrs: Sequence[str] = ()):
        self.networks = [ipaddress.IPv4Network(c, strict=False) for c in cidrs]

    @property
    def match_all(self) -> bool:
        """True when every local address qualifies (no rule per IP needed)."""
        return not self.networks or any(n.prefixlen == 0 for n in self.networks)

    def select(self, addresses: Sequence[str]) -> list[str]:
        """The IPv4 ``addresses`` inside the CIDRs, sorted and without duplicates."""
        out = set()
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in self.networks):
                out.add(ip)
        return [str(ip) for ip in sorted(out)]

    async def node_ips(self) -> list[str]:
        """The local IPv4 addresses (of this process's network namespace) inside the CIDRs.
        Reads them over netlink in a thread; raises OSError if that fails."""
        return self.select(await asyncio.to_thread(local_ipv4_addresses))


def local_ipv4_addresses() -> list[str]:
    """Every IPv4 address on an interface of the current network namespace (blocking netlink call)."""
    from pyroute2 import IPRoute  # imported here: only needed with --nodeport-addresses

    with IPRoute() as ipr:
        return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)]
