"""Service ClusterIP allocation from ``--service-cluster-ip-range``, race-free through etcd.

Mirrors kube-apiserver's ``pkg/registry/core/service/ipallocator`` in
behaviour (random free address of the range, a requested address honoured
if free, "provided IP is already allocated" otherwise, released on delete)
with upstream's newer per-IP-object design (the IPAddress API) for the
storage: each allocated address is a reservation key
``/registry/kubeling/serviceips/<ip>`` created in the same etcd Txn as the
Service (compare create_revision == 0), so two apiservers cannot hand out
one address twice, and a failed create leaves nothing behind.
"""
from __future__ import annotations

import ipaddress
import random

RESERVATION_PREFIX = "/registry/kubeling/serviceips/"


class AllocationError(ValueError):
    """A requested address cannot be used; ``str()`` is upstream's detail text."""


class Range:
    """The service IP range, e.g. ``Range("10.96.0.0/12")``.

    Usable addresses exclude the network and broadcast addresses (IPv4).
    Raises ValueError for a malformed CIDR.
    """

    def __init__(self, cidr: str, *, rng: random.Random | None = None):
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        self.rng = rng or random.Random()
        size = self.network.num_addresses
        if self.network.version == 4:
            self._first, self._count = 1, max(0, size - 2)
        else:
            self._first, self._count = 1, max(0, size - 1)
        if self._count <= 0:
            raise ValueError(f"service IP range {cidr} has no usable addresses")

    def first(self) -> str:
        """The first usable address (10.96.0.1: the ``kubernetes`` service's)."""
        return str(self.network.network_address + self._first)

    def nth(self, n: int) -> str:
        """The ``n``-th usable address (0-based)."""
        return str(self.network.network_address + self._first + n)

    def check(self, ip: str) -> None:
        """Raise AllocationError unless ``ip`` is a usable address of the range."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise AllocationError(f"failed to allocate IP {ip}: invalid IP address") from None
        if addr not in self.network or addr in (self.network.network_address, self.network.broadcast_address):
            raise AllocationError(f"failed to allocate IP {ip}: provided IP ({ip}) is not in the valid range. "
                                  f"The range of valid IPs is {self.cidr}")

    def pick(self, taken: set[str]) -> str:
        """A random usable address not in ``taken``; raises AllocationError when the range is full.

        Random probing first (cheap when the range is sparse), then a scan
        from a random offset. The first address stays reserved for the
        ``kubernetes`` service, as upstream's allocator does for dynamic allocation.
        """
        first = self.first()
        for _ in range(64):
            ip = self.nth(self.rng.randrange(self._count))
            if ip not in taken and ip != first:
                return ip
        start = self.rng.randrange(self._count)
        for i in range(self._count):
            ip = self.nth((start + i) % self._count)
            if ip not in taken and ip != first:
                return ip
        raise AllocationError("failed to allocate a serviceIP: range is full")


def reservation_key(ip: str) -> str:
    """etcd key that marks ``ip`` as allocated."""
    return RESERVATION_PREFIX + ip


def taken_from_keys(keys: list[str]) -> set[str]:
    """Addresses of the reservation keys listed under RESERVATION_PREFIX."""
    return {k[len(RESERVATION_PREFIX):] for k in keys}
