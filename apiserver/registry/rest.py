"""What the generic registry needs to know about one resource: its names and its strategy.

Mirrors k8s.io/apiserver's ``pkg/registry/rest`` strategy interfaces
(RESTCreateStrategy, RESTUpdateStrategy, RESTDeleteStrategy) as one
``Strategy`` base class: per resource a subclass says whether it is
namespaced, how it is defaulted and validated, which fields a ``/status``
update may change, whether a spec change bumps ``metadata.generation``,
and which fields a field selector may name. The generic Store
(registry/store.py) does everything else the same way for every kind.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from apiserver.errors import Cause
from kubeling.api import selectors
from kubeling.api.resources import Resource

DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                         "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                         "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
                         "([-a-z0-9]*[a-z0-9])?)*')")
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                     "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                     "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                     "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def required(path: str) -> Cause:
    """``Required value`` cause at ``path``."""
    return Cause("FieldValueRequired", "Required value", path)


def invalid_value(path: str, value, detail: str) -> Cause:
    """``Invalid value: "x": detail`` cause at ``path`` (value rendered as upstream's %#v of strings)."""
    shown = f'"{value}"' if isinstance(value, str) else _go_repr(value)
    return Cause("FieldValueInvalid", f"Invalid value: {shown}: {detail}", path)


def not_supported(path: str, value, allowed: list[str]) -> Cause:
    """``Unsupported value: "x": supported values: "a", "b"`` cause at ``path``."""
    return Cause("FieldValueNotSupported",
                 f'Unsupported value: "{value}": supported values: ' + ", ".join(f'"{a}"' for a in allowed), path)


def duplicate(path: str, value) -> Cause:
    """``Duplicate value: "x"`` cause at ``path``."""
    return Cause("FieldValueDuplicate", f'Duplicate value: "{value}"', path)


def forbidden_field(path: str, detail: str) -> Cause:
    """``Forbidden: detail`` cause at ``path``."""
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def immutable(path: str, value) -> Cause:
    """``Invalid value: ...: field is immutable`` cause at ``path``."""
    return invalid_value(path, value, "field is immutable")


def _go_repr(value) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list):
        return "[]string{" + ", ".join(f'"{v}"' for v in value) + "}"
    return str(value)


def validate_path_segment_name(path: str, name: str) -> list[Cause]:
    """Causes for a name that is not a valid path segment (path.IsValidPathSegmentName, RBAC's names)."""
    if name in (".", ".."):
        return [invalid_value(path, name, f"may not be '{name}'")]
    return [invalid_value(path, name, f"may not contain '{c}'") for c in ("/", "%") if c in name]


def validate_name(path: str, name: str, kind: str = "subdomain") -> list[Cause]:
    """Causes for an invalid object name; ``kind`` subdomain (default), label, dns1035 or path (a path
    segment, as RBAC objects' names)."""
    if kind == "path":
        return validate_path_segment_name(path, name)
    regex, msg, limit = {
        "subdomain": (DNS1123_SUBDOMAIN_RE, DNS1123_SUBDOMAIN_MSG, 253),
        "label": (DNS1123_LABEL_RE, DNS1123_LABEL_MSG, 63),
        "dns1035": (DNS1035_LABEL_RE, DNS1035_LABEL_MSG, 63),
    }[kind]
    out = []
    if len(name) > limit:
        out.append(invalid_value(path, name, f"must be no more than {limit} characters"))
    if not regex.match(name):
        out.append(invalid_value(path, name, msg))
    return out


