"""Strategic merge patch (``application/strategic-merge-patch+json``) with upstream's patch strategies.

Why a module of its own: kubectl apply, kubectl edit/patch and the kubelets
send strategic merge patches, and what they mean depends on the Go struct
tags of k8s.io/api (``patchStrategy:"merge" patchMergeKey:"name"``). This
module mirrors k8s.io/apimachinery/pkg/util/strategicpatch (``mergeMap``,
``mergeSlice``, ``mergePatchIntoOriginal``, ``normalizeElementOrder``) over
the same tags as the official v1.32 OpenAPI schemas carry them
(``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``, read
through apiserver.openapi), with a table of the served kinds' tags
(``TYPES``) when the schemas are not installed: a list whose field has the
``merge`` strategy is merged item by item on its merge key (or as a set for
primitive lists such as finalizers); every other list is replaced.

Directives: ``$patch: replace|delete`` in a map, ``{"$patch": "delete",
<key>: v}`` and ``{"$patch": "replace"}`` items in a list,
``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``,
``$retainKeys``; ``null`` deletes a key. Errors raise
:class:`apiserver.patch.PatchError` with upstream's message.
"""
from __future__ import annotations

import copy
import functools
import logging
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


class StrategicPatchError(ValueError):
    """A strategic merge patch that cannot be applied (apimachinery's mergepatch errors)."""


class Field(NamedTuple):
    """Patch metadata of one struct field: strategy ("merge" or "" = replace), merge key, element/struct type."""

    strategy: str = ""
    key: str = ""
    type: str = ""


def _merge(key: str = "", typ: str = "") -> Field:
    return Field("merge", key, typ)


def _struct(typ: str) -> Field:
    return Field("", "", typ)


# The patchStrategy/patchMergeKey tags of k8s.io/api for the served kinds, by Go type name. Fields not
# listed carry no strategy: their maps merge key by key and their lists are replaced (atomic).
TYPES: dict[str, dict[str, Field]] = {
    "ObjectMeta": {"finalizers": _merge(), "ownerReferences": _merge("uid")},
    "PodTemplateSpec": {"metadata": _struct("ObjectMeta"), "spec": _struct("PodSpec")},
    "PodSpec": {
        "volumes": _merge("name"), "initContainers": _merge("name", "Container"),
        "containers": _merge("name", "Container"), "ephemeralContainers": _merge("name", "Container"),
        "imagePullSecrets": _merge("name"), "hostAliases": _merge("ip"),
        "topologySpreadConstraints": _merge("topologyKey"), "resourceClaims": _merge("name"),
        "schedulingGates": _merge("name"),
    },
    "Container": {"ports": _merge("containerPort"), "env": _merge("name"), "volumeMounts": _merge("mountPath"),
                  "volumeDevices": _merge("devicePath")},
    "PodStatus": {"conditions": _merge("type"), "podIPs": _merge("ip"), "hostIPs": _merge("ip"),
                  "resourceClaimStatuses": _merge("name")},
    "Pod": {"metadata": _struct("ObjectMeta"), "spec": _struct("PodSpec"), "status": _struct("PodStatus")},
    "ServiceSpec": {"ports": _merge("port")},
    "ConditionsStatus": {"conditions": _merge("type")},
    "Service": {"metadata": _struct("ObjectMeta"), "spec": _struct("ServiceSpec"),
                "status": _struct("ConditionsStatus")},
    "NodeSpec": {"podCIDRs": _merge()},
    "NodeStatus": {"conditions": _merge("type"), "addresses": _merge("type")},
    "Node": {"metadata": _struct("ObjectMeta"), "spec": _struct("NodeSpec"), "status": _struct("NodeStatus")},
    "TemplateSpec": {"template": _struct("PodTemplateSpec")},
    "JobTemplateSpec": {"metadata": _struct("ObjectMeta"), "spec": _struct("TemplateSpec")},
    "CronJobSpec": {"jobTemplate": _struct("JobTemplateSpec")},
    "CronJob": {"metadata": _struct("ObjectMeta"), "spec": _struct("CronJobSpec")},
    "ServiceAccount": {"metadata": _struct("ObjectMeta"), "secrets": _merge("name")},
    "Namespace": {"metadata": _struct("ObjectMeta"), "status": _struct("ConditionsStatus")},
    "PodTemplate": {"metadata": _struct("ObjectMeta"), "template": _struct("PodTemplateSpec")},
}
# Workloads: a pod template under spec and conditions merged by type under status.
for _kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"):
    TYPES[_kind] = {"metadata": _struct("ObjectMeta"), "spec": _struct("TemplateSpec"),
                    "status": _struct("ConditionsStatus")}
