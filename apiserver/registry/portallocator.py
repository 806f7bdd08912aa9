"""Service NodePort allocation from ``--service-node-port-range``, race-free through etcd.

Mirrors kube-apiserver's ``pkg/registry/core/service/portallocator``: a
requested port is honoured if it lies in the range and is free ("provided
port is already allocated" / "provided port is not in the valid range"
otherwise), an unset one gets a random free port, and ports are released
when the Service is deleted. Storage follows the ClusterIP allocator here
(``ipallocator``): one reservation key per port,
``/registry/kubeling/servicenodeports/<port>``, created in the Service's own
etcd Txn so that two creates can never take the same port.
"""
from __future__ import annotations

import random

RESERVATION_PREFIX = "/registry/kubeling/servicenodeports/"
DEFAULT_RANGE = "30000-32767"


class AllocationError(ValueError):
    """A requested port cannot be used; ``str()`` is upstream's detail text."""


class PortRange:
    """An inclusive port range, e.g. ``PortRange("30000-32767")``. Raises ValueError when malformed."""

    def __init__(self, text: str = DEFAULT_RANGE, *, rng: random.Random | None = None):
        try:
            lo, _, hi = text.partition("-")
            self.base, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"invalid port range {text!r}: want FIRST-LAST") from None
        if not 0 < self.base <= last < 65536:
            raise ValueError(f"invalid port range {text!r}")
        self.size = last - self.base + 1
        self.text = f"{self.base}-{last}"
        self.rng = rng or random.Random()

    def check(self, port: int) -> None:
        """Raise AllocationError unless ``port`` lies in the range."""
        if not self.base <= port < self.base + self.size:
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is {self.text}")

    def pick(self, taken: set[int]) -> int:
        """A random port of the range not in ``taken``; AllocationError when the range is full."""
        start = self.rng.randrange(self.size)
        for i in range(self.size):
            port = self.base + (start + i) % self.size
            if port not in taken:
                return port
        raise AllocationError("range is full")


def reservation_key(port: int) -> str:
    """etcd key that marks node port ``port`` as allocated."""
    return f"{RESERVATION_PREFIX}{port}"


def taken_from_keys(keys: list[str]) -> set[int]:
    """Ports of the reservation keys listed under RESERVATION_PREFIX."""
    out = set()
    for k in keys:
        try:
            out.add(int(k[len(RESERVATION_PREFIX):]))
        except ValueError:
            continue
    return out
