"""The nftables proxier: turns the current Services and Endpoints into one nft table.

One ``sync_proxy_rules()`` reads the desired state from its sources (the
same ChangeTracker as the iptables mode), renders it (proxy.nftables.rules)
and applies it with ONE ``nft -f -`` call -- one kernel transaction -- then
flushes stale UDP conntrack entries (proxy.conntrack, shared too).

A full sync (the first one, one after a failure, and one per
``full_sync_period``) lists the table's chains and sets (names only) and
rewrites everything, deleting whatever it does not want: the leftovers of a
crashed proxy are replaced atomically. Should a full sync fail (what exists
cannot be flushed into shape, e.g. a base chain at another priority), the
next one deletes and recreates the table in the same transaction. A partial sync rewrites only the
chains of the service ports that changed and the map elements that differ.
Unlike the iptables mode nothing outside our table is touched: the base
chains hook into netfilter themselves, so no jump rules are needed.

``cleanup_leftovers`` deletes the table. Mirrors upstream's
pkg/proxy/nftables/proxier.go (Proxier, syncProxyRules, CleanupLeftovers).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import time
from typing import Awaitable, Callable, Collection, Iterable

from proxy import metrics
from proxy.config import RulesConfig
from proxy.conntrack import Conntrack
from proxy.nftables.rules import Ruleset, ServicePortNft, assemble, render_cleanup, service_port_rules
from proxy.nftables.runner import Nft, NftError
from proxy.provider import ProxierBase
from proxy.serviceport import ServicePortName
from proxy.syncstats import SyncStats

log = logging.getLogger(__name__)

# Upstream's proxyutil.FullSyncPeriod: a full sync costs ~0.15 ms of nft + kernel
# CPU per service with 10 endpoints (0.75 s at 5,000, measured), so the periodic
# (--sync-period) syncs are partial; every partial sync fails if the table was
# deleted, which forces a full one.
FULL_SYNC_PERIOD = 3600.0


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Pause Python's cyclic garbage collector for a render. A 5,000-service render
    allocates about a million tuples, dicts and strings that form no cycles (reference
    counting frees them); the collections they triggered took 0.2-0.3 s of a 0.6 s
    render (measured). Nothing in the block awaits, so nothing else runs meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Proxier(ProxierBase):
    """Programs the nftables table ``config.nftables_table`` for the Services and
    Endpoints its sources return.

    ``list_services``, ``list_endpoints``, ``config``, ``conntrack``,
    ``minimize``, ``node_ips``: see ProxierBase. ``nft``: the nft runner.
    ``full_sync_period``: seconds between full syncs (upstream's
    FullSyncPeriod, 1 h; the periodic --sync-period syncs are partial).
    ``sync_proxy_rules`` raises NftError when nft fails; the caller
    (BoundedFrequencyRunner) retries, with a full sync.
    """

    def __init__(self, *, list_services: Callable[[], Iterable[dict]],
                 list_endpoints: Callable[[], Iterable[dict]], config: RulesConfig,
                 nft: Nft | None = None, conntrack: Conntrack | None = None,
                 full_sync_period: float = FULL_SYNC_PERIOD, minimize: bool = True,
                 node_ips: Callable[[], Awaitable[Collection[str]]] | None = None):
        super().__init__(list_services=list_services, list_endpoints=list_endpoints, config=config,
                         conntrack=conntrack, full_sync_period=full_sync_period, minimize=minimize,
                         node_ips=node_ips)
        self.nft = nft or Nft()
        self._applied_rules: dict[ServicePortName, ServicePortNft] = {}
        self._applied: Ruleset | None = None
        self._recreate = False  # the last full sync failed: the next one deletes the table first

    def force_full_sync(self) -> None:
        """Make the next sync a full one (upstream's needFullSync)."""
        super().force_full_sync()
        self._applied = None

    async def sync_proxy_rules(self) -> SyncStats:
        """Render and apply the table in one ``nft -f -`` transaction, then flush
        stale UDP conntrack entries. Returns what it did; raises NftError."""
        start = time.monotonic()
        full = self.full_sync_due(start) or self._applied is None
        node_ips = await self.current_node_ips()
        chains: set[str] = set()
        sets: set[str] = set()
        if full:
            chains, sets = await self.nft.list_names(self.config.nftables_table)
        render_start = time.monotonic()
        with _cyclic_gc_paused():
            service_map, endpoints_map = self.current_state()
            rules = service_port_rules(service_map, endpoints_map, self.config, previous=self._applied_rules)
            write = None if full else {spn for spn, r in rules.items() if self._applied_rules.get(spn) is not r}
            ruleset = assemble(rules, self.config, node_ips=node_ips, existing_chains=chains, existing_sets=sets,
                               write=write, previous=None if full else self._applied,
                               recreate=full and self._recreate)
        apply_start = time.monotonic()
        try:
            await self.nft.apply(ruleset.text)
        except NftError as e:
            metrics.NFTABLES_SYNC_FAILURES.inc()
            self._recreate = full
            self.force_full_sync()
            log.error("nft -f failed: %s\n--- first lines ---\n%s", e.stderr,
                      "\n".join(ruleset.text.splitlines()[:60]))
            raise
        done = time.monotonic()
        self._recreate = False
        self._applied_rules, self._applied = rules, ruleset
        stats = SyncStats(full, len(service_map), ruleset.written, ruleset.text.count("\n"), len(ruleset.text),
                          render_start - start if full else 0.0, apply_start - render_start, done - apply_start, done)
        return await self.synced(stats, start, service_map, endpoints_map)


async def cleanup_leftovers(config: RulesConfig, *, nft: Nft | None = None) -> bool:
    """Delete our table (whether or not it exists). Returns True if that went well;
    errors are logged, not raised (upstream's CleanupLeftovers)."""
    nft = nft or Nft()
    try:
        await nft.apply(render_cleanup(config))
    except NftError as e:
        log.error("deleting nftables table %s: %s", config.nftables_table, e.stderr)
        return False
    return True
