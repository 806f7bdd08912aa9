"""etcdlite's configuration: etcd's command-line flags and the member/cluster IDs.

Mirrors the flags of etcd 3.4 (embed.Config) that a member needs, with the same
names and defaults, and computes member and cluster IDs the way etcd does
(membership.NewMember, RaftCluster.genID), so the same flags give the same IDs.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from etcdlite.tlsinfo import TLSError, TLSInfo, is_https


class ConfigError(Exception):
    """A flag value is invalid; the message names the flag."""


@dataclass
class ServerConfig:
    """A member's configuration.

    ``initial_cluster`` maps member name -> peer URLs; ``listen_client_urls``
    are (host, port) pairs; times are milliseconds like etcd's flags.
    """

    name: str
    data_dir: Path
    listen_client_urls: list[tuple[str, int]]
    advertise_client_urls: list[str]
    listen_peer_urls: list[str]
    initial_advertise_peer_urls: list[str]
    initial_cluster: dict[str, list[str]]
    initial_cluster_token: str = "etcd-cluster"
    initial_cluster_state: str = "new"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = 100_000
    max_request_bytes: int = 1_572_864
    max_txn_ops: int = 128
    member_ids: dict[str, int] = field(default_factory=dict)
    # TLS (etcd's --cert-file ... and --peer-cert-file ...); which listener uses it is
    # decided by the URL scheme. listen_client_tls[i] says whether listen_client_urls[i] is https.
    client_tls: TLSInfo = field(default_factory=TLSInfo)
    peer_tls: TLSInfo = field(default_factory=lambda: TLSInfo(prefix="peer-"))
    listen_client_tls: list[bool] = field(default_factory=list)
    listen_metrics_urls: list[tuple[str, int]] = field(default_factory=list)  # --listen-metrics-urls (http)

    @property
    def member_id(self) -> int:
        """This member's ID."""
        return self.member_ids[self.name]

    @property
    def cluster_id(self) -> int:
        """The cluster ID (etcd genID: SHA-1 of the sorted member IDs)."""
        ids = sorted(self.member_ids.values())
        digest = hashlib.sha1(b"".join(struct.pack(">Q", i) for i in ids)).digest()
        return struct.unpack(">Q", digest[:8])[0]

    @property
    def min_lease_ttl(self) -> int:
        """Shortest lease TTL in seconds (etcd: ceil(3 * election timeout / 2))."""
        return math.ceil(3 * self.election_timeout_ms / 2 / 1000)


def member_id(peer_urls: list[str], token: str) -> int:
    """etcd's member ID: SHA-1 of the sorted peer URLs joined, then the cluster token."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + token).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0]


def _urls(flag: str, value: str) -> list[str]:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--{flag}: {u!r} is not a URL like http://127.0.0.1:2379")
    return urls


def _host_port(flag: str, url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"--{flag}: {url!r}: only http:// and https:// URLs are supported")
    if parts.port is None:
        raise ConfigError(f"--{flag}: {url!r} has no port")
    return parts.hostname, parts.port


def parse_initial_cluster(value: str) -> dict[str, list[str]]:
    """``name=url,name=url`` -> {name: [urls]} (a name may repeat for several URLs)."""
    out: dict[str, list[str]] = {}
    for item in (x.strip() for x in value.split(",") if x.strip()):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--initial-cluster: {item!r} is not name=peerURL")
        out.setdefault(name, []).extend(_urls("initial-cluster", url))
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m etcdlite`` (etcd's flag names and defaults)."""
    p = argparse.ArgumentParser(prog="etcdlite", description="A small etcd v3 server in Python.")
    p.add_argument("--name", default="default")
    p.add_argument("--data-dir", default=None, help="default: ${name}.etcd")
    p.add_argument("--listen-client-urls", default="http://localhost:2379")
    p.add_argument("--advertise-client-urls", default="http://localhost:2379")
    p.add_argument("--listen-peer-urls", default="http://localhost:2380")
    p.add_argument("--initial-advertise-peer-urls", default=None,
                   help="default: this member's URLs in --initial-cluster, else http://localhost:2380")
    p.add_argument("--initial-cluster", default=None, help="default: ${name}=http://localhost:2380")
    p.add_argument("--initial-cluster-token", default="etcd-cluster")
    p.add_argument("--initial-cluster-state", default="new", choices=["new", "existing"])
    p.add_argument("--heartbeat-interval", type=int, default=100, help="milliseconds")
    p.add_argument("--election-timeout", type=int, default=1000, help="milliseconds")
    p.add_argument("--snapshot-count", type=int, default=100_000)
    p.add_argument("--max-request-bytes", type=int, default=1_572_864)
    p.add_argument("--max-txn-ops", type=int, default=128)
    p.add_argument("--listen-metrics-urls", default="",
                   help="additional http:// URLs to serve /metrics and /health on")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    p.add_argument("--cert-file", default=None, help="client server TLS cert file (https:// client URLs)")
    p.add_argument("--key-file", default=None, help="client server TLS key file")
    p.add_argument("--trusted-ca-file", default=None, help="client server TLS trusted CA cert file")
    p.add_argument("--client-cert-auth", action="store_true",
                   help="refuse clients without a certificate signed by --trusted-ca-file")
    p.add_argument("--peer-cert-file", default=None, help="peer server TLS cert file (https:// peer URLs)")
    p.add_argument("--peer-key-file", default=None, help="peer server TLS key file")
    p.add_argument("--peer-trusted-ca-file", default=None, help="peer server TLS trusted CA file")
    p.add_argument("--peer-client-cert-auth", action="store_true",
                   help="refuse peers without a certificate signed by --peer-trusted-ca-file")
    return p


