"""The iptables proxier: turns the current Services and Endpoints into kernel rules.

One ``sync_proxy_rules()`` reads the desired state from its sources, renders
it (proxy.iptables.rules) and applies it with ONE ``iptables-restore
--noflush`` call, then makes sure the built-in chains jump to ours and
flushes stale UDP conntrack entries.

Syncs are full or partial, as upstream 1.28's MinimizeIPTablesRestore: a
full sync (the first one, one after a failure, and one per
``full_sync_period``) lists the chains in the kernel with iptables-save and
rewrites every chain we own, which also replaces whatever a crashed earlier
proxy left behind; a partial sync rewrites the fixed chains and only the
chains of service ports whose rules changed, and deletes the chains the
previous sync had and this one no longer wants. Parsing and rendering are
cached per object and per service port, so a sync after one endpoint change
costs little more than the restore of what changed.

``cleanup_leftovers`` removes everything. Mirrors upstream's
pkg/proxy/iptables/proxier.go (Proxier, syncProxyRules, CleanupLeftovers).
"""
from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable, Collection, Iterable

from proxy import metrics
from proxy.changetracker import ChangeTracker
from proxy.conntrack import Conntrack, clean_stale_entries
from proxy.iptables.rules import (JUMP_RULES, RulesConfig, ServicePortRules, assemble, render_cleanup,
                                  service_port_rules)
from proxy.iptables.runner import Iptables, IptablesError
from proxy.serviceport import EndpointsMap, ServicePort, ServicePortName
from proxy.types import SyncStats

log = logging.getLogger(__name__)

TABLES = ("filter", "nat")


