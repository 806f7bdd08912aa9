"""csrcleaner: delete CertificateSigningRequests that have served their purpose.

Mirrors pkg/controller/certificates/cleaner: a request is deleted 1 hour
after it was approved, denied or failed (its condition's lastUpdateTime),
24 hours after creation while still pending, and as soon as the
certificate it was issued has expired. Upstream lists every CSR once an
hour; here each CSR's key is queued again for the moment it becomes due
(the work queue's ``add_after``), which deletes at the same times without a
periodic full list.
"""
from __future__ import annotations

import base64
import logging
import time

from cryptography import x509

from controllers.controller_utils import BaseController, parse_time
from kubeling.api import certificates as certs

from kubeling.client import ApiError, Client, Informer

log = logging.getLogger(__name__)

APPROVED_EXPIRATION = 3600.0
DENIED_EXPIRATION = 3600.0
PENDING_EXPIRATION = 24 * 3600.0


def due(csr: dict) -> float | None:
    """Epoch seconds at which ``csr`` is to be deleted (the earliest rule that applies), None if never."""
    times = []
    for ctype in ("Approved", "Denied", "Failed"):
        c = certs.condition(csr, ctype)
        if c is not None:
            t = parse_time(c.get("lastUpdateTime")) or parse_time(csr["metadata"].get("creationTimestamp"))
            if t is not None:
                times.append(t + (APPROVED_EXPIRATION if ctype == "Approved" else DENIED_EXPIRATION))
    if not (csr.get("status") or {}).get("conditions"):
        created = parse_time(csr["metadata"].get("creationTimestamp"))
        if created is not None:
            times.append(created + PENDING_EXPIRATION)
    raw = (csr.get("status") or {}).get("certificate")
    if raw:
        try:
            cert = x509.load_pem_x509_certificates(base64.b64decode(raw))[0]
            times.append(cert.not_valid_after_utc.timestamp())
        except (ValueError, IndexError):
            pass
    return min(times) if times else None


class CSRCleanerController(BaseController):
    """Deletes finished or stale CSRs when they become due; keys are CSR names."""

    name = "csrcleaner"

    def __init__(self, client: Client, csr_informer: Informer, *, now=time.time):
        super().__init__(client, [csr_informer])
        self.lister = csr_informer.lister
        self.now = now
        csr_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        """Delete CSR ``key`` if it is due, else look again when it will be. Raises ApiError to retry."""
        csr = self.lister.get(key)
        if csr is None:
            return
        when = due(csr)
        if when is None:
            return
        if self.not_due(key, when, self.now()):
            return
        try:
            await self.client.delete("certificatesigningrequests", key)
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("deleted certificate signing request %s (finished or expired)", key)