def from_args(ns: argparse.Namespace) -> ServerConfig:
    """Validate parsed flags into a ServerConfig; raises ConfigError."""
    if not ns.name:
        raise ConfigError("--name must not be empty")
    initial = parse_initial_cluster(ns.initial_cluster or f"{ns.name}=http://localhost:2380")
    if ns.name not in initial:
        raise ConfigError(f"--initial-cluster has no member named {ns.name!r} (--name)")
    adv_peer = (_urls("initial-advertise-peer-urls", ns.initial_advertise_peer_urls)
                if ns.initial_advertise_peer_urls else initial[ns.name])
    if sorted(adv_peer) != sorted(initial[ns.name]):
        raise ConfigError(f"--initial-cluster must include {ns.name}={','.join(adv_peer)} "
                          f"given --initial-advertise-peer-urls")
    if ns.election_timeout < 5 * ns.heartbeat_interval:
        raise ConfigError("--election-timeout must be at least 5 times --heartbeat-interval")
    client_urls = _urls("listen-client-urls", ns.listen_client_urls)
    listen = [_host_port("listen-client-urls", u) for u in client_urls]
    client_tls = TLSInfo(getattr(ns, "cert_file", None), getattr(ns, "key_file", None),
                         getattr(ns, "trusted_ca_file", None), bool(getattr(ns, "client_cert_auth", False)))
    peer_tls = TLSInfo(getattr(ns, "peer_cert_file", None), getattr(ns, "peer_key_file", None),
                       getattr(ns, "peer_trusted_ca_file", None), bool(getattr(ns, "peer_client_cert_auth", False)),
                       prefix="peer-")
    try:
        client_tls.validate()
        peer_tls.validate()
    except TLSError as e:
        raise ConfigError(str(e)) from None
    # etcd refuses an https:// listener without a certificate to serve.
    if client_tls.empty and any(is_https(u) for u in client_urls):
        raise ConfigError("--listen-client-urls: https:// URLs need --cert-file and --key-file")
    peer_urls = _urls("listen-peer-urls", ns.listen_peer_urls)
    if peer_tls.empty and any(is_https(u) for u in peer_urls):
        raise ConfigError("--listen-peer-urls: https:// URLs need --peer-cert-file and --peer-key-file")
    cfg = ServerConfig(
        name=ns.name,
        data_dir=Path(ns.data_dir or f"{ns.name}.etcd"),
        listen_client_urls=listen,
        advertise_client_urls=_urls("advertise-client-urls", ns.advertise_client_urls),
        listen_peer_urls=peer_urls,
        initial_advertise_peer_urls=adv_peer,
        initial_cluster=initial,
        initial_cluster_token=ns.initial_cluster_token,
        initial_cluster_state=ns.initial_cluster_state,
        heartbeat_interval_ms=ns.heartbeat_interval,
        election_timeout_ms=ns.election_timeout,
        snapshot_count=ns.snapshot_count,
        max_request_bytes=ns.max_request_bytes,
        max_txn_ops=ns.max_txn_ops,
        client_tls=client_tls,
        peer_tls=peer_tls,
        listen_client_tls=[is_https(u) for u in client_urls],
        listen_metrics_urls=_metrics_urls(getattr(ns, "listen_metrics_urls", "")),
    )
    cfg.member_ids = {name: member_id(urls, cfg.initial_cluster_token)
                      for name, urls in initial.items()}
    return cfg


def _metrics_urls(value: str) -> list[tuple[str, int]]:
    if not value:
        return []
    urls = _urls("listen-metrics-urls", value)
    if any(is_https(u) for u in urls):
        raise ConfigError("--listen-metrics-urls: only http:// URLs are supported")
    return [_host_port("listen-metrics-urls", u) for u in urls]


def parse(argv: Optional[list[str]] = None) -> ServerConfig:
    """Parse ``argv`` (default sys.argv[1:]) into a ServerConfig; raises ConfigError."""
    return from_args(build_parser().parse_args(argv))
