"""The kube-proxy process: flags, informers, the sync loop and health endpoints.

Mirrors upstream's cmd/kube-proxy/app/server.go: Service and Endpoints
informers feed a Proxier; every change asks the BoundedFrequencyRunner for a
sync (at most one per --min-sync-period, at least one per --sync-period;
syncs are partial, rewriting only what changed, with a full one every
--sync-period in the iptables mode, every hour in the nftables mode); /healthz answers ``ok`` once the first sync has succeeded;
/metrics serves the sync metrics. ``--cleanup`` removes every rule and chain
of both modes and exits. ``--proxy-mode`` is iptables (default, one
iptables-restore per sync) or nftables (one ``nft -f`` transaction per sync
into the table ``ip kube-proxy``, proxy.nftables); the two proxiers share
the change tracking, the runner, health/metrics and the conntrack cleanup,
and starting in one mode removes what the other left, as upstream's
platformCleanup. ``--proxy-mode=ipvs`` exits with one line saying why (this
kernel has no IPVS).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import shutil
import sys

from kubeling import daemon
from kubeling.client import Client, Informer, KubeconfigError
from proxy.bounded_frequency_runner import BoundedFrequencyRunner
from proxy.iptables.proxier import Proxier, cleanup_leftovers
from proxy.iptables.rules import RulesConfig
from proxy.iptables.runner import Iptables, IptablesError
from proxy.nftables import proxier as nftables_proxier
from proxy.nftables.runner import Nft, NftError
from proxy.nodeport_addresses import NodePortAddresses

log = logging.getLogger("proxy")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style duration (``"1s"``, ``"500ms"``, ``"1m30s"``) -> seconds; a bare number is seconds.
    Raises argparse.ArgumentTypeError on anything else."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (want e.g. 1s, 500ms, 1m30s)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def parse_address(text: str) -> tuple[str, int] | None:
    """``host:port`` -> (host, port); empty string -> None (endpoint disabled)."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"invalid address {text!r} (want host:port)")
    return host or "0.0.0.0", int(port)


def parse_cidr(text: str) -> str:
    """An IPv4 CIDR in canonical form; argparse.ArgumentTypeError otherwise."""
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid CIDR {text!r}: {e}") from None


def parse_cidr_list(text: str) -> tuple[str, ...]:
    """Comma-separated IPv4 CIDRs in canonical form; argparse.ArgumentTypeError on a bad one."""
    return tuple(parse_cidr(c.strip()) for c in text.split(",") if c.strip())


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, as Go's strconv.ParseBool); argparse.ArgumentTypeError otherwise."""
    value = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (want true or false)")
    return value


IPVS_PROC = "/proc/net/ip_vs"


def check_proxy_mode(mode: str, *, ipvs_proc: str = IPVS_PROC, nft: str = "nft") -> str | None:
    """None if ``mode`` can run here, else the one-line reason it cannot."""
    if mode == "nftables":
        return None if shutil.which(nft) else \
            f"--proxy-mode=nftables: the {nft} binary is not installed; use --proxy-mode=iptables"
    if mode != "ipvs":
        return None
    if not os.path.exists(ipvs_proc):
        return (f"--proxy-mode=ipvs: this kernel has no IPVS ({ipvs_proc} is missing and it loads no modules); "
                "use --proxy-mode=iptables or --proxy-mode=nftables")
    return ("--proxy-mode=ipvs: kubeling implements only the iptables mode and the nftables mode; "
            "use --proxy-mode=iptables or --proxy-mode=nftables")


