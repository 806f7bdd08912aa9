"""The generic registry: create/get/list/watch/update/patch/delete of any resource over etcd.

Mirrors k8s.io/apiserver's ``pkg/registry/generic/registry.Store`` with
``rest.BeforeCreate``/``BeforeUpdate``/``BeforeDelete``: system metadata
(uid, creationTimestamp, generation, resourceVersion), generateName,
namespace existence, optimistic concurrency on metadata.resourceVersion,
finalizers and graceful deletion, all driven by the per-resource Strategy.
Reads of lists and watches go to the watch cache (storage/cacher.py);
single-object reads and every write go to etcd.
"""
from __future__ import annotations

import base64
import copy
import datetime
import json
import random
import uuid
from typing import Awaitable, Callable

from apiserver import errors
from apiserver.admission import AdmissionChain, Attributes
from apiserver.authn import APISERVER_USER, UserInfo
from apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from apiserver.registry.rest import Strategy, required, validate_labels, validate_name
from apiserver.storage import cacher as cachemod
from apiserver.storage import etcd3
from kubeling.api import selectors

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery util/rand: no vowels, no confusable digits
MAX_RETRIES = 8

NamespaceGetter = Callable[[str], Awaitable["dict | None"]]


def now_rfc3339(*, plus_seconds: int = 0) -> str:
    """UTC timestamp as Kubernetes writes it: ``2024-05-01T12:00:00Z`` (second precision)."""
    t = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return (t + datetime.timedelta(seconds=plus_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_nulls(value):
    """``value`` without the object keys whose value is JSON null, recursively (lists keep their items).

    Upstream decodes a body into Go structs, where a null field is the zero
    value and omitempty leaves it out when the object is written back; so
    ``{"creationTimestamp": null}`` in a pod template (what kubectl's
    ``rollout undo`` sends) and no key at all are the same object.
    """
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def generate_name(base: str) -> str:
    """``base`` + 5 random characters, as names.SimpleNameGenerator (base cut to 58 chars)."""
    return base[:58] + "".join(random.choice(GENERATE_ALPHABET) for _ in range(5))


def _rv_int(rv: str) -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except (TypeError, ValueError):
        raise errors.bad_request(f'invalid resource version "{rv}"') from None


SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
               "generation", "name", "namespace")



ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def gc_finalizers(finalizers: list[str], options: dict, *, default_policy: str | None = None) -> list[str]:
    """The object's finalizers after a DELETE with ``options`` (DeleteOptions): propagationPolicy
    Orphan adds ``orphan``, Foreground adds ``foregroundDeletion``, Background removes both;
    the deprecated orphanDependents bool counts as Orphan / Background; with neither, the
    kind's default policy applies and existing finalizers stay. Mirrors the generic registry's
    deletionFinalizersForGarbageCollection."""
    policy = options.get("propagationPolicy")
    if policy is None and isinstance(options.get("orphanDependents"), bool):
        policy = "Orphan" if options["orphanDependents"] else "Background"
    if policy is None:
        if ORPHAN_FINALIZER in finalizers or FOREGROUND_FINALIZER in finalizers:
            return list(finalizers)
        policy = default_policy
    out = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if policy == "Orphan":
        out.append(ORPHAN_FINALIZER)
    elif policy == "Foreground":
        out.append(FOREGROUND_FINALIZER)
    elif policy != "Background" and policy is not None:
        return list(finalizers)
    return out

class Store:
    """Generic REST storage of one resource.

    ``strategy`` says what is particular to the kind; ``etcd`` is the
    shared Etcd3Store; ``namespace_getter(ns)`` returns the Namespace object
    or None (used to refuse objects in missing or terminating namespaces).
    Methods return JSON dicts and raise errors.StatusError.
    """

    def __init__(self, strategy: Strategy, etcd: etcd3.Etcd3Store, *, namespace_getter: NamespaceGetter,
                 admission: AdmissionChain | None = None, watch_cache_capacity: int = 1024):
        self.strategy = strategy
        self.info = strategy.info
        self.etcd = etcd
        self.cacher = cachemod.Cacher(etcd, self.info.prefix(), capacity=watch_cache_capacity)
        self.namespace_getter = namespace_getter
        self.admission = admission or AdmissionChain()

    # ------------------------------------------------------------------ helpers

    def _not_found(self, name: str) -> errors.StatusError:
        return errors.not_found(self.info.resource, name, group=self.info.group)

    def _decode(self, body, *, kind: str | None = None, api_version: str | None = None) -> dict:
        """Check a request body's type, kind and apiVersion; returns a private copy."""
        kind = kind or self.info.kind
        api_version = api_version or self.info.api_version
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a JSON object ({kind})")
        obj = drop_nulls(body)  # a private copy
        # Group/version first, as upstream's create handler (AcceptsGroupVersion) before the kind.
        if obj.get("apiVersion") and obj["apiVersion"] != api_version:
            raise errors.bad_request(f'the API version in the data ({obj["apiVersion"]}) does not match '
                                     f'the expected API version ({api_version})')
        if obj.get("kind") and obj["kind"] != kind:
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {kind}): "
                                     f"kind {obj['kind']!r} does not match the URL's resource")
        meta = obj.get("metadata")
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion", "metadata")}
        return {"kind": kind, "apiVersion": api_version, "metadata": meta, **rest}

    def _meta_causes(self, obj: dict) -> list:
        meta = obj["metadata"]
        out = validate_name("metadata.name", meta.get("name", ""), self.strategy.name_kind)
        out += validate_labels("metadata.labels", meta.get("labels"))
        ann = meta.get("annotations")
        if ann is not None and (not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())):
            out.append(errors.Cause("FieldValueInvalid", "Invalid value: annotations must be a map of strings",
                                    "metadata.annotations"))
        fin = meta.get("finalizers")
        if fin is not None and (not isinstance(fin, list) or not all(isinstance(f, str) for f in fin)):
            out.append(errors.Cause("FieldValueInvalid", "Invalid value: finalizers must be a list of strings",
                                    "metadata.finalizers"))
        return out

    def _raise_invalid(self, obj: dict, causes: list) -> None:
        if causes:
            raise errors.invalid(self.info.kind, obj["metadata"].get("name", ""), causes, group=self.info.group)

    async def _check_namespace(self, ns: str, name: str, *, creating: bool) -> None:
        if not self.info.namespaced:
            return
        nsobj = await self.namespace_getter(ns)
        if nsobj is None:
            raise errors.not_found("namespaces", ns)
        if creating and (nsobj.get("metadata") or {}).get("deletionTimestamp"):
            raise errors.forbidden(self.info.resource, name, f"unable to create new content in namespace {ns} "
                                   f"because it is being terminated", group=self.info.group)

    def _key(self, ns: str | None, name: str) -> str:
        return self.info.key(ns, name)

    def predicate(self, label_selector: str | None, field_selector: str | None) -> cachemod.Predicate:
        """Filter of ``?labelSelector=&fieldSelector=``; raises 400 for bad syntax or unknown fields."""
        try:
            ls = selectors.parse_label_selector(label_selector)
            fs = selectors.parse_field_selector(field_selector)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        unknown = fs.fields() - self.strategy.supported_fields()
        if unknown:
            raise errors.bad_request(f'field label not supported: {sorted(unknown)[0]}')
        if ls.empty() and fs.empty():
            return lambda obj: True
        fields = self.strategy.fields

        def pred(obj: dict) -> bool:
            return ls.matches((obj.get("metadata") or {}).get("labels")) and (fs.empty() or fs.matches(fields(obj)))
        return pred

    # ------------------------------------------------------------------ reads

    async def get(self, ns: str | None, name: str) -> dict:
        """The object (linearizable etcd read); 404 when absent."""
        kv = await self.etcd.get(self._key(ns, name))
        if kv is None:
            raise self._not_found(name)
        return kv.obj

    async def list(self, ns: str | None, *, label_selector: str | None = None, field_selector: str | None = None,
                   resource_version: str | None = None, limit: int = 0, continue_token: str | None = None) -> dict:
        """A ``<Kind>List`` with metadata.resourceVersion, served from the watch cache.

        resourceVersion "" (consistent) waits for the cache to catch up with
        etcd (falling back to an etcd read), "0" takes the cache as is, "N"
        waits until the cache has seen N (504 after 3 s). ``limit`` and
        ``continue_token`` page through the key-ordered result.
        """
        pred = self.predicate(label_selector, field_selector)
        prefix = self.info.prefix(ns)
        start_after = None
        if continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start_after = tok["start"]
                resource_version = "0"
            except Exception:
                raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                         "(version meta.k8s.io/v1)") from None
        try:
            await self.cacher.wait_ready(timeout=10.0)
        except cachemod.NotReady as e:
            raise errors.StatusError(503, "ServiceUnavailable", str(e)) from None
        pairs: list[tuple[str, dict]] | None = None
        if not resource_version:
            if not await self.cacher.wait_fresh():
                kvs, rev = await self.etcd.list(prefix)
                pairs = [(kv.key, kv.obj) for kv in kvs if pred(kv.obj)]
        elif resource_version != "0":
            want = _rv_int(resource_version)
            if not await self.cacher.wait_until(want, 3.0):
                raise errors.timeout(f"Too large resource version: {want}, current: {self.cacher.revision}")
        if pairs is None:
            pairs, rev = self.cacher.list(prefix, pred)
        meta: dict = {"resourceVersion": str(rev)}
        if start_after is not None:
            pairs = [p for p in pairs if p[0] > start_after]
        if limit and limit > 0 and len(pairs) > limit:
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": rev, "start": pairs[limit - 1][0]}).encode()).decode()
            meta["remainingItemCount"] = len(pairs) - limit
            pairs = pairs[:limit]
        return {"kind": self.info.list_kind, "apiVersion": self.info.api_version, "metadata": meta,
                "items": [o for _, o in pairs]}

    def watch(self, ns: str | None, *, label_selector: str | None = None, field_selector: str | None = None,
              resource_version: str | None = None) -> cachemod.CacheWatcher:
        """A CacheWatcher of the selection; 410 Expired when ``resource_version`` is too old."""
        pred = self.predicate(label_selector, field_selector)
        rv = None if resource_version in (None, "", "0") else _rv_int(resource_version)
        if not self.cacher.ready.is_set():
            raise errors.StatusError(503, "ServiceUnavailable", f"watch cache of {self.info.resource} is not ready")
        try:
            return self.cacher.watch(self.info.prefix(ns), pred, resource_version=rv)
        except cachemod.TooOld as e:
            raise errors.gone(str(e)) from None

    # ------------------------------------------------------------------ create

    async def create(self, ns: str | None, body, *, dry_run: bool = False, user: UserInfo = APISERVER_USER) -> dict:
        """Create from a request body; returns the stored object (201 for the caller)."""
        obj = self._decode(body)
        meta = obj["metadata"]
        if self.info.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name(meta["generateName"])
        if not meta.get("name"):
            self._raise_invalid(obj, [errors.Cause("FieldValueRequired",
                                                   "Required value: name or generateName is required",
                                                   "metadata.name")])
        await self._check_namespace(ns, meta["name"], creating=True)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if self.strategy.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        self.strategy.prepare_for_create(obj)
        self.strategy.default(obj)
        self._raise_invalid(obj, self._meta_causes(obj) + self.strategy.validate(obj))
        await self.admission.admit(Attributes("create", self.info, ns, meta["name"], None, user, dry_run), obj,
                                   None)
        ctx: dict = {}
        key = self._key(ns, meta["name"])
        for _ in range(MAX_RETRIES):
            extra = await self.strategy.before_create(self, obj, ctx)
            if dry_run:
                return obj
            try:
                return await self.etcd.create(key, obj, extra=extra)
            except etcd3.KeyExists:
                if not generated:
                    raise errors.already_exists(self.info.resource, meta["name"], group=self.info.group) from None
                meta["name"] = generate_name(meta["generateName"])
                key = self._key(ns, meta["name"])
            except etcd3.CompareFailed as e:
                self.strategy.on_create_compare_failed(obj, e.key, ctx)
        raise errors.internal(f"could not create {self.info.resource} after {MAX_RETRIES} attempts")

    # ------------------------------------------------------------------ update

    def _finish_update(self, new: dict, old: dict, *, subresource: str | None) -> dict:
        """Apply the strategy's update rules to ``new`` (a private copy) against ``old``."""
        nmeta, ometa = new["metadata"], old["metadata"]
        if subresource == "status":
            new = self.strategy.prepare_for_status_update(new, old)
            nmeta = new["metadata"]
        elif subresource == "ephemeralcontainers":
            new = self.strategy.prepare_for_ephemeral_containers_update(new, old)
            nmeta = new["metadata"]
        else:
            for k in SYSTEM_META:
                if k in ometa:
                    nmeta[k] = ometa[k]
                else:
                    nmeta.pop(k, None)
            self.strategy.prepare_for_update(new, old)
            self.strategy.default(new)
            if self.strategy.tracks_generation and new.get("spec") != old.get("spec"):
                nmeta["generation"] = int(ometa.get("generation") or 0) + 1
        nmeta["resourceVersion"] = ometa.get("resourceVersion")
        causes = self._meta_causes(new) + self.strategy.validate_update(new, old)
        self._raise_invalid(new, causes)
        return new

    async def update(self, ns: str | None, name: str, body, *, subresource: str | None = None,
                     dry_run: bool = False, user: UserInfo = APISERVER_USER) -> tuple[dict, bool]:
        """PUT: replace the object (or its status); returns (object, created).

        A body with metadata.resourceVersion must match the stored one
        (409 Conflict otherwise); without it the update is unconditional.
        """
        obj = self._decode(body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the "
                                     f"URL ({name})")
        if self.info.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        meta["name"] = name
        rv = meta.get("resourceVersion") or ""
        if rv:
            _rv_int(rv)
        elif not self.strategy.allow_unconditional_update:
            self._raise_invalid(obj, [required("metadata.resourceVersion")])
        for _ in range(MAX_RETRIES):
            kv = await self.etcd.get(self._key(ns, name))
            if kv is None:
                if self.strategy.allow_create_on_update and subresource is None:
                    return await self.create(ns, body, dry_run=dry_run, user=user), True
                raise self._not_found(name)
            out = await self._write_update(kv, lambda old: copy.deepcopy(obj), subresource=subresource,
                                           conditional=bool(rv), dry_run=dry_run, user=user)
            if out is not None:
                return out, False
        raise errors.optimistic_lock(self.info.resource, name, group=self.info.group)

    async def _write_update(self, kv: etcd3.KeyValue, mutate: Callable[[dict], dict], *, subresource: str | None,
                            conditional: bool, dry_run: bool, user: UserInfo, raw: bool = False) -> dict | None:
        """One optimistic write; returns the result, or None to retry after a lost race."""
        old = kv.obj
        name = old["metadata"]["name"]
        new = mutate(copy.deepcopy(old))
        new_rv = (new.get("metadata") or {}).get("resourceVersion") or ""
        if conditional and new_rv != old["metadata"].get("resourceVersion"):
            raise errors.optimistic_lock(self.info.resource, name, group=self.info.group)
        if not raw:
            new = self._finish_update(new, old, subresource=subresource)
            await self.admission.admit(Attributes("update", self.info, old["metadata"].get("namespace"), name,
                                                  subresource, user, dry_run), new, old)
        if new == old and not kv.stale:
            return old  # no-op updates do not write (and so do not wake watchers), unless under an old key
        if dry_run:
            return new
        nmeta = new["metadata"]
        try:
            if nmeta.get("deletionTimestamp") and not nmeta.get("finalizers") \
                    and not nmeta.get("deletionGracePeriodSeconds"):
                # the last finalizer is gone: the object goes, as registry.Store.Update's deleteObj path
                await self.etcd.delete(kv.key, expected_revision=kv.mod_revision,
                                       extra=self.strategy.delete_extras(new))
                return new
            return await self.etcd.update(kv.key, new, expected_revision=kv.mod_revision)
        except etcd3.KeyNotFound:
            raise self._not_found(name) from None
        except etcd3.Conflict:
            if conditional:
                raise errors.optimistic_lock(self.info.resource, name, group=self.info.group) from None
            return None

    async def guaranteed_update(self, ns: str | None, name: str, mutate: Callable[[dict], dict], *,
                                subresource: str | None = None, dry_run: bool = False, user: UserInfo = APISERVER_USER,
                                raw: bool = False) -> dict:
        """Read-modify-write with retries on lost races (storage.GuaranteedUpdate).

        ``mutate(copy_of_current) -> new`` may raise StatusError; a result
        whose metadata.resourceVersion differs from the current one is a 409.
        ``raw`` skips the strategy (internal writes such as /binding).
        """
        for _ in range(MAX_RETRIES):
            kv = await self.etcd.get(self._key(ns, name))
            if kv is None:
                raise self._not_found(name)
            out = await self._write_update(kv, mutate, subresource=subresource, conditional=True,
                                           dry_run=dry_run, user=user, raw=raw)
            if out is not None:
                return out
        raise errors.optimistic_lock(self.info.resource, name, group=self.info.group)

    async def patch(self, ns: str | None, name: str, content_type: str, patch, *, subresource: str | None = None,
                    dry_run: bool = False, user: UserInfo = APISERVER_USER) -> dict:
        """PATCH with a merge, JSON or strategic merge patch (415 for other types)."""
        apply = patch_function(content_type)

        def mutate(current: dict) -> dict:
            try:
                out = apply(current, patch)
            except PatchError as e:
                raise errors.StatusError(422, "Invalid", str(e)) if "test" in str(e) else errors.bad_request(str(e))
            if not isinstance(out, dict) or not isinstance(out.get("metadata", {}), dict):
                raise errors.bad_request("the patch result is not an object")
            out = drop_nulls(out)
            out.setdefault("metadata", {})
            out["kind"], out["apiVersion"] = current["kind"], current["apiVersion"]
            return out
        return await self.guaranteed_update(ns, name, mutate, subresource=subresource, dry_run=dry_run, user=user)

    # ------------------------------------------------------------------ delete

    async def delete(self, ns: str | None, name: str, options: dict | None = None, *, dry_run: bool = False,
                     user: UserInfo = APISERVER_USER) -> dict:
        """DELETE with DeleteOptions; returns the object or a Status (200 for the caller).

        Objects with finalizers, and pods in graceful deletion, get
        deletionTimestamp (and deletionGracePeriodSeconds) and stay; others go
        in one Txn (with their reservations, e.g. a service's ClusterIP).
        """
        options = options or {}
        pre = options.get("preconditions") or {}
        requested = options.get("gracePeriodSeconds")
        if requested is not None and not isinstance(requested, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        for _ in range(MAX_RETRIES):
            kv = await self.etcd.get(self._key(ns, name))
            if kv is None:
                raise self._not_found(name)
            obj = kv.obj
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(self.info.resource, name, f"Precondition failed: UID in precondition: "
                                      f"{pre['uid']}, UID in object meta: {meta.get('uid')}", group=self.info.group)
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(self.info.resource, name, f"Precondition failed: ResourceVersion in "
                                      f"precondition: {pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{meta.get('resourceVersion')}", group=self.info.group)
            await self.admission.admit(Attributes("delete", self.info, ns, name, None, user, dry_run), None, obj)
            grace = self.strategy.grace_period(obj, requested)
            finalizers = gc_finalizers(meta.get("finalizers") or [], options,
                                       default_policy=self.strategy.default_propagation_policy)
            if grace > 0 or finalizers:
                new = copy.deepcopy(obj)
                nmeta = new["metadata"]
                current_grace = nmeta.get("deletionGracePeriodSeconds")
                if nmeta.get("deletionTimestamp") and current_grace is not None and current_grace <= grace \
                        and finalizers == (meta.get("finalizers") or []):
                    return obj  # already being deleted at least as soon
                if finalizers:
                    nmeta["finalizers"] = finalizers
                else:
                    nmeta.pop("finalizers", None)
                if grace > 0:
                    nmeta["deletionTimestamp"] = now_rfc3339(plus_seconds=grace)
                    nmeta["deletionGracePeriodSeconds"] = grace
                else:
                    nmeta.setdefault("deletionTimestamp", now_rfc3339())
                    nmeta["deletionGracePeriodSeconds"] = 0
                if self.strategy.tracks_generation:
                    nmeta["generation"] = int(nmeta.get("generation") or 0) + 1
                if dry_run:
                    return new
                try:
                    return await self.etcd.update(kv.key, new, expected_revision=kv.mod_revision)
                except etcd3.Conflict:
                    continue
                except etcd3.KeyNotFound:
                    raise self._not_found(name) from None
            if dry_run:
                return obj
            try:
                await self.etcd.delete(kv.key, expected_revision=kv.mod_revision,
                                       extra=self.strategy.delete_extras(obj))
            except etcd3.Conflict:
                continue
            except etcd3.KeyNotFound:
                raise self._not_found(name) from None
            if self.strategy.return_deleted_object:
                return obj
            return errors.success(name, self.info.group, self.info.resource, meta.get("uid"))
        raise errors.optimistic_lock(self.info.resource, name, group=self.info.group)

    async def delete_collection(self, ns: str | None, options: dict | None = None, *,
                                label_selector: str | None = None, field_selector: str | None = None,
                                user: UserInfo = APISERVER_USER) -> dict:
        """DELETE on the collection: delete every selected object; returns the list of what was deleted."""
        listed = await self.list(ns, label_selector=label_selector, field_selector=field_selector)
        deleted = []
        for item in listed["items"]:
            m = item["metadata"]
            try:
                deleted.append(await self.delete(m.get("namespace"), m["name"], options, user=user))
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        listed["items"] = [d for d in deleted if d.get("kind") == self.info.kind]
        return listed


def patch_function(content_type: str) -> Callable:
    """The apply function for a PATCH Content-Type; raises 415 for unsupported ones."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct == "application/merge-patch+json":
        return merge_patch
    if ct == "application/json-patch+json":
        return json_patch
    if ct == "application/strategic-merge-patch+json":
        return strategic_merge_patch
    raise errors.unsupported_media_type(content_type)
