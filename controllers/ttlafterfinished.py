"""The TTL-after-finished controller: deletes finished Jobs ``ttlSecondsAfterFinished`` after they finished.

Mirrors pkg/controller/ttlafterfinished: a Job with the field set and a
Complete or Failed condition expires at that condition's
lastTransitionTime plus the TTL; the controller re-reads the Job before
deleting it (the TTL may have been changed) and deletes it with
propagationPolicy Foreground, so its pods go first.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer, split_key
from controllers.controller_utils import BaseController, parse_time
from controllers.job import condition

log = logging.getLogger(__name__)


def expires_at(job: dict) -> float | None:
    """Seconds since the epoch when the finished ``job`` expires, or None (no TTL, not finished)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None:
        return None
    done = condition(job, "Complete") or condition(job, "Failed")
    if done is None:
        return None
    finished = parse_time(done.get("lastTransitionTime")) or parse_time((job.get("status") or {}).get("completionTime"))
    return None if finished is None else finished + int(ttl)


class TTLAfterFinishedController(BaseController):
    """Deletes expired finished Jobs; keys are Job keys."""

    name = "ttlafterfinished"

    def __init__(self, client: Client, job_informer: Informer, *, clock: Callable[[], float] = time.time):
        super().__init__(client, [job_informer])
        self.job_lister = job_informer.lister
        self.clock = clock
        job_informer.add_handlers(on_add=self._maybe_enqueue, on_update=lambda old, new: self._maybe_enqueue(new))

    def _maybe_enqueue(self, job: dict) -> None:
        if not job["metadata"].get("deletionTimestamp") and expires_at(job) is not None:
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        """Delete Job ``key`` if expired (after a fresh GET), else requeue for its expiry. Raises ApiError to retry."""
        ns, name = split_key(key)
        job = self.job_lister.get(name, ns)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        at = expires_at(job)
        if at is None:
            return
        if self.not_due(key, at, self.clock()):
            return
        try:
            fresh = await self.client.get("jobs", name, namespace=ns)
            at = expires_at(fresh)
            if at is None or self.not_due(key, at, self.clock()):
                return
            await self.client.delete("jobs", name, namespace=ns, propagation_policy="Foreground")
            log.info("deleted finished job %s after its TTL", key)
        except ApiError as e:
            if e.code != 404:
                raise