def build_parser() -> argparse.ArgumentParser:
    """The kube-proxy style argument parser (durations like ``1s``/``30s`` become float seconds)."""
    p = argparse.ArgumentParser(prog="python -m proxy", description="kubeling kube-proxy (iptables or nftables mode)")
    p.add_argument("--kubeconfig", help="kubeconfig to reach the apiserver")
    p.add_argument("--hostname-override", default="", help="name of this node")
    p.add_argument("--cluster-cidr", type=parse_cidr, default=None,
                   help="pod CIDR; traffic to services from outside it is masqueraded")
    p.add_argument("--healthz-bind-address", type=parse_address, default=parse_address("127.0.0.1:10256"))
    p.add_argument("--metrics-bind-address", type=parse_address, default=parse_address("127.0.0.1:10249"))
    p.add_argument("--min-sync-period", type=parse_duration, default=1.0)
    p.add_argument("--sync-period", type=parse_duration, default=30.0)
    p.add_argument("--masquerade-all", action="store_true", help="SNAT all traffic sent to service IPs")
    p.add_argument("--allow-pod-egress", action="store_true",
                   help="forward pod traffic to addresses outside --cluster-cidr (default: rejected)")
    p.add_argument("--pod-egress-cidrs", type=parse_cidr_list, default=(),
                   help="comma-separated CIDRs outside --cluster-cidr that pods may still reach when egress "
                        "is rejected, e.g. the node underlay 10.250.0.0/24 (kubeling)")
    p.add_argument("--iptables-masquerade-bit", type=int, default=14, choices=range(0, 32), metavar="0..31")
    p.add_argument("--proxy-mode", default="iptables", choices=("iptables", "nftables", "ipvs"),
                   help="iptables (default), nftables (table ip kube-proxy); ipvs only where the kernel has IPVS")
    p.add_argument("--nodeport-addresses", type=parse_cidr_list, default=(),
                   help="comma-separated CIDRs: node ports answer only on the node's addresses inside them "
                        "(default: every local address)")
    p.add_argument("--iptables-localhost-nodeports", type=parse_bool, default=True, metavar="true|false",
                   help="answer node ports on 127.0.0.0/8 too (needs net.ipv4.conf.all.route_localnet=1, "
                        "which kubeling does not set); false refuses them")
    p.add_argument("--cleanup", action="store_true", help="remove all our rules and chains, then exit")
    p.add_argument("-v", "--verbose", action="store_true")
    # Tests run a proxy beside a real cluster's without touching its KUBE-* chains.
    p.add_argument("--chain-prefix", default="KUBE", help=argparse.SUPPRESS)
    # ... and handle only the Services labelled service.kubernetes.io/service-proxy-name=NAME,
    # which the default proxy ignores (upstream's convention for alternative proxies).
    p.add_argument("--service-proxy-name", default="", help=argparse.SUPPRESS)
    return p


SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
HEADLESS = "service.kubernetes.io/headless"


def label_selectors(service_proxy_name: str = "") -> tuple[str, str]:
    """(services selector, endpoints selector), as upstream's server.go: Services
    that name another proxy and Endpoints of headless Services are not ours."""
    if service_proxy_name:
        return f"{SERVICE_PROXY_NAME}={service_proxy_name},!{HEADLESS}", f"!{HEADLESS}"
    both = f"!{SERVICE_PROXY_NAME},!{HEADLESS}"
    return both, both


def rules_config(args: argparse.Namespace) -> RulesConfig:
    """The RulesConfig for the iptables rule builder from the parsed flags."""
    return RulesConfig(cluster_cidr=args.cluster_cidr, chain_prefix=args.chain_prefix,
                       masquerade_bit=args.iptables_masquerade_bit, masquerade_all=args.masquerade_all,
                       pod_egress=args.allow_pod_egress,
                       pod_egress_cidrs=args.pod_egress_cidrs,
                       localhost_nodeports=args.iptables_localhost_nodeports)


async def check_iptables(iptables: Iptables) -> None:
    """Fail early when iptables is missing; warn when it is not the nf_tables build."""
    version = await iptables.version()
    if "nf_tables" not in version:
        log.warning("%s is not the nf_tables build; kubeling expects iptables-nft", version)


async def cleanup_nftables(config: RulesConfig) -> bool:
    """Delete the nftables mode's table; True when done or when nft is not installed."""
    if not shutil.which("nft"):
        return True
    return await nftables_proxier.cleanup_leftovers(config)


async def cleanup_all(config: RulesConfig) -> bool:
    """``--cleanup``: the iptables chains and the nftables table (upstream cleans every mode)."""
    ok = await cleanup_leftovers(config)
    return await cleanup_nftables(config) and ok


