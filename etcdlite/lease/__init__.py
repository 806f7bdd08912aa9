"""Leases: time-to-live handles that delete their attached keys on expiry."""
from etcdlite.lease.lessor import (MAX_LEASE_TTL, Lease, LeaseExistsError, LeaseNotFoundError,
                                   Lessor)

__all__ = ["MAX_LEASE_TTL", "Lease", "LeaseExistsError", "LeaseNotFoundError", "Lessor"]
