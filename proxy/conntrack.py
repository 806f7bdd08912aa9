"""Flushing stale UDP conntrack entries after endpoint changes.

UDP has no connection teardown: once a flow to a service IP is tracked with
a DNAT to an endpoint, packets keep going to that endpoint even after the
endpoint is removed from iptables, until the entry times out. Upstream
deletes those entries with the ``conntrack`` tool after each sync
(pkg/proxy/conntrack: ClearEntriesForIP, ClearEntriesForNAT). Without the
tool (it is not installed on every machine) this is skipped with one warning.
"""
from __future__ import annotations

import logging
import shutil
from typing import Mapping

from proxy import command
from proxy.serviceport import EndpointsMap, ServicePort, ServicePortName

log = logging.getLogger(__name__)


class Conntrack:
    """Runs ``conntrack -D`` as an asyncio subprocess; a no-op when the tool is absent.

    ``netns``: run it inside that named network namespace (``ip netns exec``),
    for tests; None is the current namespace.
    """

    def __init__(self, *, binary: str = "conntrack", timeout: float = 10.0, netns: str | None = None):
        self.path = shutil.which(binary)
        self.timeout = timeout
        self.netns = netns
        self._warned = False

    @property
    def available(self) -> bool:
        """True if the conntrack binary was found (else flushing UDP entries is skipped)."""
        return self.path is not None

    async def _delete(self, *args: str) -> None:
        if self.path is None:
            if not self._warned:
                log.warning("conntrack tool not found: stale UDP conntrack entries are not flushed")
                self._warned = True
            return
        _, rc, _, err = await command.run([self.path, "-D", *args], timeout=self.timeout, netns=self.netns)
        if rc is None:
            log.warning("conntrack -D %s timed out", " ".join(args))
        # Exit 1 with "0 flow entries have been deleted" just means nothing matched.
        elif rc not in (0, 1):
            log.warning("conntrack -D %s: %s", " ".join(args), err.strip())

    async def clear_entries_for_ip(self, ip: str, protocol: str = "udp") -> None:
        """Delete flows whose original destination is ``ip`` (a service IP)."""
        await self._delete("--orig-dst", ip, "-p", protocol.lower())

    async def clear_entries_for_nat(self, origin: str, dest: str, protocol: str = "udp") -> None:
        """Delete flows to ``origin`` (service IP) that were DNATed to ``dest`` (an endpoint IP)."""
        await self._delete("--orig-dst", origin, "--dst-nat", dest, "-p", protocol.lower())

    async def clear_entries_for_port(self, port: int, protocol: str = "udp") -> None:
        """Delete flows to destination port ``port`` (a node port)."""
        await self._delete("-p", protocol.lower(), "--dport", str(port))

    async def clear_entries_for_port_nat(self, port: int, dest: str, protocol: str = "udp") -> None:
        """Delete flows to node port ``port`` that were DNATed to ``dest`` (an endpoint IP)."""
        await self._delete("-p", protocol.lower(), "--dport", str(port), "--dst-nat", dest)


async def clean_stale_entries(conntrack: Conntrack, old_services: Mapping[ServicePortName, ServicePort],
                              old_endpoints: EndpointsMap, services: Mapping[ServicePortName, ServicePort],
                              endpoints: EndpointsMap, *, first: bool) -> None:
    """Flush the UDP flows a sync made stale (upstream's conntrack.CleanStaleEntries).

    ``old_*``: what the previous sync applied; ``services``/``endpoints``: what
    this one applied; ``first``: no sync succeeded before (nothing was
    rejected yet). Flows DNATed to a removed endpoint (by cluster IP and by
    node port) go, so do flows to a service IP or node port that had no
    endpoint before (those were rejected, and the reject is cached in
    conntrack) and flows to the cluster IP of a removed UDP service.
    """
    for spn, old_sp in old_services.items():
        if spn.protocol != "UDP":
            continue
        new_sp = services.get(spn)
        new_ips = {ep.ip for ep in endpoints.get(spn, [])}
        for ep in old_endpoints.get(spn, []):
            if ep.ip not in new_ips:
                await conntrack.clear_entries_for_nat(old_sp.cluster_ip, ep.ip, "udp")
                if old_sp.node_port:
                    await conntrack.clear_entries_for_port_nat(old_sp.node_port, ep.ip, "udp")
        if new_sp is None or new_sp.cluster_ip != old_sp.cluster_ip:
            await conntrack.clear_entries_for_ip(old_sp.cluster_ip, "udp")
    for spn, sp in services.items():
        if spn.protocol != "UDP" or first or not endpoints.get(spn) or old_endpoints.get(spn):
            continue
        await conntrack.clear_entries_for_ip(sp.cluster_ip, "udp")
        if sp.node_port:
            await conntrack.clear_entries_for_port(sp.node_port, "udp")
