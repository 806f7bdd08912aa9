"""The garbage collector: deletes objects whose owners are all gone.

Mirrors pkg/controller/garbagecollector in its background-propagation role:
`kubectl delete deployment web` (propagationPolicy Background) makes the
apiserver delete only the Deployment; the collector then finds its
ReplicaSets dangling and deletes them, and then their pods. An owner is
looked up by uid in the informers' caches and, when absent there, confirmed
with a GET before anything is deleted (the cache may simply lag).

Owners being deleted with the ``foregroundDeletion`` finalizer get their
dependents deleted first and the finalizer removed when none remain; with
the ``orphan`` finalizer their dependents are released instead.
"""
from __future__ import annotations

import logging

from kubeling.api import resources as res
from kubeling.client import ApiError, Client, Informer, meta_key, split_key
from controllers.controller_utils import BaseController

log = logging.getLogger(__name__)

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"


def _refs(obj: dict) -> list[dict]:
    return (obj.get("metadata") or {}).get("ownerReferences") or []


class GarbageCollector(BaseController):
    """Watches the given resources (plural -> Informer) and collects their orphans.

    Work-queue items are ``<plural>:<namespace>/<name>``.
    """

    name = "garbagecollector"

    def __init__(self, client: Client, informers: dict[str, Informer]):
        super().__init__(client, informers.values())
        self.monitors = informers
        self.uid_index: dict[str, tuple[str, str]] = {}
        self.dependents: dict[str, set[tuple[str, str]]] = {}
        self._owners_of: dict[tuple[str, str], set[str]] = {}
        for plural, inf in informers.items():
            inf.add_handlers(on_add=lambda o, p=plural: self._observe(p, o),
                             on_update=lambda old, new, p=plural: self._observe(p, new),
                             on_delete=lambda o, p=plural: self._forget(p, o))

    # -- the graph ------------------------------------------------------------------------
    def _observe(self, plural: str, obj: dict) -> None:
        node = (plural, meta_key(obj))
        meta = obj.get("metadata") or {}
        if meta.get("uid"):
            self.uid_index[meta["uid"]] = node
        owners = {r.get("uid") for r in _refs(obj) if r.get("uid")}
        for uid in self._owners_of.get(node, set()) - owners:
            self.dependents.get(uid, set()).discard(node)
        for uid in owners:
            self.dependents.setdefault(uid, set()).add(node)
        self._owners_of[node] = owners
        if owners or (meta.get("deletionTimestamp") and
                      {FOREGROUND_FINALIZER, ORPHAN_FINALIZER} & set(meta.get("finalizers") or [])):
            self.queue.add(f"{plural}:{node[1]}")

    def _forget(self, plural: str, obj: dict) -> None:
        node = (plural, meta_key(obj))
        uid = (obj.get("metadata") or {}).get("uid")
        if uid and self.uid_index.get(uid) == node:
            del self.uid_index[uid]
        for owner_uid in self._owners_of.pop(node, set()):
            self.dependents.get(owner_uid, set()).discard(node)
            # An owner waiting for its dependents (foreground) may be done now.
            if owner_uid in self.uid_index:
                p, k = self.uid_index[owner_uid]
                self.queue.add(f"{p}:{k}")
        # Its dependents may now be dangling (they leave the index when they go themselves).
        for dep_plural, dep_key in list(self.dependents.get(uid, ())) if uid else ():
            self.queue.add(f"{dep_plural}:{dep_key}")

    async def on_synced(self) -> None:
        """Enqueue every cached object that has ownerReferences, as ``plural:namespace/name`` items."""
        for plural, inf in self.monitors.items():
            for obj in inf.lister.list():
                if _refs(obj):
                    self.queue.add(f"{plural}:{meta_key(obj)}")

    # -- reconcile ------------------------------------------------------------------------
    async def sync(self, item: str) -> None:
        """Handle one ``plural:namespace/name`` item (mirrors GarbageCollector.attemptToDeleteItem): finish orphan/foreground
        deletion of a deleting owner, else delete a dependent whose owners are all gone or drop its dangling refs.
        """
        plural, key = item.split(":", 1)
        ns, name = split_key(key)
        obj = self.monitors[plural].lister.get(name, ns)
        if obj is None:
            return
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if ORPHAN_FINALIZER in finalizers:
                await self._orphan_dependents(obj)
                await self._remove_finalizer(plural, obj, ORPHAN_FINALIZER)
            elif FOREGROUND_FINALIZER in finalizers:
                await self._delete_dependents_foreground(plural, obj)
            return
        refs = _refs(obj)
        if not refs:
            return
        absent, waiting = [], []
        for ref in refs:
            state = await self._owner_state(ref, ns)
            if state == "absent":
                absent.append(ref)
            elif state == "foreground" and ref.get("blockOwnerDeletion"):
                waiting.append(ref)
        if len(absent) == len(refs):
            log.info("deleting %s %s: all owners are gone", plural, key)
            await self._delete(plural, obj, "Background")
        elif absent:
            gone = {r.get("uid") for r in absent}
            keep = [r for r in refs if r.get("uid") not in gone]
            await self.client.patch(plural, name, {"metadata": {"ownerReferences": keep}}, namespace=ns)
        elif waiting and len(waiting) + len(absent) == len(refs):
            await self._delete(plural, obj, "Foreground")

    async def _owner_state(self, ref: dict, namespace: str | None) -> str:
        """"present", "foreground" (being deleted, waiting for dependents) or "absent"."""
        uid = ref.get("uid")
        node = self.uid_index.get(uid) if uid else None
        if node is not None:
            plural, key = node
            o_ns, o_name = split_key(key)
            owner = self.monitors[plural].lister.get(o_name, o_ns)
        else:
            try:
                resource = res.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            except KeyError:
                return "present"  # a kind we cannot look up: never delete on a guess
            try:
                owner = await self.client.get(resource, ref.get("name", ""),
                                              namespace=namespace if resource.namespaced else None)
            except ApiError as e:
                if e.code == 404:
                    return "absent"
                raise
            if uid and owner["metadata"].get("uid") != uid:
                return "absent"
        if owner is None:
            return "present"
        ometa = owner.get("metadata") or {}
        if ometa.get("deletionTimestamp") and FOREGROUND_FINALIZER in (ometa.get("finalizers") or []):
            return "foreground"
        return "present"

    async def _delete(self, plural: str, obj: dict, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self.client.delete(plural, meta["name"], namespace=meta.get("namespace"),
                                     propagation_policy=policy,
                                     preconditions={"uid": meta["uid"]} if meta.get("uid") else None)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _remove_finalizer(self, plural: str, obj: dict, finalizer: str) -> None:
        meta = obj["metadata"]
        rest = [f for f in meta.get("finalizers") or [] if f != finalizer]
        try:
            await self.client.patch(plural, meta["name"], {"metadata": {"finalizers": rest or None}},
                                    namespace=meta.get("namespace"))
        except ApiError as e:
            if e.code != 404:
                raise

    def _dependent_objects(self, uid: str) -> list[tuple[str, dict]]:
        out = []
        for plural, key in sorted(self.dependents.get(uid, set())):
            ns, name = split_key(key)
            dep = self.monitors[plural].lister.get(name, ns)
            if dep is not None and any(r.get("uid") == uid for r in _refs(dep)):
                out.append((plural, dep))
        return out

    async def _delete_dependents_foreground(self, plural: str, owner: dict) -> None:
        uid = owner["metadata"].get("uid", "")
        deps = self._dependent_objects(uid)
        if not deps:
            await self._remove_finalizer(plural, owner, FOREGROUND_FINALIZER)
            return
        for dep_plural, dep in deps:
            if not dep["metadata"].get("deletionTimestamp"):
                blocking = any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in _refs(dep))
                await self._delete(dep_plural, dep, "Foreground" if blocking else "Background")

    async def _orphan_dependents(self, owner: dict) -> None:
        uid = owner["metadata"].get("uid", "")
        for dep_plural, dep in self._dependent_objects(uid):
            keep = [r for r in _refs(dep) if r.get("uid") != uid]
            try:
                await self.client.patch(dep_plural, dep["metadata"]["name"],
                                        {"metadata": {"ownerReferences": keep or None}},
                                        namespace=dep["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
