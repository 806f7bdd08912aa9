"""events.k8s.io/v1 Events, served over the same storage as core v1 Events.

Upstream keeps one Event type in etcd (``/registry/events/<ns>/<name>``) and
converts between its versions (``pkg/apis/events/v1/conversion.go``):
involvedObject <-> regarding, message <-> note, reportingComponent <->
reportingController, source <-> deprecatedSource, firstTimestamp /
lastTimestamp / count <-> deprecatedFirstTimestamp / deprecatedLastTimestamp
/ deprecatedCount. ``EventsV1Store`` is the generic Store with that
conversion at its edges: request bodies are turned into the core form before
the strategy sees them, and every object it returns (get, list, watch events,
writes) is turned back, so both APIs read and write the same objects.
"""
from __future__ import annotations


import contextvars

from apiserver.registry.core import EventStrategy
from apiserver.registry.rest import ResourceInfo, invalid_value, not_supported, required
from apiserver.registry.store import Store
from kubeling.api import resources

# core v1 field -> events.k8s.io/v1 field (top level; metadata is shared)
CORE_TO_V1 = {"involvedObject": "regarding", "message": "note", "reportingComponent": "reportingController",
              "source": "deprecatedSource", "firstTimestamp": "deprecatedFirstTimestamp",
              "lastTimestamp": "deprecatedLastTimestamp", "count": "deprecatedCount"}
V1_TO_CORE = {v: k for k, v in CORE_TO_V1.items()}
API_VERSION = "events.k8s.io/v1"
_PATCHING: contextvars.ContextVar[bool] = contextvars.ContextVar("events_v1_patching", default=False)


def _rename(obj: dict, mapping: dict, api_version: str) -> dict:
    out = {}
    for k, v in obj.items():
        out[mapping.get(k, k)] = v
    out["apiVersion"] = api_version
    out["kind"] = "Event"
    return out


def to_core(obj: dict) -> dict:
    """The core v1 form of an events.k8s.io/v1 Event (objects already in core form pass unchanged)."""
    if not isinstance(obj, dict) or obj.get("apiVersion") == "v1":
        return obj
    return _rename(obj, V1_TO_CORE, "v1")


def to_v1(obj: dict) -> dict:
    """The events.k8s.io/v1 form of a stored core v1 Event (other objects, e.g. Status, pass unchanged)."""
    if not isinstance(obj, dict) or obj.get("kind") != "Event" or obj.get("apiVersion") != "v1":
        return obj
    return _rename(obj, CORE_TO_V1, API_VERSION)


class EventsV1Strategy(EventStrategy):
    """Core Event rules on the stored form, plus what the events.k8s.io/v1 API requires on create
    (ValidateEventCreate for the v1 group: eventTime, reportingController, reportingInstance, action, reason)."""

    info = ResourceInfo(resources.for_kind(API_VERSION, "Event"), "events")

    def validate(self, obj: dict) -> list:
        """Causes, with events.k8s.io/v1 field names, of a (core-form) event created through this API."""
        out = []
        for core_name, v1_name in (("eventTime", "eventTime"), ("reportingComponent", "reportingController"),
                                   ("reportingInstance", "reportingInstance"), ("action", "action"),
                                   ("reason", "reason")):
            if not obj.get(core_name):
                out.append(required(v1_name))
        if obj.get("type") and obj["type"] not in ("Normal", "Warning"):
            out.append(not_supported("type", obj["type"], ["Normal", "Warning"]))
        note = obj.get("message")
        if isinstance(note, str) and len(note) > 1024:
            out.append(invalid_value("note", "", "can have at most 1024 characters"))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """Updates keep the core rule only (events written through core v1 lack the v1-required fields)."""
        return []


class _ConvertingWatcher:
    """A CacheWatcher whose events carry events.k8s.io/v1 objects."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def next(self, timeout):
        """The inner watcher's next event with its object converted (None and StopAsyncIteration as is)."""
        ev = await self._inner.next(timeout)
        if ev is None:
            return None
        etype, obj = ev
        return etype, to_v1(obj)


class EventsV1Store(Store):
    """The generic Store of events.k8s.io/v1 Events over the core Events' keys (see module docstring)."""

    def _decode(self, body, *, kind: str | None = None, api_version: str | None = None) -> dict:
        return to_core(super()._decode(body, kind=kind, api_version=api_version))

    async def get(self, ns, name):
        """As Store.get, in events.k8s.io/v1 form."""
        return to_v1(await super().get(ns, name))

    async def list(self, ns, **kw):
        """As Store.list, items in events.k8s.io/v1 form."""
        out = await super().list(ns, **kw)
        out["items"] = [to_v1(i) for i in out["items"]]
        return out

    def watch(self, ns, **kw):
        """As Store.watch, events carrying events.k8s.io/v1 objects."""
        return _ConvertingWatcher(super().watch(ns, **kw))

    async def create(self, ns, body, **kw):
        """As Store.create; the body is in events.k8s.io/v1 form, and so is the result."""
        return to_v1(await super().create(ns, body, **kw))

    async def update(self, ns, name, body, **kw):
        """As Store.update, in events.k8s.io/v1 form both ways."""
        obj, created = await super().update(ns, name, body, **kw)
        return to_v1(obj), created

    async def guaranteed_update(self, ns, name, mutate, **kw):
        """As Store.guaranteed_update, result in events.k8s.io/v1 form; ``mutate`` sees the core form, except
        under ``patch`` where it is the generic patch function working on the events.k8s.io/v1 form."""
        if _PATCHING.get():
            inner = mutate

            def mutate(current: dict) -> dict:
                return to_core(inner(to_v1(current)))
        return to_v1(await super().guaranteed_update(ns, name, mutate, **kw))

    async def patch(self, ns, name, content_type, patch, **kw):
        """As Store.patch, the patch applied to the events.k8s.io/v1 form of the stored object."""
        token = _PATCHING.set(True)
        try:
            return await super().patch(ns, name, content_type, patch, **kw)
        finally:
            _PATCHING.reset(token)

    async def delete(self, ns, name, options=None, **kw):
        """As Store.delete, a returned Event in events.k8s.io/v1 form."""
        return to_v1(await super().delete(ns, name, options, **kw))