async def make_proxier(args: argparse.Namespace, list_services, list_endpoints):
    """The Proxier of ``args.proxy_mode`` (iptables or nftables), after removing what
    the other mode left (upstream's platformCleanup). Raises IptablesError/NftError
    when the tools fail."""
    config = rules_config(args)
    nodeport_addresses = NodePortAddresses(args.nodeport_addresses)
    node_ips = None if nodeport_addresses.match_all else nodeport_addresses.node_ips
    if args.proxy_mode == "nftables":
        nft = Nft()
        log.info("nftables mode: %s, table ip %s", await nft.version(), config.nftables_table)
        if shutil.which("iptables") and not await cleanup_leftovers(config):
            log.warning("could not remove every iptables-mode chain; continuing")
        return nftables_proxier.Proxier(list_services=list_services, list_endpoints=list_endpoints,
                                        config=config, nft=nft, node_ips=node_ips)
    iptables = Iptables()
    await check_iptables(iptables)
    if not await cleanup_nftables(config):
        log.warning("could not remove the nftables-mode table ip %s; continuing", config.nftables_table)
    return Proxier(list_services=list_services, list_endpoints=list_endpoints, config=config,
                   iptables=iptables, jump_check_period=args.sync_period, full_sync_period=args.sync_period,
                   node_ips=node_ips)


async def proxy_main(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the proxy until ``stop`` is set."""
    client = Client.from_kubeconfig(args.kubeconfig, user_agent="kube-proxy")
    services_selector, endpoints_selector = label_selectors(args.service_proxy_name)
    services = Informer(client, "services", label_selector=services_selector)
    endpoints = Informer(client, "endpoints", label_selector=endpoints_selector)
    try:
        proxier = await make_proxier(args, services.lister.list, endpoints.lister.list)
    except BaseException:
        await client.close()
        raise
    runner = BoundedFrequencyRunner("sync-proxy-rules", proxier.sync_proxy_rules,
                                    min_interval=args.min_sync_period, max_interval=args.sync_period)

    def changed(field: str):
        def on_update(old: dict, new: dict) -> None:
            # Endpoints used as leader-election locks change only annotations.
            if old.get(field) != new.get(field) or old.get("metadata", {}).get("labels") != \
                    new.get("metadata", {}).get("labels"):
                runner.run()
        return on_update

    services.add_handlers(on_add=lambda o: runner.run(), on_update=changed("spec"),
                          on_delete=lambda o: runner.run())
    endpoints.add_handlers(on_add=lambda o: runner.run(), on_update=changed("subsets"),
                           on_delete=lambda o: runner.run())

    async def sync_when_ready() -> None:
        await services.wait_synced()
        await endpoints.wait_synced()
        log.info("informers synced, starting sync loop (min %.3gs, max %.3gs)",
                 args.min_sync_period, args.sync_period)
        runner.run()
        await runner.loop()

    tasks = [services.run(), endpoints.run(), sync_when_ready()]
    addresses = [a for a in (args.healthz_bind_address, args.metrics_bind_address) if a]
    for host, port in dict.fromkeys(addresses):
        tasks.append(daemon.serve_health(host, port, lambda: proxier.healthy))
    log.info("kube-proxy starting for node %r, %s mode, chain prefix %s", args.hostname_override,
             args.proxy_mode, args.chain_prefix)
    try:
        await daemon.run_until_stopped(stop, *tasks)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m proxy``; returns the exit status."""
    args = build_parser().parse_args(argv)
    daemon.setup_logging("kube-proxy", verbose=args.verbose)
    if args.cleanup:
        try:
            ok = asyncio.run(cleanup_all(rules_config(args)))
        except (OSError, IptablesError, NftError) as e:
            print(f"kube-proxy: cleanup failed: {e}", file=sys.stderr)
            return 1
        return 0 if ok else 1
    problem = check_proxy_mode(args.proxy_mode)
    if problem:
        print(f"kube-proxy: {problem}", file=sys.stderr)
        return 1
    if not args.kubeconfig:
        print("kube-proxy: --kubeconfig is required", file=sys.stderr)
        return 2
    try:
        daemon.run(lambda stop: proxy_main(args, stop))
    except KubeconfigError as e:
        print(f"kube-proxy: {e}", file=sys.stderr)
        return 1
    except (OSError, IptablesError, NftError) as e:
        print(f"kube-proxy: {e}", file=sys.stderr)
        return 1
    return 0
