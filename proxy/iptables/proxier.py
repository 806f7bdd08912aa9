"""The iptables proxier: turns the current Services and Endpoints into kernel rules.

One ``sync_proxy_rules()`` reads the whole desired state from its sources,
renders it (proxy.iptables.rules) and applies it with ONE
``iptables-restore --noflush`` call, then makes sure the built-in chains
jump to ours and flushes stale UDP conntrack entries. Rules left behind by a
crashed earlier proxy are simply overwritten by the first sync (our chains
are re-declared, stale hashed chains deleted). ``cleanup_leftovers`` removes
everything. Mirrors upstream's pkg/proxy/iptables/proxier.go (Proxier,
syncProxyRules, CleanupLeftovers).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from proxy import metrics
from proxy.conntrack import Conntrack
from proxy.iptables.rules import JUMP_RULES, RulesConfig, render_cleanup, render_rules
from proxy.iptables.runner import Iptables, IptablesError
from proxy.serviceport import EndpointsMap, ServicePort, ServicePortName, build_endpoints_map, build_service_map

log = logging.getLogger(__name__)

TABLES = ("filter", "nat")


class Proxier:
    """Programs iptables for the Services and Endpoints its sources return.

    ``list_services`` / ``list_endpoints``: callables returning the current
    Service and v1 Endpoints dicts (informer listers in the daemon, plain
    lists in tests). ``config``: node-level settings (cluster CIDR, chain
    prefix, masquerade bit). ``iptables`` / ``conntrack``: the tool runners
    (injectable for tests). ``jump_check_period``: seconds between checks
    (``iptables -C``, one process per jump) that the built-in chains still jump
    to ours; upstream likewise re-ensures them only on its periodic full syncs.
    ``sync_proxy_rules`` raises IptablesError when the restore fails; the
    caller (BoundedFrequencyRunner) retries.
    """

    def __init__(self, *, list_services: Callable[[], Iterable[dict]],
                 list_endpoints: Callable[[], Iterable[dict]], config: RulesConfig,
                 iptables: Iptables | None = None, conntrack: Conntrack | None = None,
                 jump_check_period: float = 30.0):
        self.list_services = list_services
        self.list_endpoints = list_endpoints
        self.config = config
        self.iptables = iptables or Iptables()
        self.conntrack = conntrack or Conntrack()
        self.last_synced: float | None = None  # wall clock of the last successful sync
        self.jump_check_period = jump_check_period
        self._jumps_checked_at: float | None = None
        self._applied_services: dict[ServicePortName, ServicePort] = {}
        self._applied_endpoints: EndpointsMap = {}

    @property
    def healthy(self) -> bool:
        """True once a sync has succeeded (what /healthz reports)."""
        return self.last_synced is not None

    async def sync_proxy_rules(self) -> None:
        """Render and apply the full ruleset (one iptables-restore), then ensure the
        jumps from built-in chains and flush stale UDP conntrack entries."""
        start = time.monotonic()
        service_map = build_service_map(self.list_services())
        endpoints_map = build_endpoints_map(self.list_endpoints())
        existing = {"nat": await self.iptables.list_chains("nat")}
        text = render_rules(service_map, endpoints_map, self.config, existing_chains=existing)
        try:
            await self.iptables.restore(text)
        except IptablesError as e:
            metrics.IPTABLES_RESTORE_FAILURES.inc()
            self._jumps_checked_at = None
            log.error("iptables-restore failed: %s\n--- rules ---\n%s", e.stderr, _numbered(text))
            raise
        if self._jumps_checked_at is None or start - self._jumps_checked_at >= self.jump_check_period:
            await self.ensure_jump_rules()
            self._jumps_checked_at = start
        await self._clear_stale_conntrack(service_map, endpoints_map)
        self._applied_services, self._applied_endpoints = service_map, endpoints_map
        self.last_synced = time.time()
        elapsed = time.monotonic() - start
        metrics.SYNC_PROXY_RULES_LATENCY.observe(elapsed)
        metrics.SYNC_PROXY_RULES_LAST_TIMESTAMP.set(self.last_synced)
        for table in TABLES:
            metrics.IPTABLES_RULES.labels(table).set(_count_rules(text, table))
        log.info("synced %d service ports, %d with endpoints, in %.3fs", len(service_map),
                 sum(1 for k in service_map if endpoints_map.get(k)), elapsed)

    async def ensure_jump_rules(self) -> None:
        """Add each jump from a built-in chain to ours unless present (-C, then -I)."""
        for jump in JUMP_RULES:
            await self.iptables.ensure_rule(jump.table, jump.source_chain, jump.args(self.config))

    async def _clear_stale_conntrack(self, service_map: dict[ServicePortName, ServicePort],
                                     endpoints_map: EndpointsMap) -> None:
        # Upstream's deleteUDPEndpointConnections: flows DNATed to a removed
        # endpoint, and flows to a service IP that had no endpoint before
        # (those were rejected, and the reject is cached in conntrack).
        for spn, old_sp in self._applied_services.items():
            if spn.protocol != "UDP":
                continue
            new_ips = {ep.ip for ep in endpoints_map.get(spn, [])}
            for ep in self._applied_endpoints.get(spn, []):
                if ep.ip not in new_ips:
                    await self.conntrack.clear_entries_for_nat(old_sp.cluster_ip, ep.ip, "udp")
        for spn, sp in service_map.items():
            if (spn.protocol == "UDP" and endpoints_map.get(spn)
                    and not self._applied_endpoints.get(spn) and self.last_synced is not None):
                await self.conntrack.clear_entries_for_ip(sp.cluster_ip, "udp")


async def cleanup_leftovers(config: RulesConfig, *, iptables: Iptables | None = None) -> bool:
    """Remove every jump and chain a proxier with ``config.chain_prefix`` made.

    Returns True if all went well; errors are logged, not raised, so that as
    much as possible is removed (upstream's CleanupLeftovers).
    """
    iptables = iptables or Iptables()
    ok = True
    for jump in JUMP_RULES:
        try:
            await iptables.delete_rule(jump.table, jump.source_chain, jump.args(config))
        except IptablesError as e:
            log.error("deleting jump %s %s -> %s: %s", jump.table, jump.source_chain,
                      config.chain(jump.target), e.stderr)
            ok = False
    try:
        existing = {t: await iptables.list_chains(t) for t in TABLES}
        text = render_cleanup(config, existing)
        if text:
            await iptables.restore(text)
    except IptablesError as e:
        log.error("deleting chains: %s", e.stderr)
        ok = False
    return ok


def _count_rules(text: str, table: str) -> int:
    count, current = 0, None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif line.startswith("-A ") and current == table:
            count += 1
    return count


def _numbered(text: str, limit: int = 400) -> str:
    lines = text.splitlines()
    out = [f"{i:4d} {line}" for i, line in enumerate(lines[:limit], 1)]
    if len(lines) > limit:
        out.append(f"... {len(lines) - limit} more lines")
    return "\n".join(out)
