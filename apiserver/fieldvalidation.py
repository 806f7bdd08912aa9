"""Server-side field validation: the ``fieldValidation=Strict|Warn|Ignore`` query parameter of writes.

Upstream decodes every POST/PUT/PATCH body into the Go type of the
endpoint; JSON keys the type has no field for are dropped, and the
``fieldValidation`` directive decides what the client hears about them
(k8s.io/apiserver ``pkg/endpoints/handlers`` rest.go ``fieldValidation``,
the strict decoding of ``k8s.io/apimachinery/pkg/runtime/serializer/json``
and ``sigs.k8s.io/json``): Strict -> 400 BadRequest ``strict decoding
error: unknown field "spec.replicaz"``; Warn (the default when the
parameter is absent) -> the object is accepted without them and each one
is reported in a ``Warning: 299 - "unknown field \\"spec.replicaz\\""``
response header; Ignore -> silently dropped. Here the "Go type" is the
upstream OpenAPI schema of the kind (apiserver/openapi.py): an object
with ``properties`` knows exactly those keys, ``additionalProperties``
makes a map, an object with neither (RawExtension, FieldsV1) takes
anything. Duplicate JSON keys are not detected (the JSON parser keeps the
last one, as Ignore/Warn do upstream).
"""
from __future__ import annotations

import copy
import logging

from apiserver import errors, openapi

log = logging.getLogger(__name__)

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
DIRECTIVES = (IGNORE, STRICT, WARN)


def directive(value: str | None, *, options_kind: str = "CreateOptions") -> str:
    """The effective directive of a ``fieldValidation`` query value (absent -> Warn, as upstream).

    Raises 422 Invalid for anything but Ignore, Warn, Strict, as upstream's ValidateFieldValidation of the
    request's ``options_kind`` (CreateOptions, UpdateOptions, PatchOptions in group meta.k8s.io).
    """
    if not value:
        return WARN
    if value not in DIRECTIVES:
        cause = errors.Cause("FieldValueNotSupported", f'Unsupported value: "{value}": supported values: "", '
                             f'"{IGNORE}", "{STRICT}", "{WARN}"', "fieldValidation")
        raise errors.StatusError(422, "Invalid", f'{options_kind}.meta.k8s.io "" is invalid: fieldValidation: '
                                 f'{cause.message}', details={"group": "meta.k8s.io", "kind": options_kind,
                                                              "causes": [cause.as_dict()]})
    return value


def unknown_fields(obj, schema_name: str, *, prune: bool = False, patch: bool = False) -> list[str]:
    """Paths of the keys of ``obj`` its schema does not know, in document order
    (``spec.replicaz``, ``spec.template.spec.containers[0].imagez``; map keys are not part of a path, as in
    sigs.k8s.io/json's errors). With ``prune`` those keys are deleted from ``obj`` in place. With ``patch``
    the keys of strategic-merge-patch directives (``$patch``, ``$setElementOrder/...``, ...) are skipped.
    Raises KeyError for an unknown ``schema_name``."""
    defs = openapi.definitions()
    out: list[str] = []
    _walk(obj, defs[schema_name], "", defs, out, prune=prune, patch=patch)
    return out


def _resolve(schema: dict, defs: dict) -> dict:
    # bounded: a chain of references always ends in a definition with content
    for _ in range(32):
        name = openapi.ref_name(schema)
        if name is None or name not in defs:
            return schema
        schema = defs[name]
    return schema


def _walk(value, schema: dict, path: str, defs: dict, out: list[str], *, prune: bool, patch: bool) -> None:
    schema = _resolve(schema, defs)
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for v in value.values():
                    _walk(v, extra, path, defs, out, prune=prune, patch=patch)
            return  # an object with no declared fields (RawExtension, FieldsV1) takes anything
        for key in list(value):
            if patch and key.startswith("$"):
                continue
            sub = f"{path}.{key}" if path else key
            if key not in props:
                out.append(sub)
                if prune:
                    del value[key]
                continue
            _walk(value[key], props[key], sub, defs, out, prune=prune, patch=patch)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _walk(v, items, f"{path}[{i}]", defs, out, prune=prune, patch=patch)


def strict_message(paths: list[str]) -> str:
    """``strict decoding error: unknown field "a", unknown field "b"`` (upstream's joined form)."""
    return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in paths)


def warning_header(message: str) -> str:
    """One RFC 7234 warning value as the apiserver sends it: ``299 - "escaped message"``."""
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def check(body, *, group: str, version: str, kind: str, value: str | None, patch_type: str | None = None,
          operation: str = "create") -> tuple[object, list[str]]:
    """Apply the ``fieldValidation`` directive ``value`` to a request body of the endpoint's ``kind``.

    Returns ``(body, warnings)``: the body without its unknown fields (a copy when something was dropped)
    and the Warning header values to send (Warn only); ``operation`` is create or update (patches are
    told by ``patch_type``, the request's Content-Type). Raises a 400 BadRequest StatusError under Strict
    (message as upstream: create/update ``Deployment in version "v1" cannot be handled as a Deployment:
    strict decoding error: ...``, patch ``strict decoding error: ...``), 422 for a bad directive. Bodies of
    kinds without an upstream schema, non-objects and JSON patches (a list of operations) pass unchanged.
    """
    mode = directive(value, options_kind="CreateOptions" if patch_type is None and operation == "create" else
                     "PatchOptions" if patch_type is not None else "UpdateOptions")
    if not isinstance(body, dict):
        return body, []
    is_patch = patch_type is not None
    if not is_patch:
        # the body names its own type (e.g. a Scale sent to /scale); the endpoint's kind otherwise
        api_version, body_kind = body.get("apiVersion"), body.get("kind")
        if isinstance(api_version, str) and isinstance(body_kind, str):
            g, _, v = api_version.rpartition("/")
            if openapi.definition_for(g, v, body_kind) is not None:
                group, version, kind = g, v, body_kind
    name = openapi.definition_for(group, version, kind)
    if name is None:
        return body, []
    found = unknown_fields(body, name, patch=is_patch)
    if not found:
        return body, []
    if mode == STRICT:
        msg = strict_message(found)
        if not is_patch:
            msg = f'{kind} in version "{version}" cannot be handled as a {kind}: {msg}'
        raise errors.bad_request(msg)
    # our own components should never send what upstream would drop: leave a trace to find them by
    log.info("%s: dropped unknown fields of %s (fieldValidation=%s): %s", kind, name, mode, ", ".join(found))
    pruned = copy.deepcopy(body)
    unknown_fields(pruned, name, prune=True, patch=is_patch)
    warnings = [warning_header(f'unknown field "{p}"') for p in found] if mode == WARN else []
    return pruned, warnings
