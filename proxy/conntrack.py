"""Flushing stale UDP conntrack entries after endpoint changes.

UDP has no connection teardown: once a flow to a service IP is tracked with
a DNAT to an endpoint, packets keep going to that endpoint even after the
endpoint is removed from iptables, until the entry times out. Upstream
deletes those entries with the ``conntrack`` tool after each sync
(pkg/proxy/conntrack: ClearEntriesForIP, ClearEntriesForNAT). Without the
tool (it is not installed on every machine) this is skipped with one warning.
"""
from __future__ import annotations

import asyncio
import logging
import shutil

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
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        proc = await asyncio.create_subprocess_exec(
            *prefix, self.path, "-D", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("conntrack -D %s timed out", " ".join(args))
            return
        # Exit 1 with "0 flow entries have been deleted" just means nothing matched.
        if proc.returncode not in (0, 1):
            log.warning("conntrack -D %s: %s", " ".join(args), err.decode().strip())

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