_OBJECT = {"metadata": _struct("ObjectMeta")}  # any other kind: only ObjectMeta has strategies


class _AnyType(dict):
    """Patch metadata for a document without ``kind`` (tests, embedded objects): every field takes the
    strategy it has in any served type; ``ports`` items pick containerPort or port by what they carry."""

    def get(self, field, default=None):
        for fields in TYPES.values():
            if field in fields and fields[field].strategy:
                return Field(fields[field].strategy, fields[field].key, "$any")
        return Field("", "", "$any")


ANY = _AnyType()

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


OPENAPI = "openapi:"  # Field.type prefix naming an OpenAPI definition


@functools.lru_cache(maxsize=1)
def _definitions() -> dict[str, dict] | None:
    try:
        from apiserver import openapi  # late: openapi pulls in the registry
        return openapi.definitions()
    except (ImportError, OSError, ValueError) as e:
        log.info("no OpenAPI schemas (%s); strategic merge patch uses its own table", e)
        return None


def _ref(schema: dict) -> str:
    ref = schema.get("$ref") or next((s.get("$ref") for s in schema.get("allOf") or [] if s.get("$ref")), "")
    return ref.rsplit("/", 1)[-1] if ref else ""


@functools.lru_cache(maxsize=None)
def openapi_fields(definition: str) -> dict[str, Field]:
    """Patch metadata of a definition's properties from its x-kubernetes-patch-* extensions
    (``io.k8s.api.core.v1.PodSpec`` -> {"containers": Field("merge", "name", "openapi:...Container")})."""
    schema = (_definitions() or {}).get(definition) or {}
    out = {}
    for prop, sub in (schema.get("properties") or {}).items():
        strategies = (sub.get("x-kubernetes-patch-strategy") or "").split(",")
        ref = _ref(sub.get("items") or {}) or _ref(sub)
        out[prop] = Field("merge" if "merge" in strategies else "", sub.get("x-kubernetes-patch-merge-key", ""),
                          OPENAPI + ref if ref else "")
    return out


def schema_of(kind: str | None, api_version: str | None = None) -> dict[str, Field]:
    """The field table of a top-level kind: from its OpenAPI definition when the schemas are
    installed, else from TYPES (only ObjectMeta strategies for kinds in neither); every known
    strategy for a document without kind."""
    if not kind:
        return ANY
    if api_version and _definitions():
        from apiserver import openapi
        group, _, version = api_version.rpartition("/")
        name = openapi.definition_for(group, version, kind)
        if name:
            return openapi_fields(name)
    return TYPES.get(kind, _OBJECT)


def _lookup(schema: dict[str, Field], field: str, items: Any = None) -> tuple[dict[str, Field], Field]:
    meta = schema.get(field, Field())
    if schema is ANY and meta.key == "containerPort" and isinstance(items, list) and any(
            isinstance(i, dict) and "port" in i and "containerPort" not in i for i in items):
        meta = Field("merge", "port", "$any")
    if meta.type == "$any":
        return ANY, meta
    if meta.type.startswith(OPENAPI):
        return openapi_fields(meta.type[len(OPENAPI):]), meta
    return TYPES.get(meta.type, {}), meta


