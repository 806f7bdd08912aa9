"""What every proxy mode's Proxier shares: its sources, the sync bookkeeping and metrics.

The iptables and nftables proxiers differ only in what they render and how
they apply it; reading the listers through the ChangeTracker, deciding when
a sync must be full, flushing stale UDP conntrack entries after a sync,
/healthz's notion of health and the sync metrics are the same, so they live
here once. Mirrors the role of upstream's pkg/proxy Provider interface
(types.go) and the parts of its proxiers' syncProxyRules that are alike.
"""
from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable, Collection, Iterable

from proxy import metrics
from proxy.changetracker import ChangeTracker
from proxy.config import RulesConfig
from proxy.conntrack import Conntrack, clean_stale_entries
from proxy.serviceport import EndpointsMap, ServicePort, ServicePortName
from proxy.syncstats import SyncStats

log = logging.getLogger("proxy")


class ProxierBase:
    """Base of the mode-specific Proxiers (they implement ``sync_proxy_rules``).

    ``list_services`` / ``list_endpoints``: callables returning the current
    Service and v1 Endpoints dicts (informer listers in the daemon, plain
    lists in tests and the benchmark; replace an object to change it, never
    mutate it in place). ``config``: node-level settings. ``conntrack``: the
    conntrack runner. ``full_sync_period``: seconds between full syncs;
    ``minimize`` False makes every sync full. ``node_ips``: async callable
    giving the addresses node ports answer on (NodePortAddresses.node_ips for
    --nodeport-addresses), None for all local addresses.
    """

    def __init__(self, *, list_services: Callable[[], Iterable[dict]],
                 list_endpoints: Callable[[], Iterable[dict]], config: RulesConfig,
                 conntrack: Conntrack | None, full_sync_period: float, minimize: bool,
                 node_ips: Callable[[], Awaitable[Collection[str]]] | None):
        self.list_services = list_services
        self.list_endpoints = list_endpoints
        self.config = config
        self.conntrack = conntrack or Conntrack()
        self.full_sync_period = full_sync_period
        self.minimize = minimize
        self.node_ips = node_ips
        self.last_synced: float | None = None  # wall clock of the last successful sync
        self.last_stats: SyncStats | None = None
        self._last_full: float | None = None
        self._tracker = ChangeTracker()
        self._applied_services: dict[ServicePortName, ServicePort] = {}
        self._applied_endpoints: EndpointsMap = {}

    @property
    def healthy(self) -> bool:
        """True once a sync has succeeded (what /healthz reports)."""
        return self.last_synced is not None

    def force_full_sync(self) -> None:
        """Make the next sync a full one (upstream's needFullSync)."""
        self._last_full = None

    def full_sync_due(self, now: float) -> bool:
        """Whether a sync starting at ``now`` (time.monotonic()) must be full."""
        return not self.minimize or self._last_full is None or now - self._last_full >= self.full_sync_period

    async def current_node_ips(self) -> list[str] | None:
        """The sorted addresses node ports answer on, None for every local address."""
        return sorted(await self.node_ips()) if self.node_ips is not None else None

    def current_state(self) -> tuple[dict[ServicePortName, ServicePort], EndpointsMap]:
        """The service-port and endpoints maps of what the sources return now."""
        return self._tracker.update(self.list_services(), self.list_endpoints())

    async def synced(self, stats: SyncStats, started: float, service_map: dict[ServicePortName, ServicePort],
                     endpoints_map: EndpointsMap) -> SyncStats:
        """Bookkeeping once the ruleset is applied: remembers what was, flushes stale UDP
        conntrack entries, updates the metrics, logs one line; returns ``stats``."""
        if stats.full:
            self._last_full = started
        await clean_stale_entries(self.conntrack, self._applied_services, self._applied_endpoints,
                                  service_map, endpoints_map, first=self.last_synced is None)
        self._applied_services, self._applied_endpoints = service_map, endpoints_map
        self.last_synced = time.time()
        self.last_stats = stats
        elapsed = time.monotonic() - started
        metrics.SYNC_PROXY_RULES_LATENCY.observe(elapsed)
        metrics.SYNC_PROXY_RULES_LAST_TIMESTAMP.set(self.last_synced)
        log.info("%s sync: %d service ports (%d with endpoints), %d rewritten, %d lines, in %.3fs",
                 "full" if stats.full else "partial", len(service_map),
                 sum(1 for k in service_map if endpoints_map.get(k)), stats.written, stats.lines, elapsed)
        return stats
