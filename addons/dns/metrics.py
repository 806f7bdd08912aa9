"""Prometheus metrics of the DNS server, under CoreDNS's names so its dashboards
and alerts read them: plugin/metrics (requests, duration, responses), plugin/cache
(hits, misses, entries) and plugin/forward (requests, responses per upstream).

Label children are looked up once per distinct (proto, family, type, rcode)
and kept on the cached response (``Observer``), because the hot path answers
tens of thousands of queries a second and ``labels()`` costs a dict build each time.
"""
from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

# CoreDNS's duration buckets (plugin/metrics/vars: prometheus.ExponentialBuckets(0.00025, 2, 16)).
DURATION_BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))

REQUESTS = Counter("coredns_dns_requests_total", "Counter of DNS requests made per zone, protocol and family.",
                   ["server", "zone", "proto", "family", "type"])
DURATION = Histogram("coredns_dns_request_duration_seconds",
                     "Histogram of the time (in seconds) each request took per zone.",
                     ["server", "zone", "type"], buckets=DURATION_BUCKETS)
RESPONSES = Counter("coredns_dns_responses_total", "Counter of response status codes.",
                    ["server", "zone", "rcode", "plugin"])
CACHE_HITS = Counter("coredns_cache_hits_total", "The count of cache hits.", ["server", "type"])
CACHE_MISSES = Counter("coredns_cache_misses_total", "The count of cache misses.", ["server"])
CACHE_ENTRIES = Gauge("coredns_cache_entries", "The number of elements in the cache.", ["server", "type"])
FORWARD_REQUESTS = Counter("coredns_forward_requests_total", "Counter of requests made per upstream.", ["to"])
FORWARD_RESPONSES = Counter("coredns_forward_responses_total", "Counter of responses received per upstream.",
                            ["to", "rcode"])
KUBERNETES_EVENTS = Counter("coredns_kubernetes_events_total",
                            "Informer events seen per kind (each drops the response cache).", ["kind"])


class Observer:
    """Pre-bound metric children for one kind of answer: ``observe(start)`` counts
    a request and its response and records ``perf_counter() - start`` seconds."""

    __slots__ = ("_req", "_dur", "_resp", "_hit")

    def __init__(self, server: str, zone: str, proto: str, family: str, qtype: str, rcode: str,
                 plugin: str, cache_type: str | None = None):
        self._req = REQUESTS.labels(server, zone, proto, family, qtype)
        self._dur = DURATION.labels(server, zone, qtype)
        self._resp = RESPONSES.labels(server, zone, rcode, plugin)
        self._hit = CACHE_HITS.labels(server, cache_type) if cache_type else None

    def observe(self, start: float, *, hit: bool = False) -> None:
        """Count one answered request that started at ``start`` (time.perf_counter())."""
        self._req.inc()
        self._resp.inc()
        if hit and self._hit is not None:
            self._hit.inc()
        self._dur.observe(time.perf_counter() - start)


_observers: dict[tuple, Observer] = {}


def observer(server: str, zone: str, proto: str, family: str, qtype: str, rcode: str, plugin: str,
             cache_type: str | None = None) -> Observer:
    """The shared Observer for these labels (created on first use)."""
    key = (server, zone, proto, family, qtype, rcode, plugin, cache_type)
    obs = _observers.get(key)
    if obs is None:
        obs = _observers[key] = Observer(server, zone, proto, family, qtype, rcode, plugin, cache_type)
    return obs