def strategic_merge_patch(original: Any, patch: Any, *, kind: str | None = None,
                          api_version: str | None = None) -> dict:
    """Apply ``patch`` to a copy of ``original`` (dicts as decoded JSON); mirrors strategicpatch.StrategicMergePatch.

    ``kind`` and ``api_version`` pick the patch metadata (default: the
    original's, else the patch's ``kind``/``apiVersion``).
    Raises StrategicPatchError for malformed patches (bad directive, missing
    merge key, ``$setElementOrder`` not matching its list ...).
    """
    if not isinstance(patch, dict):
        raise StrategicPatchError("strategic merge patch must be a JSON object")
    base = copy.deepcopy(original) if isinstance(original, dict) else {}
    kind = kind or base.get("kind") or patch.get("kind")
    api_version = api_version or base.get("apiVersion") or patch.get("apiVersion")
    return _merge_map(base, copy.deepcopy(patch), schema_of(kind, api_version))


def _merge_map(original: dict | None, patch: dict, schema: dict[str, Field]) -> dict:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            patch.pop(DIRECTIVE)
            return _strip(patch)
        if directive == "delete":
            return {}
        raise StrategicPatchError(f"unknown patch type: {directive} in map: {patch}")
    if original is None:
        original = {}
    _retain_keys(original, patch)
    _merge_ordered_lists(original, patch, schema)
    for k, pv in list(patch.items()):
        delete_list = False
        if k.startswith(DELETE_PRIMITIVE):
            delete_list, k = True, k[len(DELETE_PRIMITIVE):]
            if k not in original:
                continue
        elif k.startswith("$"):
            continue
        if pv is None:
            original.pop(k, None)
            continue
        if k not in original:
            if not delete_list:
                original[k] = _strip(pv)
            continue
        ov = original[k]
        if isinstance(ov, dict) and isinstance(pv, dict):
            sub, _ = _lookup(schema, k)
            original[k] = _merge_map(ov, pv, sub)
        elif isinstance(ov, list) and isinstance(pv, list):
            sub, meta = _lookup(schema, k, pv)
            if meta.strategy == "merge":
                original[k] = _merge_slice(ov, pv, sub, meta.key, delete_list=delete_list, field=k)
            elif not delete_list:
                original[k] = _strip(pv)
        elif not delete_list:
            original[k] = _strip(pv)
    return original


def _strip(value: Any) -> Any:
    """A patch value stored as-is, without nulls (IgnoreUnmatchedNulls) or leftover directives."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and DIRECTIVE in v)]
    return value


def _retain_keys(original: dict, patch: dict) -> None:
    """$retainKeys: drop the original's keys not listed, before merging (applyRetainKeysDirective)."""
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise StrategicPatchError(f"invalid patch: $retainKeys must be a list of strings, got {keep!r}")
    for k in list(original):
        if k not in keep:
            del original[k]


def _merge_ordered_lists(original: dict, patch: dict, schema: dict[str, Field]) -> None:
    """$setElementOrder/<list>: merge that list now and order it as told (mergePatchIntoOriginal)."""
    for key in [k for k in patch if k.startswith(SET_ORDER)]:
        order = patch.pop(key)
        field = key[len(SET_ORDER):]
        if not isinstance(order, list):
            raise StrategicPatchError(f"invalid type for {key}: expected a list, got {order!r}")
        sub, meta = _lookup(schema, field, order)
        in_orig, in_patch = field in original, field in patch
        ov, pv = original.get(field), patch.get(field)
        if in_patch and pv is not None and not isinstance(pv, list):
            raise StrategicPatchError(f"invalid type for {field}: expected a list, got {pv!r}")
        _validate_order(pv or [], order, meta.key)
        if not in_orig and not in_patch:
            continue
        if not in_orig:
            merged = _strip(pv) if pv is not None else None
        elif not in_patch:
            merged = ov
        elif pv is None:
            merged = None
        elif meta.strategy == "merge" and isinstance(ov, list):
            merged = _merge_slice(ov, pv, sub, meta.key, field=field, reorder=False)
        else:
            merged = _strip(pv)
        patch.pop(field, None)
        if merged is None:
            original.pop(field, None)
            continue
        patch_items, server_only = _partition(merged, order, meta.key)
        original[field] = _normalize_order(patch_items, server_only, order, ov if isinstance(ov, list) else [],
                                           meta.key)


