"""Prometheus metrics of kube-proxy, under upstream's names (pkg/proxy/metrics).

Registered once per process in prometheus-client's default registry, which
kubeling.daemon's /metrics endpoint serves. The count of the duration
histogram (``..._duration_seconds_count``) is the number of syncs done.
"""
from __future__ import annotations

import prometheus_client as prom

SYNC_PROXY_RULES_LATENCY = prom.Histogram(
    "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
    buckets=[0.001 * 2 ** i for i in range(15)])
SYNC_PROXY_RULES_LAST_TIMESTAMP = prom.Gauge(
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced")
IPTABLES_RESTORE_FAILURES = prom.Counter(
    "kubeproxy_sync_proxy_rules_iptables_restore_failures", "Cumulative proxy iptables restore failures")
IPTABLES_RULES = prom.Gauge(
    "kubeproxy_sync_proxy_rules_iptables_total", "Number of iptables rules written by kube-proxy in last sync",
    ["table"])
NFTABLES_SYNC_FAILURES = prom.Counter(
    "kubeproxy_sync_proxy_rules_nftables_sync_failures", "Cumulative proxy nftables sync failures")