class Proxier:
    """Programs iptables for the Services and Endpoints its sources return.

    ``list_services`` / ``list_endpoints``: callables returning the current
    Service and v1 Endpoints dicts (informer listers in the daemon, plain
    lists in tests and the benchmark; replace an object to change it, never
    mutate it in place). ``config``: node-level settings (cluster CIDR, chain
    prefix, masquerade bit). ``iptables`` / ``conntrack``: the tool runners
    (injectable for tests). ``jump_check_period``: seconds between checks
    (``iptables -C``, one process per jump) that the built-in chains still jump
    to ours; upstream likewise re-ensures them only on its periodic syncs.
    ``full_sync_period``: seconds between full syncs (upstream: --sync-period);
    ``minimize`` False makes every sync full. ``node_ips``: async callable
    giving the addresses node ports answer on (NodePortAddresses.node_ips for
    --nodeport-addresses), None for all local addresses. ``sync_proxy_rules`` raises IptablesError when the
    restore fails; the caller (BoundedFrequencyRunner) retries, with a full sync.
    """

    def __init__(self, *, list_services: Callable[[], Iterable[dict]],
                 list_endpoints: Callable[[], Iterable[dict]], config: RulesConfig,
                 iptables: Iptables | None = None, conntrack: Conntrack | None = None,
                 jump_check_period: float = 30.0, full_sync_period: float = 30.0, minimize: bool = True,
                 node_ips: Callable[[], Awaitable[Collection[str]]] | None = None):
        self.list_services = list_services
        self.list_endpoints = list_endpoints
        self.config = config
        self.iptables = iptables or Iptables()
        self.conntrack = conntrack or Conntrack()
        self.last_synced: float | None = None  # wall clock of the last successful sync
        self.last_stats: SyncStats | None = None
        self.jump_check_period = jump_check_period
        self.full_sync_period = full_sync_period
        self.minimize = minimize
        self.node_ips = node_ips
        self._jumps_checked_at: float | None = None
        self._last_full: float | None = None
        self._tracker = ChangeTracker()
        self._applied_services: dict[ServicePortName, ServicePort] = {}
        self._applied_endpoints: EndpointsMap = {}
        self._applied_rules: dict[ServicePortName, ServicePortRules] = {}
        self._applied_chains: frozenset[str] = frozenset()
        self._applied_fixed: dict[tuple[str, str], tuple[str, ...]] = {}
        self._applied_node_ips: Collection[str] | None = None

    @property
    def healthy(self) -> bool:
        """True once a sync has succeeded (what /healthz reports)."""
        return self.last_synced is not None

    def force_full_sync(self) -> None:
        """Make the next sync a full one (upstream's needFullSync)."""
        self._last_full = None
        self._applied_fixed = {}

    async def sync_proxy_rules(self) -> SyncStats:
        """Render and apply the ruleset (one iptables-restore), then ensure the jumps
        from built-in chains and flush stale UDP conntrack entries. Returns what it did."""
        start = time.monotonic()
        full = (not self.minimize or self._last_full is None
                or start - self._last_full >= self.full_sync_period)
        node_ips = sorted(await self.node_ips()) if self.node_ips is not None else None
        save_seconds = 0.0
        if full:
            existing = {"nat": await self.iptables.list_chains("nat")}
            save_seconds = time.monotonic() - start
        else:
            existing = {"nat": self._applied_chains}
        render_start = time.monotonic()
        service_map, endpoints_map = self._tracker.update(self.list_services(), self.list_endpoints())
        rules = service_port_rules(service_map, endpoints_map, self.config, previous=self._applied_rules)
        write = None if full else {spn for spn, r in rules.items() if self._applied_rules.get(spn) is not r}
        ruleset = assemble(rules, self.config, existing_chains=existing, node_ips=node_ips, write=write,
                           previous_fixed=self._applied_fixed)
        restore_start = time.monotonic()
        try:
            await self.iptables.restore(ruleset.text)
        except IptablesError as e:
            metrics.IPTABLES_RESTORE_FAILURES.inc()
            self._jumps_checked_at = None
            self.force_full_sync()
            log.error("iptables-restore failed: %s\n--- rules ---\n%s", e.stderr, _numbered(ruleset.text))
            raise
        done = time.monotonic()
        if full:
            self._last_full = start
        if self._jumps_checked_at is None or start - self._jumps_checked_at >= self.jump_check_period:
            await self.ensure_jump_rules()
            self._jumps_checked_at = start
        await clean_stale_entries(self.conntrack, self._applied_services, self._applied_endpoints,
                                  service_map, endpoints_map, first=self.last_synced is None)
        self._applied_services, self._applied_endpoints = service_map, endpoints_map
        self._applied_rules, self._applied_chains, self._applied_fixed = rules, ruleset.chains, ruleset.fixed
        self.last_synced = time.time()
        stats = SyncStats(full, len(service_map), ruleset.written, ruleset.text.count("\n"), len(ruleset.text),
                          save_seconds, restore_start - render_start, done - restore_start, done)
        self.last_stats = stats
        elapsed = time.monotonic() - start
        metrics.SYNC_PROXY_RULES_LATENCY.observe(elapsed)
        metrics.SYNC_PROXY_RULES_LAST_TIMESTAMP.set(self.last_synced)
        for table in TABLES:
            metrics.IPTABLES_RULES.labels(table).set(ruleset.count_rules(table))
        log.info("%s sync: %d service ports (%d with endpoints), %d rewritten, %d lines, in %.3fs",
                 "full" if full else "partial", len(service_map),
                 sum(1 for k in service_map if endpoints_map.get(k)), ruleset.written, stats.lines, elapsed)
        return stats

    async def ensure_jump_rules(self) -> None:
        """Add each jump from a built-in chain to ours unless present (-C, then -I)."""
        for jump in JUMP_RULES:
            await self.iptables.ensure_rule(jump.table, jump.source_chain, jump.args(self.config))


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


def _numbered(text: str, limit: int = 400) -> str:
    lines = text.splitlines()
    out = [f"{i:4d} {line}" for i, line in enumerate(lines[:limit], 1)]
    if len(lines) > limit:
        out.append(f"... {len(lines) - limit} more lines")
    return "\n".join(out)
