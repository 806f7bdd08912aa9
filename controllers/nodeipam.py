"""The node IPAM controller: gives every Node a pod CIDR out of the cluster CIDR.

Mirrors pkg/controller/nodeipam/ipam/range_allocator.go and its cidrset:
with --allocate-node-cidrs, each Node without spec.podCIDR gets the lowest
free subnet of --node-cidr-mask-size from --cluster-cidr, written to
spec.podCIDR and spec.podCIDRs; CIDRs already on nodes are marked used at
start (so a restart never hands one out twice) and are released when their
node is deleted. The kubelet reads its node's podCIDR to configure the CNI.
"""
from __future__ import annotations

import ipaddress
import logging

from kubeling.client import ApiError, Client, Informer, deep_copy
from kubeling.client.record import WARNING, EventRecorder
from controllers.controller_utils import BaseController

log = logging.getLogger(__name__)


class CIDRSetFull(Exception):
    """Every subnet of the cluster CIDR is allocated."""


class CIDRSet:
    """The subnets of one cluster CIDR and which are used (upstream's cidrset.CidrSet).

    ``CIDRSet("10.244.0.0/16", 24)``; raises ValueError if the mask is not
    longer than the cluster prefix or the CIDR is malformed.
    """

    def __init__(self, cluster_cidr: str, mask_size: int):
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask_size <= self.network.prefixlen or mask_size > self.network.max_prefixlen:
            raise ValueError(f"--node-cidr-mask-size {mask_size} must be longer than the cluster CIDR's "
                             f"/{self.network.prefixlen} and at most /{self.network.max_prefixlen}")
        self.mask_size = mask_size
        self.max_cidrs = 2 ** (mask_size - self.network.prefixlen)
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> int:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.prefixlen != self.mask_size or not net.subnet_of(self.network):
            raise ValueError(f"CIDR {cidr} is not a /{self.mask_size} of {self.network}")
        return (int(net.network_address) - int(self.network.network_address)) >> \
            (self.network.max_prefixlen - self.mask_size)

    def _cidr(self, index: int) -> str:
        base = int(self.network.network_address) + (index << (self.network.max_prefixlen - self.mask_size))
        return str(ipaddress.ip_network((base, self.mask_size)))

    def allocate_next(self) -> str:
        """Mark and return the next free subnet (round-robin from the last one). Raises CIDRSetFull."""
        for i in range(self.max_cidrs):
            index = (self._next + i) % self.max_cidrs
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.max_cidrs
                return self._cidr(index)
        raise CIDRSetFull(f"no free /{self.mask_size} left in {self.network}")

    def occupy(self, cidr: str) -> None:
        """Mark ``cidr`` used. Raises ValueError if it is not one of our subnets."""
        self._used.add(self._index(cidr))

    def release(self, cidr: str) -> None:
        """Mark ``cidr`` free again (ignores CIDRs outside the set)."""
        try:
            self._used.discard(self._index(cidr))
        except ValueError:
            pass

    def used(self, cidr: str) -> bool:
        """Whether ``cidr`` is allocated."""
        return self._index(cidr) in self._used


def node_pod_cidr(node: dict) -> str:
    """spec.podCIDR (or the first of spec.podCIDRs), "" when unset."""
    spec = node.get("spec") or {}
    return spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), "")


class NodeIpamController(BaseController):
    """Allocates spec.podCIDR to Nodes (the range allocator); keys are node names."""

    name = "nodeipam"

    def __init__(self, client: Client, node_informer: Informer, *, cluster_cidr: str, node_cidr_mask_size: int,
                 recorder: EventRecorder | None = None):
        super().__init__(client, [node_informer])
        self.node_lister = node_informer.lister
        self.cidrs = CIDRSet(cluster_cidr, node_cidr_mask_size)
        self.recorder = recorder or EventRecorder(client, "cidrAllocator")
        # Allocated by us but perhaps not yet visible in the informer: never allocate twice.
        self._pending: dict[str, str] = {}
        node_informer.add_handlers(on_add=self._maybe_enqueue, on_update=lambda old, new: self._maybe_enqueue(new),
                                   on_delete=self._release)

    def _maybe_enqueue(self, node: dict) -> None:
        if not node_pod_cidr(node):
            self.enqueue(node)

    def _release(self, node: dict) -> None:
        name = node["metadata"]["name"]
        for cidr in {node_pod_cidr(node), self._pending.pop(name, "")} - {""}:
            self.cidrs.release(cidr)
            log.info("released %s of deleted node %s", cidr, name)

    async def on_synced(self) -> None:
        """Mark the pod CIDRs nodes already have as taken, and enqueue nodes without one."""
        for node in self.node_lister.list():
            cidr = node_pod_cidr(node)
            if cidr:
                try:
                    self.cidrs.occupy(cidr)
                except ValueError as e:
                    log.warning("node %s: %s", node["metadata"]["name"], e)
            else:
                self.enqueue(node)

    async def sync(self, name: str) -> None:
        """Give node ``name`` the next free pod CIDR (mirrors RangeAllocator.AllocateOrOccupyCIDR); raises RuntimeError
        when the cluster CIDR is exhausted (after a CIDRNotAvailable event), so the worker retries.
        """
        node = self.node_lister.get(name)
        if node is None or node_pod_cidr(node):
            if node is not None:
                self._pending.pop(name, None)
            return
        cidr = self._pending.get(name)
        if cidr is None:
            try:
                cidr = self.cidrs.allocate_next()
            except CIDRSetFull as e:
                self.recorder.event(node, WARNING, "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
                raise RuntimeError(str(e)) from None
            self._pending[name] = cidr
        try:
            fresh = await self.client.get("nodes", name)
        except ApiError as e:
            if e.code == 404:
                self.cidrs.release(self._pending.pop(name))
                return
            raise
        existing = node_pod_cidr(fresh)
        if existing:
            # Set meanwhile (by us earlier, or by an admin): keep that one.
            if existing != cidr:
                self.cidrs.release(self._pending.pop(name))
                try:
                    self.cidrs.occupy(existing)
                except ValueError:
                    pass
            return
        obj = deep_copy(fresh)
        obj["spec"]["podCIDR"] = cidr
        obj["spec"]["podCIDRs"] = [cidr]
        await self.client.replace("nodes", obj)
        log.info("allocated %s to node %s", cidr, name)
