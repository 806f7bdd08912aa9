"""The ResourceQuota admission plugin: refuse a write that would take a namespace over its quota, and charge it.

Mirrors k8s.io/apiserver's ``pkg/admission/plugin/resourcequota``
(controller.go's quotaEvaluator, checkRequest): for a create (or an update
that changes usage) of a namespaced object, every ResourceQuota of the
namespace whose ``status.hard`` names resources the object uses is
checked: ``status.used`` + what the request adds must stay within
``status.hard``, else 403 ``pods "p3" is forbidden: exceeded quota: q,
requested: pods=1, used: pods=2, limited: pods=2``. A quota whose
``status.used`` lacks a tracked resource refuses with ``status unknown for
quota`` (the resourcequota controller has not counted yet); a quota only
has ``status.hard`` once that controller ran, and until then it limits
nothing, as upstream.

The admitted usage is written to the quota's ``status.used`` right away
(optimistic, as the evaluator does), conditional on the quota's
resourceVersion: two concurrent creates cannot both take the last slot,
the loser re-reads the quota and is checked again. Writes within one
apiserver are also serialized per namespace (the evaluator's per-namespace
work queue). A charge for a request that then fails later (e.g. 409
AlreadyExists) stays until the controller's next recalculation, as upstream.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Protocol

from apiserver import errors
from apiserver.admission import Attributes, forbidden, resource_group, resource_name
from kubeling.api import quota

MAX_ATTEMPTS = 8


class QuotaAccess(Protocol):
    """How the plugin reads and writes ResourceQuotas (the apiserver's own resourcequotas store)."""

    async def list(self, namespace: str) -> list[dict]:
        """The namespace's ResourceQuotas (the watch cache is fine: writes are conditional)."""

    async def get(self, namespace: str, name: str) -> dict | None:
        """One ResourceQuota read from etcd (after a lost race), or None."""

    async def update_status(self, rq: dict) -> dict:
        """Write ``rq``'s status conditional on its metadata.resourceVersion; raises StatusError 409 on a race."""


class QuotaExceeded(Exception):
    """The request does not fit; ``error`` is the StatusError to answer with."""

    def __init__(self, error: errors.StatusError):
        self.error = error
        super().__init__(error.message)


def check_quota(attrs: Attributes, rq: dict, delta: quota.ResourceList, obj: dict) -> quota.ResourceList | None:
    """The new status.used of ``rq`` after charging ``delta``, or None if ``rq`` does not concern the request.

    Raises QuotaExceeded with upstream's message when it does not fit (checkRequest)."""
    resource, group = resource_name(attrs), resource_group(attrs)
    if not quota.quota_matches(rq, resource, obj):
        return None
    status = rq.get("status") or {}
    hard = quota.parse_list(status.get("hard"))
    tracked = quota.matching_resources(resource, group, hard)
    if not tracked:
        return None
    name = (rq.get("metadata") or {}).get("name", "")
    why = quota.constraints(resource, group, tracked, obj)
    if why:
        raise QuotaExceeded(forbidden(attrs, f"failed quota: {name}: {why}"))
    used = quota.parse_list(status.get("used"))
    unknown = [r for r in tracked if r not in used]
    if unknown:
        raise QuotaExceeded(forbidden(attrs, f"status unknown for quota: {name}, resources: {','.join(unknown)}"))
    requested = quota.mask(delta, tracked)
    if not any(v != 0 for v in requested.values()):
        return None
    new_used = quota.add(used, requested)
    ok, exceeded = quota.less_than_or_equal(quota.mask(new_used, requested), hard)
    if not ok:
        raise QuotaExceeded(forbidden(attrs, f"exceeded quota: {name}, requested: "
                                             f"{quota.pretty_print(quota.mask(requested, exceeded))}, used: "
                                             f"{quota.pretty_print(quota.mask(used, exceeded))}, limited: "
                                             f"{quota.pretty_print(quota.mask(hard, exceeded))}"))
    return new_used


class ResourceQuota:
    """Admission plugin enforcing and charging ResourceQuotas (see the module docstring)."""

    name = "ResourceQuota"

    def __init__(self, quotas: QuotaAccess):
        self.quotas = quotas
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Check and charge every quota of the namespace that the request uses; raise 403 when one is exceeded."""
        if attrs.operation not in ("create", "update") or attrs.subresource or obj is None or not attrs.namespace:
            return
        if attrs.operation == "update" and old is None:
            return
        quotas = await self.quotas.list(attrs.namespace)
        if not quotas:
            return  # the common case, before any usage is computed
        resource, group = resource_name(attrs), resource_group(attrs)
        delta = quota.usage(resource, group, obj)
        if attrs.operation == "update":
            delta = quota.subtract(delta, quota.usage(resource, group, old))
            if not any(v > 0 for v in delta.values()):
                return  # usage went down or stayed: nothing to check (the controller recounts)
        async with self._locks[attrs.namespace]:
            charges = []
            try:
                for rq in quotas:
                    new_used = check_quota(attrs, rq, delta, obj)
                    if new_used is not None:
                        charges.append((rq, new_used))
                if attrs.dry_run:
                    return  # checked, but a dry run charges nothing (upstream's IsDryRun)
                for rq, new_used in charges:
                    await self._charge(attrs, rq, new_used, delta, obj)
            except QuotaExceeded as e:
                raise e.error from None

    async def _charge(self, attrs: Attributes, rq: dict, new_used: quota.ResourceList,
                      delta: quota.ResourceList, obj: dict) -> None:
        meta = rq.get("metadata") or {}
        for _ in range(MAX_ATTEMPTS):
            status = dict(rq.get("status") or {})
            status["used"] = quota.format_list(new_used)
            try:
                await self.quotas.update_status({**rq, "status": status})
                return
            except errors.StatusError as e:
                if e.code != 409:
                    raise
            fresh = await self.quotas.get(attrs.namespace or "", meta.get("name", ""))
            if fresh is None:
                return  # the quota is gone: nothing to charge
            rq = fresh
            checked = check_quota(attrs, rq, delta, obj)
            if checked is None:
                return
            new_used = checked
        raise errors.StatusError(409, "Conflict", f"Operation cannot be fulfilled on resourcequotas "
                                                  f"\"{meta.get('name', '')}\": too many concurrent writes")
