"""PATCH bodies: JSON merge patch, JSON patch and (a subset of) strategic merge patch.

- ``application/merge-patch+json``: RFC 7386 (evanphx/json-patch MergePatch).
- ``application/json-patch+json``: RFC 6902 add/remove/replace/move/copy/test.
- ``application/strategic-merge-patch+json``: mirrors apimachinery's
  ``strategicpatch`` for what kubectl apply and kubelets send: lists of
  objects are merged by their patch merge key (containers by ``name``,
  container ports by ``containerPort``, conditions by ``type`` ...),
  ``$patch: delete|replace``, ``$setElementOrder/<list>``,
  ``$deleteFromPrimitiveList/<list>`` and ``$retainKeys`` directives; any
  list without a known key is replaced, as a merge patch would.

Errors raise PatchError (-> 400 BadRequest or 422 for a failed ``test``).
"""
from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied; ``message`` says why."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError(f"jsonpatch: path {path!r} not found (missing {p!r})")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise PatchError(f"jsonpatch: path {path!r}: invalid index {p!r}") from None
        else:
            raise PatchError(f"jsonpatch: path {path!r} traverses a non-container")
    return cur


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _container(doc, parts[:-1], path)
    last = parts[-1]
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"jsonpatch: path {path!r} not found") from None


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("jsonpatch: cannot remove the whole document")
    parent = _container(doc, parts[:-1], path)
    last = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)
    except (KeyError, IndexError, ValueError):
        raise PatchError(f"jsonpatch: unable to remove nonexistent key or index: {path!r}") from None


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _container(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
            return doc
        try:
            idx = int(last)
        except ValueError:
            raise PatchError(f"jsonpatch: path {path!r}: invalid index {last!r}") from None
        if replace:
            if not 0 <= idx < len(parent):
                raise PatchError(f"jsonpatch: replace index out of range in {path!r}")
            parent[idx] = value
        else:
            if not 0 <= idx <= len(parent):
                raise PatchError(f"jsonpatch: add index out of range in {path!r}")
            parent.insert(idx, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"jsonpatch: replace operation does not apply: doc is missing key: {path}")
        parent[last] = value
    else:
        raise PatchError(f"jsonpatch: path {path!r} traverses a non-container")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: apply a list of operations to a copy of ``target``."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for n, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"json patch operation {n} must be an object with 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"json patch operation {n} ({kind}) is missing 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"json patch operation {n} ({kind}) is missing 'from'")
            value = _remove(doc, op["from"]) if kind == "move" else copy.deepcopy(_get(doc, op["from"]))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected json patch operation {kind!r}")
    return doc


# Patch merge keys of k8s.io/api types, by field name; a field is merged by the first key present
# in its items (container "ports" use containerPort, service "ports" use port).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "volumes": ("name",), "env": ("name",), "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",), "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"), "conditions": ("type",), "addresses": ("type",),
    "ownerReferences": ("uid",), "taints": ("key",), "hostAliases": ("ip",),
    "podIPs": ("ip",), "hostIPs": ("ip",), "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",), "schedulingGates": ("name",),
}
# Primitive lists whose strategy is "merge" (union) rather than replace.
MERGE_PRIMITIVES = {"finalizers"}


def _merge_key(field: str, items: list) -> str | None:
    for key in MERGE_KEYS.get(field, ()):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to a copy of ``target`` (see module docstring)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    return _smp_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch)


def _smp_map(orig: dict, patch: dict) -> dict:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None:
        raise PatchError(f"unknown patch directive {directive!r}")
    retain = patch.get("$retainKeys")
    orders = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$setElementOrder/")}
    prim_deletes = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$deleteFromPrimitiveList/")}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            orig.pop(k, None)
        elif isinstance(v, dict):
            base = orig.get(k)
            orig[k] = _smp_map(base if isinstance(base, dict) else {}, v)
        elif isinstance(v, list):
            orig[k] = _smp_list(k, orig.get(k), v)
        else:
            orig[k] = v
    for k, values in prim_deletes.items():
        if isinstance(orig.get(k), list):
            orig[k] = [x for x in orig[k] if x not in values]
    for k, order in orders.items():
        if isinstance(orig.get(k), list):
            orig[k] = _reorder(k, orig[k], order)
    if isinstance(retain, list):
        orig = {k: v for k, v in orig.items() if k in retain}
    return orig


def _smp_list(field: str, orig: Any, patch: list) -> list:
    if not isinstance(orig, list):
        orig = []
    if field in MERGE_PRIMITIVES and all(not isinstance(x, (dict, list)) for x in patch):
        return orig + [x for x in patch if x not in orig]
    plain = [p for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return copy.deepcopy(plain)
    key = _merge_key(field, [p for p in patch if isinstance(p, dict) and set(p) != {"$patch"}] or patch)
    if key is None:
        return copy.deepcopy(plain)
    result = list(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map in {field} list is missing merge key {key!r}")
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
            continue
        if idx is None:
            result.append(_smp_map({}, item))
        else:
            result[idx] = _smp_map(result[idx], item)
    return result


def _reorder(field: str, items: list, order: list) -> list:
    if not order:
        return items
    if all(not isinstance(o, dict) for o in order):
        pos = {v: i for i, v in enumerate(order)}
        return sorted(items, key=lambda x: pos.get(x, len(pos)))
    key = _merge_key(field, order)
    if key is None:
        return items
    pos = {o[key]: i for i, o in enumerate(order)}
    # Items not named by the order keep their relative place after the ordered ones, as upstream.
    return sorted(items, key=lambda x: pos.get(x.get(key) if isinstance(x, dict) else None, len(pos)))
