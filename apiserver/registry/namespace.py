"""Namespace deletion: Terminating phase, then removal of the namespace's content, then the namespace.

Mirrors what upstream splits between the namespace registry (delete sets
deletionTimestamp and phase Terminating while spec.finalizers holds
"kubernetes") and the namespace controller (deletes every namespaced object,
then finalizes). kubeling has no namespace controller yet, so the apiserver
does the clean-up itself in a background task; the system namespaces may not
be deleted, as NamespaceLifecycle admission forbids.
"""
from __future__ import annotations

import asyncio
import copy
import logging

from apiserver import errors
from apiserver.authn import APISERVER_USER
from apiserver.registry.store import Store, now_rfc3339
from apiserver.storage import etcd3

log = logging.getLogger(__name__)

IMMORTAL = ("default", "kube-system", "kube-public")


class NamespaceStore(Store):
    """The Store of namespaces; ``content_stores`` are the namespaced stores to empty on delete."""

    content_stores: list[Store] = []
    _tasks: set[asyncio.Task]

    async def delete(self, ns, name, options=None, *, dry_run=False, user=APISERVER_USER):
        """Mark the namespace Terminating and start removing its content; returns the namespace (200)."""
        if name in IMMORTAL:
            raise errors.forbidden("namespaces", name, "this namespace may not be deleted")
        for _ in range(8):
            kv = await self.etcd.get(self._key(None, name))
            if kv is None:
                raise self._not_found(name)
            if kv.obj["metadata"].get("deletionTimestamp"):
                return kv.obj
            new = copy.deepcopy(kv.obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return new
            try:
                out = await self.etcd.update(kv.key, new, expected_revision=kv.mod_revision)
            except etcd3.Conflict:
                continue
            if not hasattr(self, "_tasks"):
                self._tasks = set()
            task = asyncio.create_task(self._finalize(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return out
        raise errors.optimistic_lock("namespaces", name)

    async def _finalize(self, name: str) -> None:
        try:
            for store in self.content_stores:
                kvs, _ = await self.etcd.list(store.info.prefix(name))
                for kv in kvs:
                    try:
                        await self.etcd.delete(kv.key, expected_revision=kv.mod_revision,
                                               extra=store.strategy.delete_extras(kv.obj))
                    except etcd3.StorageError:
                        pass  # changed or gone meanwhile; the next pass catches leftovers
            kv = await self.etcd.get(self._key(None, name))
            if kv is not None:
                await self.etcd.delete(kv.key, expected_revision=kv.mod_revision)
        except Exception:
            log.exception("finalizing namespace %s failed", name)
