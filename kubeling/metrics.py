"""Scrape-time metrics over live objects: the one collector shape kubeling's components share.

Why it exists: several upstream gauges (workqueue_depth, kubelet_running_containers,
leader_election_master_status ...) are readings of state that objects already
keep. Reading them when /metrics is scraped costs nothing between scrapes, but
prometheus-client wants a collector object registered once per process while
the objects come and go (tests run many queues, PLEGs and electors in one
process). ``Watched`` holds them weakly and calls a function over the live
ones at each scrape.
"""
from __future__ import annotations

import weakref
from typing import Callable, Iterable

import prometheus_client
from prometheus_client.metrics_core import Metric


class Watched:
    """A registered collector: ``collect(objects)`` (the live watched objects, a list) returns the
    metric families to expose. ``add(obj)`` watches one more object (held weakly: it is dropped when
    nothing else keeps it). Mirrors the GaugeFunc-style metrics of client-go and component-base."""

    def __init__(self, collect: Callable[[list], Iterable[Metric]], *,
                 registry: prometheus_client.CollectorRegistry = prometheus_client.REGISTRY):
        self._collect = collect
        self._objects: weakref.WeakSet = weakref.WeakSet()
        registry.register(self)

    def add(self, obj) -> None:
        """Watch ``obj`` from now on."""
        self._objects.add(obj)

    def describe(self) -> list:
        return []  # names are not reserved up front: the families exist only while scraped

    def collect(self) -> Iterable[Metric]:
        return self._collect(list(self._objects))
