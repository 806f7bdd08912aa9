"""The resourcequota controller: keeps every ResourceQuota's status.hard and status.used true.

Mirrors pkg/controller/resourcequota (resource_quota_controller.go and
replenishment_controller.go): a quota is synced when it is added, when its
spec.hard changes or its status does not cover spec.hard, when an object
it counts is deleted (or a pod becomes terminal, or a Service changes
type), and every ``--resource-quota-sync-period`` for all quotas. A sync
recounts the usage of the quota's namespace from the informer caches with
the same evaluators the ResourceQuota admission plugin charges with
(kubeling.api.quota), and writes ``status.hard`` = spec.hard and
``status.used`` through the status subresource (a conditional PUT: a race
with an admission charge is a 409 and the sync is retried).

Resources counted with ``count/<resource>.<group>`` beyond the informers
given are read with a live LIST (upstream uses discovery-driven generic
informers for them).
"""
from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

from kubeling.api import quota
from kubeling.api import resources as res
from kubeling.client import Client, Informer
from controllers.controller_utils import BaseController, write_status

log = logging.getLogger(__name__)

RESOURCE_QUOTA_SYNC_PERIOD = 300.0  # kube-controller-manager's --resource-quota-sync-period default (5m)
# Resources whose informers the controller watches for replenishment (upstream's default evaluators),
# limited to what kubeling serves.
REPLENISHED = tuple(p for p in ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims",
                                "replicationcontrollers") if p in {r.plural for r in res.RESOURCES})


class ResourceQuotaController(BaseController):
    """Recalculates ResourceQuota status; keys are ``namespace/name`` of quotas.

    ``informers`` maps plural -> Informer of the core resources in REPLENISHED
    (missing ones are listed live); ``sync_period`` is in seconds.
    """

    name = "resourcequota"

    def __init__(self, client: Client, quota_informer: Informer, informers: dict[str, Informer], *,
                 sync_period: float = RESOURCE_QUOTA_SYNC_PERIOD):
        super().__init__(client, [quota_informer, *informers.values()])
        self.quota_lister = quota_informer.lister
        self.listers = {plural: inf.lister for plural, inf in informers.items()}
        self.sync_period = sync_period
        quota_informer.add_handlers(on_add=self.enqueue, on_update=self._quota_updated)
        for plural, inf in informers.items():
            inf.add_handlers(on_delete=lambda obj, p=plural: self._replenish(p, obj),
                             on_update=lambda old, new, p=plural: self._object_updated(p, old, new))

    def _quota_updated(self, old: dict, new: dict) -> None:
        hard = (new.get("spec") or {}).get("hard") or {}
        status = new.get("status") or {}
        if (old.get("spec") or {}).get("hard") != hard or (status.get("hard") or {}) != hard \
                or set(hard) - set(status.get("used") or {}):
            self.enqueue(new)

    def _object_updated(self, plural: str, old: dict, new: dict) -> None:
        if plural == "pods" and quota.pod_counts(old) and not quota.pod_counts(new):
            self._replenish(plural, new)
        elif plural == "services" and (old.get("spec") or {}).get("type") != (new.get("spec") or {}).get("type"):
            self._replenish(plural, new)

    def _replenish(self, plural: str, obj: dict) -> None:
        """Queue the quotas of ``obj``'s namespace that count ``plural``."""
        ns = (obj.get("metadata") or {}).get("namespace")
        for rq in self.quota_lister.list(ns):
            if ("", plural) in quota.tracked_resources(((rq.get("spec") or {}).get("hard") or {}).keys()):
                self.enqueue(rq)

    async def run(self, *, workers: int = 1) -> None:
        """Run the workers and the periodic full resync until cancelled."""
        resync = asyncio.ensure_future(self._resync_loop())
        try:
            await super().run(workers=workers)
        finally:
            resync.cancel()
            await asyncio.gather(resync, return_exceptions=True)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for rq in self.quota_lister.list():
                self.enqueue(rq)

    async def _objects(self, group: str, plural: str, namespace: str) -> list[dict]:
        if not group and plural in self.listers:
            return self.listers[plural].list(namespace)
        try:
            r = res.for_name(f"{plural}.{group}" if group else plural)
        except (KeyError, ValueError):
            return []  # a resource kubeling does not serve counts nothing
        return (await self.client.list(r, namespace=namespace)).get("items") or []

    async def calculate_usage(self, rq: dict) -> dict[str, str]:
        """status.used of ``rq``: every spec.hard resource, counted over the namespace's objects."""
        ns = rq["metadata"].get("namespace")
        hard = ((rq.get("spec") or {}).get("hard") or {})
        used: quota.ResourceList = {name: Fraction(0) for name in hard}
        for group, plural in sorted(quota.tracked_resources(hard)):
            names = quota.matching_resources(plural, group, hard)
            for obj in await self._objects(group, plural, ns):
                if quota.quota_matches(rq, plural, obj):
                    used = quota.add(used, quota.mask(quota.usage(plural, group, obj), names))
        return quota.format_list(used)

    async def sync(self, key: str) -> None:
        """Recount one quota and write its status if it changed. Raises ApiError (409 on a race) to retry."""
        ns, _, name = key.rpartition("/")
        rq = self.quota_lister.get(name, ns or None)
        if rq is None:
            return
        hard = dict((rq.get("spec") or {}).get("hard") or {})
        await write_status(self.client, "resourcequotas", rq, {"hard": hard, "used": await self.calculate_usage(rq)})
