"""JSON merge patches (RFC 7386) and the three-way patch ``apply`` sends.

Mirrors k8s.io/apimachinery/pkg/util/jsonmergepatch.CreateThreeWayJSONMergePatch:
from the last applied configuration (``original``), the new manifest
(``modified``) and the live object (``current``), the patch holds

* deletions: fields in ``original`` that ``modified`` no longer has, as ``null``;
* additions and changes: fields of ``modified`` whose value differs in ``current``.

Fields that only ``current`` has (set by the server or by other writers) are
left alone. One deliberate difference: a list that the server has only
added fields to (``protocol: TCP`` in a port, ``imagePullPolicy`` in a
container) and that the user did not change since the last apply is not
re-sent, so a re-apply of the same manifest is "unchanged" as it is with
kubectl's strategic merge patch. Lists are otherwise replaced whole, as
JSON merge patch requires.
"""
from __future__ import annotations

from typing import Any

_MISSING = object()


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The RFC 7386 patch turning ``original`` into ``modified`` (evanphx/json-patch CreateMergePatch).

    Maps are diffed key by key (removed keys -> ``None``); anything else,
    lists included, is replaced whole. Returns ``{}`` when equal maps.
    """
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return modified
    patch: dict = {}
    for key, new in modified.items():
        old = original.get(key, _MISSING)
        if old is _MISSING:
            patch[key] = new
        elif isinstance(old, dict) and isinstance(new, dict):
            sub = create_merge_patch(old, new)
            if sub:
                patch[key] = sub
        elif old != new or type(old) is not type(new):
            patch[key] = new
    for key in original:
        if key not in modified:
            patch[key] = None
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch, returning a new value (``None`` deletes a key)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _keep_or_delete_nulls(patch: dict, keep_null: bool) -> dict:
    # jsonmergepatch.keepOrDeleteNullInObj: keep only deletions, or only the rest.
    out: dict = {}
    for key, value in patch.items():
        if value is None:
            if keep_null:
                out[key] = None
        elif isinstance(value, dict):
            if not value:
                # An explicitly empty map is a value, not an empty patch.
                if not keep_null:
                    out[key] = value
                continue
            sub = _keep_or_delete_nulls(value, keep_null)
            if sub:
                out[key] = sub
        elif not keep_null:
            out[key] = value
    return out


def _covers(current: Any, wanted: Any) -> bool:
    """True if ``current`` has everything ``wanted`` says (it may have more map keys)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            k in current and _covers(current[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(current, list) and len(current) == len(wanted)
                and all(_covers(c, w) for c, w in zip(current, wanted)))
    return current == wanted and type(current) is type(wanted)


def _add_and_change(original: Any, modified: dict, current: dict) -> dict:
    patch: dict = {}
    orig_map = original if isinstance(original, dict) else {}
    for key, new in modified.items():
        old = current.get(key, _MISSING)
        if old is _MISSING:
            patch[key] = new
        elif isinstance(old, dict) and isinstance(new, dict):
            sub = _add_and_change(orig_map.get(key), new, old)
            if sub:
                patch[key] = sub
        elif isinstance(new, list) and isinstance(old, list):
            unchanged_by_user = orig_map.get(key, _MISSING) == new
            if not (unchanged_by_user and _covers(old, new)) and old != new:
                patch[key] = new
        elif old != new or type(old) is not type(new):
            patch[key] = new
    return patch


def three_way_merge_patch(original: dict | None, modified: dict, current: dict) -> dict:
    """The patch ``apply`` sends for an existing object (``{}`` means unchanged).

    ``original`` is the decoded last-applied configuration (None or {} when
    the live object has none), ``modified`` the new manifest including its
    new last-applied annotation, ``current`` the live object. Mirrors
    CreateThreeWayJSONMergePatch (see the module docstring for lists).
    """
    deletions = _keep_or_delete_nulls(create_merge_patch(original or {}, modified), keep_null=True)
    changes = _keep_or_delete_nulls(_add_and_change(original or {}, modified, current), keep_null=False)
    return _merge(deletions, changes)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
