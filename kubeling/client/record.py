"""Recording Events about objects (what ``kubectl describe`` shows under Events).

Mirrors client-go's tools/record EventRecorder: ``recorder.event(obj, type,
reason, message)`` never blocks and never fails the caller; the Event is
written in the background. Repeats of the same (object, type, reason,
message) within ten minutes bump ``count`` and ``lastTimestamp`` of the
first Event instead of creating a new one, as upstream's EventCorrelator does.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time

from kubeling import klog
from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
_REPEAT_WINDOW = 600.0
_MAX_CACHE = 4096
# client-go's broadcaster queues at most 1000 events and drops beyond; writes go out a few at a
# time so a burst (a 1,000-replica rollout) cannot time out every other request of the component.
MAX_QUEUED = 1000
MAX_CONCURRENT_WRITES = 8


def now_rfc3339() -> str:
    """Current UTC time as Kubernetes writes timestamps (``2024-01-02T03:04:05Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: dict) -> dict:
    """An ObjectReference (kind, apiVersion, namespace, name, uid, resourceVersion) to ``obj``."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Writes core/v1 Events as ``component`` (e.g. ``default-scheduler``).

    ``event`` schedules the write on the running loop; ``flush`` awaits the
    writes still in flight (for tests and shutdown).
    """

    def __init__(self, client: Client, component: str, *, host: str = ""):
        self.client = client
        self.component = component
        self.host = host
        self._pending: set[asyncio.Task] = set()
        self._seen: dict[tuple, tuple[str, str, int, float]] = {}
        self._writers: asyncio.Semaphore | None = None
        self.dropped = 0

    def event(self, obj: dict, event_type: str, reason: str, message: str) -> None:
        """Record an Event about ``obj`` (type ``Normal`` or ``Warning``) in the background; with
        MAX_QUEUED writes already waiting the Event is dropped (counted in ``dropped``)."""
        if len(self._pending) >= MAX_QUEUED:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("event queue full (%d waiting): dropping events (%d so far)", MAX_QUEUED, self.dropped)
            return
        if self._writers is None:
            self._writers = asyncio.Semaphore(MAX_CONCURRENT_WRITES)
        # client-go's StartStructuredLogging: every Event is also one log line with its object key.
        log.info("Event occurred", extra=klog.kv(object=obj, kind=obj.get("kind", ""), type=event_type,
                                                 reason=reason, note=message))
        task = asyncio.get_running_loop().create_task(self._write(obj, event_type, reason, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for the Events being written."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)

    async def _write(self, obj: dict, event_type: str, reason: str, message: str) -> None:
        async with self._writers:
            await self._write_one(obj, event_type, reason, message)

    async def _write_one(self, obj: dict, event_type: str, reason: str, message: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace", "default")
        key = (ref.get("uid") or ref.get("name"), event_type, reason, message)
        stamp = now_rfc3339()
        try:
            seen = self._seen.get(key)
            if seen and time.monotonic() - seen[3] < _REPEAT_WINDOW:
                name, ns, count, _ = seen
                try:
                    await self.client.patch("events", name, {"count": count + 1, "lastTimestamp": stamp},
                                            namespace=ns)
                    self._seen[key] = (name, ns, count + 1, time.monotonic())
                    return
                except ApiError as e:
                    if e.code != 404:
                        raise
            name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": ref, "reason": reason, "message": message, "type": event_type,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                # As client-go's recorder: the instance is the source host ("" for controllers).
                "reportingComponent": self.component, "reportingInstance": self.host,
            }
            await self.client.create("events", body, namespace=namespace)
            if len(self._seen) >= _MAX_CACHE:
                self._seen.clear()
            self._seen[key] = (name, namespace, 1, time.monotonic())
        except Exception as e:  # an Event is best effort: never fail the caller
            log.warning("could not record event %s %s for %s: %s", reason, message, ref.get("name"),
                        str(e) or type(e).__name__)
