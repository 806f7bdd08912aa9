"""The lessor: leases, their attached keys, and which of them have expired.

Mirrors etcd's lease.lessor (server/lease/lessor.go). Grant and revoke are
log entries, so every member has the same leases and attached keys; expiry
times are local to the member that is primary (the leader), which proposes a
revoke for each expired lease. After a restart every lease gets its full TTL
again (upstream's Promote), so a restart never expires leases early.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

# etcd lease.MaxLeaseTTL, in seconds.
MAX_LEASE_TTL = 9_000_000_000


class LeaseNotFoundError(Exception):
    """No lease with that ID (etcd lease.ErrLeaseNotFound)."""


class LeaseExistsError(Exception):
    """A lease with that ID already exists (etcd lease.ErrLeaseExists)."""


class Lease:
    """One lease: ``id``, granted ``ttl`` seconds, ``expiry`` on the lessor's clock
    (None until the lessor is primary), and the attached ``keys``."""

    __slots__ = ("id", "ttl", "expiry", "keys")

    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.expiry: Optional[float] = None
        self.keys: set[bytes] = set()

    def remaining(self, now: float) -> int:
        """Whole seconds left, truncated like etcd's LeaseTimeToLive; 0 when expired."""
        if self.expiry is None:
            return self.ttl
        return max(0, int(self.expiry - now))


class Lessor:
    """All leases of a member.

    ``min_ttl`` seconds is the shortest TTL granted (etcd derives it from the
    election timeout: 1.5 x election timeout, rounded up, = 2 s with defaults).
    ``clock`` returns seconds (monotonic); tests inject their own.
    """

    def __init__(self, *, min_ttl: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_ttl = min_ttl
        self.clock = clock
        self.leases: dict[int, Lease] = {}
        self.primary = False

    def grant(self, lease_id: int, ttl: int) -> Lease:
        """Create lease ``lease_id`` with ``max(ttl, min_ttl)`` seconds.

        Raises LeaseExistsError.
        """
        if lease_id in self.leases:
            raise LeaseExistsError()
        lease = Lease(lease_id, max(ttl, self.min_ttl))
        if self.primary:
            lease.expiry = self.clock() + lease.ttl
        self.leases[lease_id] = lease
        return lease

    def revoke(self, lease_id: int) -> Lease:
        """Forget lease ``lease_id`` and return it (the caller deletes its keys).

        Raises LeaseNotFoundError.
        """
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFoundError()
        return lease

    def renew(self, lease_id: int) -> int:
        """Restart the lease's TTL (a keep-alive); returns the TTL in seconds.

        Raises LeaseNotFoundError, also for a lease that has already expired
        but whose revoke is not applied yet.
        """
        lease = self.leases.get(lease_id)
        now = self.clock()
        if lease is None or (lease.expiry is not None and lease.expiry <= now):
            raise LeaseNotFoundError()
        lease.expiry = now + lease.ttl
        return lease.ttl

    def lookup(self, lease_id: int) -> Optional[Lease]:
        """The lease or None."""
        return self.leases.get(lease_id)

    def attach(self, lease_id: int, key: bytes) -> None:
        """Record that ``key`` is attached to the lease (ignored if it is gone)."""
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        """Record that ``key`` no longer belongs to the lease."""
        lease = self.leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def promote(self) -> None:
        """Become primary: every lease expires its full TTL from now (etcd Promote)."""
        self.primary = True
        now = self.clock()
        for lease in self.leases.values():
            lease.expiry = now + lease.ttl

    def demote(self) -> None:
        """Stop tracking expiry (a follower never expires leases by itself)."""
        self.primary = False
        for lease in self.leases.values():
            lease.expiry = None

    def expired(self) -> list[Lease]:
        """Leases whose expiry has passed (empty unless primary)."""
        if not self.primary:
            return []
        now = self.clock()
        return [le for le in self.leases.values() if le.expiry is not None and le.expiry <= now]
