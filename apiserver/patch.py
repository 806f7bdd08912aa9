"""PATCH bodies: JSON merge patch, JSON patch and (a subset of) strategic merge patch.

- ``application/merge-patch+json``: RFC 7386 (evanphx/json-patch MergePatch).
- ``application/json-patch+json``: RFC 6902 add/remove/replace/move/copy/test.
- ``application/strategic-merge-patch+json``: apiserver.strategicpatch
  (upstream's patch strategies and merge keys per kind, and directives).

Errors raise PatchError (-> 400 BadRequest or 422 for a failed ``test``).
"""
from __future__ import annotations

import copy
from typing import Any

from apiserver import strategicpatch


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


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to a copy of ``target`` with the patch strategies of its kind.

    Delegates to apiserver.strategicpatch (mirrors apimachinery's
    strategicpatch.StrategicMergePatch); raises PatchError for a malformed patch.
    """
    try:
        return strategicpatch.strategic_merge_patch(target, patch)
    except strategicpatch.StrategicPatchError as e:
        raise PatchError(str(e)) from None