def _validate_order(patch_list: list, order: list, key: str) -> None:
    """Each non-directive patch item must appear in the order list, in the same relative order."""
    items = [p for p in patch_list if not (isinstance(p, dict) and DIRECTIVE in p)]
    positions = []
    for item in items:
        i = _index(order, item, key)
        if i < 0:
            raise StrategicPatchError(f"error: cannot find {item!r} in $setElementOrder list {order!r}")
        positions.append(i)
    if positions != sorted(positions):
        raise StrategicPatchError(f"the order of the patch list {patch_list!r} doesn't match "
                                  f"$setElementOrder list {order!r}")


def _merge_slice(original: list, patch: list, schema: dict[str, Field], key: str, *, delete_list: bool = False,
                 field: str = "", reorder: bool = True) -> list:
    """mergeSlice: union of primitives, or maps merged on ``key``; then the upstream element order."""
    if not original and not patch:
        return original
    if not _is_map_list(original, patch):
        if delete_list:
            return [x for x in original if x not in patch]
        merged: list = []
        for x in original + patch:
            if x not in merged:
                merged.append(x)
    else:
        if not key:
            raise StrategicPatchError(f"cannot merge lists without merge key for {field}")
        # As upstream, the order is worked out against the lists left after the special elements.
        original, patch = _special_elements(list(original), patch, key)
        merged = _merge_by_key(list(original), patch, schema, key)
    if not reorder:
        return merged
    patch_items, server_only = _partition(merged, patch, key)
    return _normalize_order(patch_items, server_only, patch, original, key)


def _is_map_list(original: list, patch: list) -> bool:
    kinds = {type(x) for x in original + patch}
    if len(kinds) > 1 and dict in kinds:
        raise StrategicPatchError("list items must all be of the same type, got a mix of objects and "
                                  "primitives")
    return kinds == {dict}


def _special_elements(original: list, patch: list, key: str) -> tuple[list, list]:
    """mergeSliceWithSpecialElements: apply ``$patch: delete`` items; ``$patch: replace`` replaces the list."""
    rest, replace = [], False
    for item in patch:
        if not isinstance(item, dict):
            raise StrategicPatchError(f"expected an object in the list, got {item!r}")
        if DIRECTIVE not in item:
            rest.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise StrategicPatchError(f"map: {item} does not contain declared merge key: {key}")
            original = [o for o in original if not (isinstance(o, dict) and o.get(key) == item[key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise StrategicPatchError("merging lists cannot yet be specified in the patch")
        else:
            raise StrategicPatchError(f"unknown patch type: {directive} in map: {item}")
    if replace:
        return [_strip(r) for r in rest], []
    return original, rest


def _merge_by_key(original: list, patch: list, schema: dict[str, Field], key: str) -> list:
    for item in patch:
        if key not in item:
            raise StrategicPatchError(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, o in enumerate(original) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if idx is None:
            original.append(_strip(item))
        else:
            original[idx] = _merge_map(original[idx], item, schema)
    return original


def _index(items: list, value: Any, key: str) -> int:
    for i, item in enumerate(items):
        if key and isinstance(item, dict) and isinstance(value, dict):
            if key in item and item.get(key) == value.get(key):
                return i
        elif item == value:
            return i
    return -1


def _partition(merged: list, ordered: list, key: str) -> tuple[list, list]:
    """Items named by ``ordered`` (the patch or $setElementOrder) vs items only on the server."""
    in_patch, server_only = [], []
    for item in merged:
        (in_patch if _index(ordered, item, key) >= 0 else server_only).append(item)
    return in_patch, server_only


def _sort_like(items: list, order: list, key: str) -> list:
    """normalizeSliceOrder: Go's sort.SliceStable (insertion sort for short lists) with upstream's less()."""
    out = list(items)

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, key)
        if ia >= 0:
            ib = _index(order, b, key)
            if ib >= 0:
                return ia < ib
        return True
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out


def _normalize_order(patch_items: list, server_only: list, patch_order: list, server_order: list,
                     key: str) -> list:
    """normalizeElementOrder + mergeSortedSlice: patch items in patch order, server-only items slotted
    in by their place in the live list."""
    right = _sort_like(patch_items, patch_order, key)
    left = _sort_like(server_only, server_order, key)
    out, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out