def validate_labels(path: str, labels) -> list[Cause]:
    """Causes for label keys/values that are not valid (as ValidateLabels)."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid_value(path, str(labels), "must be a map of string keys to string values")]
    out = []
    for k, v in labels.items():
        why = selectors.validate_label_key(k)
        if why:
            out.append(invalid_value(path, k, why))
        if not isinstance(v, str):
            out.append(invalid_value(f"{path}[{k}]", str(v), "label values must be strings"))
            continue
        why = selectors.validate_label_value(v)
        if why:
            out.append(invalid_value(path, v, why))
    return out


@dataclass(frozen=True)
class ResourceInfo:
    """The names of one served resource, as discovery and storage use them.

    ``names`` is the resource's entry in the shared table
    (kubeling.api.resources: group, version, plural, kind, namespaced, short
    names), so clients and the server cannot disagree on them;
    ``storage_prefix`` is the part after ``/registry/`` (``minions`` for
    nodes, ``services/specs`` for services, as upstream's etcd3 layout);
    ``subresources`` maps subresource name -> (kind, group, version, verbs).
    """

    names: Resource
    storage_prefix: str
    categories: tuple[str, ...] = ()
    subresources: dict = field(default_factory=dict)
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

    group = property(lambda self: self.names.group, doc="API group (``\"\"`` for core).")
    version = property(lambda self: self.names.version, doc="API version (``v1``).")
    resource = property(lambda self: self.names.plural, doc="Plural resource name (``pods``).")
    kind = property(lambda self: self.names.kind, doc="Kind (``Pod``).")
    namespaced = property(lambda self: self.names.namespaced, doc="Whether objects live in namespaces.")
    short_names = property(lambda self: self.names.short_names, doc="kubectl short names (``po``).")
    api_version = property(lambda self: self.names.api_version, doc="``v1`` or ``apps/v1``.")
    singular = property(lambda self: self.names.singular, doc="Lower-case kind (discovery's singularName).")

    @property
    def list_kind(self) -> str:
        """``PodList`` etc."""
        return self.kind + "List"

    def key(self, namespace: str | None, name: str) -> str:
        """etcd key of one object: ``/registry/pods/default/web``, ``/registry/minions/node-1``."""
        return f"/registry/{self.storage_prefix}/{namespace}/{name}" if self.namespaced \
            else f"/registry/{self.storage_prefix}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        """etcd key prefix of a list: ``/registry/pods/`` or ``/registry/pods/default/``."""
        if self.namespaced and namespace:
            return f"/registry/{self.storage_prefix}/{namespace}/"
        return f"/registry/{self.storage_prefix}/"


STATUS_VERBS = ("get", "patch", "update")


class Strategy:
    """Per-resource behaviour of the generic registry (subclass per kind).

    Hooks receive and return plain JSON dicts and may mutate the object
    passed in (the Store hands them private copies). ``validate*`` return
    lists of Cause (empty = valid); ``name_kind`` picks the name rule.
    """

    info: ResourceInfo
    has_status = True            # a /status subresource owns .status; the main resource cannot change it
    reset_status_on_create = True
    tracks_generation = False    # bump metadata.generation when .spec changes
    return_deleted_object = False
    allow_create_on_update = False
    allow_unconditional_update = True
    name_kind = "subdomain"
    extra_fields: tuple[str, ...] = ()   # field-selector labels beyond metadata.name/namespace
    # propagation when a DELETE names none (DefaultGarbageCollectionPolicy): None = Background
    # (no finalizer); "Orphan" for the kinds that orphaned before server-side GC (v1 RCs, batch/v1 Jobs)
    default_propagation_policy: str | None = None

    # --- create ---
    def prepare_for_create(self, obj: dict) -> None:
        """Clear what a client may not set on create (status of kinds with a status subresource)."""
        if self.has_status and self.reset_status_on_create:
            obj.pop("status", None)

    def default(self, obj: dict) -> None:
        """Fill defaulted fields (as the scheme's defaulting functions)."""

    def validate(self, obj: dict) -> list[Cause]:
        """Causes why ``obj`` is invalid (object-specific part; metadata is checked by the Store)."""
        return []

    # --- update ---
    def prepare_for_update(self, new: dict, old: dict) -> None:
        """Keep what the main resource may not change (the status, when there is a /status)."""
        if self.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)

    def prepare_for_status_update(self, new: dict, old: dict) -> dict:
        """The object a ``/status`` write yields: ``old`` with only ``.status`` taken from ``new``."""
        out = copy.deepcopy(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out

    def validate_update(self, new: dict, old: dict) -> list[Cause]:
        """Causes why the update ``old`` -> ``new`` is invalid (default: validate ``new``)."""
        return self.validate(new)

    # --- delete ---
    def grace_period(self, obj: dict, requested: int | None) -> int:
        """Seconds of graceful deletion for ``obj``; 0 deletes at once (all kinds but pods)."""
        return 0

    # --- reads ---
    def fields(self, obj: dict) -> dict[str, str]:
        """Field-selector attributes of ``obj`` (as each registry's GetAttrs / ToSelectableFields)."""
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name", "")}
        if self.info.namespaced:
            out["metadata.namespace"] = meta.get("namespace", "")
        for f in self.extra_fields:
            cur = obj
            for part in f.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            out[f] = "" if cur is None else (str(cur).lower() if isinstance(cur, bool) else str(cur))
        return out

    def supported_fields(self) -> set[str]:
        """Field-selector labels this resource accepts (others -> 400 field label not supported)."""
        out = {"metadata.name", *self.extra_fields}
        if self.info.namespaced:
            out.add("metadata.namespace")
        return out

    # --- storage side effects (ClusterIP reservations) ---
    async def before_create(self, store, obj: dict, ctx: dict):
        """Allocate what the object needs before its create Txn; returns etcd3.ExtraOps or None.

        ``ctx`` is private to one create request and survives its retries.
        """
        return None

    def on_create_compare_failed(self, obj: dict, key: str, ctx: dict) -> None:
        """An extra compare of the create Txn failed on ``key``: raise StatusError, or reset to retry."""

    def delete_extras(self, obj: dict):
        """etcd3.ExtraOps riding with the delete Txn of ``obj`` (release reservations), or None."""
        return None
