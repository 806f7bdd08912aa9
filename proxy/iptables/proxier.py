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
from proxy.conntrack import Conntrack
from proxy.iptables.rules import (JUMP_RULES, RulesConfig, ServicePortRules, assemble, render_cleanup,
                                  service_port_rules)
from proxy.iptables.runner import Iptables, IptablesError
from proxy.provider import ProxierBase
from proxy.serviceport import ServicePortName
from proxy.syncstats import SyncStats

log = logging.getLogger(__name__)

TABLES = ("filter", "nat")


class Proxier(ProxierBase):
    """Programs iptables for the Services and Endpoints its sources return.

    ``list_services``, ``list_endpoints``, ``config``, ``conntrack``,
    ``minimize``, ``node_ips``: see ProxierBase. ``iptables`` / ``conntrack``: the tool runners
    (injectable for tests). ``jump_check_period``: seconds between checks
    (``iptables -C``, one process per jump) that the built-in chains still jump
    to ours; upstream likewise re-ensures them only on its periodic syncs.
    ``full_sync_period``: seconds between full syncs (kubeling: --sync-period).
    ``sync_proxy_rules`` raises IptablesError when the
    restore fails; the caller (BoundedFrequencyRunner) retries, with a full sync.
    """

    def __init__(self, *, list_services: Callable[[], Iterable[dict]],
                 list_endpoints: Callable[[], Iterable[dict]], config: RulesConfig,
                 iptables: Iptables | None = None, conntrack: Conntrack | None = None,
                 jump_check_period: float = 30.0, full_sync_period: float = 30.0, minimize: bool = True,
                 node_ips: Callable[[], Awaitable[Collection[str]]] | None = None):
        super().__init__(list_services=list_services, list_endpoints=list_endpoints, config=config,
                         conntrack=conntrack, full_sync_period=full_sync_period, minimize=minimize,
                         node_ips=node_ips)
        self.iptables = iptables or Iptables()
        self.jump_check_period = jump_check_period
        self._jumps_checked_at: float | None = None
        self._applied_rules: dict[ServicePortName, ServicePortRules] = {}
        self._applied_chains: frozenset[str] = frozenset()
        self._applied_fixed: dict[tuple[str, str], tuple[str, ...]] = {}
        self._applied_node_ips: Collection[str] | None = None

    def force_full_sync(self) -> None:
        """Make the next sync a full one (upstream's needFullSync)."""
        super().force_full_sync()
        self._applied_fixed = {}

    async def sync_proxy_rules(self) -> SyncStats:
        """Render and apply the ruleset (one iptables-restore), then ensure the jumps
        from built-in chains and flush stale UDP conntrack entries. Returns what it did."""
        start = time.monotonic()
        full = self.full_sync_due(start)
        node_ips = await self.current_node_ips()
        save_seconds = 0.0
        if full:
            existing = {"nat": await self.iptables.list_chains("nat")}
            save_seconds = time.monotonic() - start
        else:
            existing = {"nat": self._applied_chains}
        render_start = time.monotonic()
        service_map, endpoints_map = self.current_state()
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
        if self._jumps_checked_at is None or start - self._jumps_checked_at >= self.jump_check_period:
            await self.ensure_jump_rules()
            self._jumps_checked_at = start
        self._applied_rules, self._applied_chains, self._applied_fixed = rules, ruleset.chains, ruleset.fixed
        stats = SyncStats(full, len(service_map), ruleset.written, ruleset.text.count("\n"), len(ruleset.text),
                          save_seconds, restore_start - render_start, done - restore_start, done)
        await self.synced(stats, start, service_map, endpoints_map)
        for table in TABLES:
            metrics.IPTABLES_RULES.labels(table).set(ruleset.count_rules(table))
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
