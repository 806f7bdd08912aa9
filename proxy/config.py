"""Node-level settings of the proxy rules, shared by the iptables and nftables modes.

Both renderers take the same inputs from the flags (cluster CIDR, masquerade
bit, masquerade-all, kubeling's pod egress policy, localhost node ports), so
they live here once. Mirrors the parts of upstream's
KubeProxyConfiguration (pkg/proxy/apis/config) that the proxiers read.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RulesConfig:
    """Node-level inputs of the ruleset.

    ``cluster_cidr``: pod CIDR of the cluster (``"10.244.0.0/16"``); traffic to
    a cluster IP from outside it gets masqueraded (upstream's ``--cluster-cidr``
    local-traffic detector); None disables that rule unless ``masquerade_all``.
    ``chain_prefix``: first word of every chain name (``"KUBE"``).
    ``masquerade_bit``: the fwmark bit that means "SNAT this" (upstream's
    ``--iptables-masquerade-bit``, 14 -> 0x4000).
    ``pod_egress``: let pods send to addresses outside the cluster CIDR.
    kubeling's default (False) rejects such forwarded traffic so that nothing
    a pod sends leaves the machine (no upstream counterpart: upstream leaves
    egress to the node's masquerade and firewall).
    ``pod_egress_cidrs``: destinations outside the cluster CIDR that stay on
    this machine and pods may reach even so (the node underlay, where other
    nodes and the cluster DNS live).
    ``localhost_nodeports``: whether node ports answer on 127.0.0.0/8 (upstream's
    ``--iptables-localhost-nodeports``; needs ``route_localnet``, which the
    daemon sets). When False the jump to KUBE-NODEPORTS excludes loopback.
    """

    cluster_cidr: str | None = None
    chain_prefix: str = "KUBE"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    pod_egress: bool = False
    pod_egress_cidrs: tuple[str, ...] = ()
    localhost_nodeports: bool = True

    @property
    def mark(self) -> str:
        """The masquerade fwmark as a hex string, e.g. "0x4000" for bit 14."""
        return f"{1 << self.masquerade_bit:#x}"

    @property
    def nftables_table(self) -> str:
        """The nftables mode's table (family ip): ``kube-proxy`` (upstream's name) for
        the default prefix, ``<prefix lowercased>-proxy`` otherwise (tests)."""
        return "kube-proxy" if self.chain_prefix == "KUBE" else f"{self.chain_prefix.lower()}-proxy"

    def chain(self, suffix: str) -> str:
        """``"<prefix>-<suffix>"``, e.g. ``chain("SERVICES") == "KUBE-SERVICES"``."""
        return f"{self.chain_prefix}-{suffix}"
