"""The namespace controller: empties a terminating namespace, then lets it go.

Mirrors pkg/controller/namespace (namespaced_resources_deleter.go): when a
Namespace has a deletionTimestamp and still carries the ``kubernetes``
finalizer in spec.finalizers, every namespaced object in it is deleted; once
nothing is left the finalizer is removed through the ``finalize``
subresource, and the apiserver then removes the Namespace itself.
"""
from __future__ import annotations

import logging

from kubeling.api import resources as res
from kubeling.client import ApiError, Client, Informer, deep_copy
from controllers.controller_utils import BaseController

log = logging.getLogger(__name__)

FINALIZER_KUBERNETES = "kubernetes"
RECHECK_DELAY = 1.0


class NamespaceController(BaseController):
    """Reconciles terminating Namespaces; keys are namespace names."""

    name = "namespace"

    def __init__(self, client: Client, ns_informer: Informer):
        super().__init__(client, [ns_informer])
        self.ns_lister = ns_informer.lister
        ns_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))

    async def sync(self, name: str) -> None:
        """Finish deleting namespace ``name`` (mirrors NamespaceController.syncNamespaceFromKey): delete its objects,
        recheck after RECHECK_DELAY while some remain, then drop the ``kubernetes`` finalizer via ``/finalize``.
        """
        ns = self.ns_lister.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER_KUBERNETES not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        # The cache may be stale (a namespace re-created, or brought back by a restore): as
        # upstream's deleter, act only on the live object, and only on the same one (uid).
        try:
            live = await self.client.get("namespaces", name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if not live["metadata"].get("deletionTimestamp") or \
                live["metadata"].get("uid") != ns["metadata"].get("uid"):
            return
        remaining = 0
        for resource in res.RESOURCES:
            if not resource.namespaced:
                continue
            try:
                items = (await self.client.list(resource, namespace=name)).get("items") or []
            except ApiError as e:
                if e.code in (404, 405):
                    continue  # not served by this apiserver
                raise
            for item in items:
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(resource, item["metadata"]["name"], namespace=name,
                                             propagation_policy="Background")
                except ApiError as e:
                    if e.code != 404:
                        raise
        if remaining:
            log.info("namespace %s: %d object(s) still being deleted", name, remaining)
            self.queue.add_after(name, RECHECK_DELAY)
            return
        obj = deep_copy(ns)
        obj["spec"]["finalizers"] = [f for f in obj["spec"].get("finalizers") or [] if f != FINALIZER_KUBERNETES]
        try:
            await self.client.replace("namespaces", obj, subresource="finalize")
        except ApiError as e:
            if e.code != 404:
                raise
