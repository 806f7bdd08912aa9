"""Posting v1 Events about pods (Pulled, Created, Started, Killing, BackOff ...).

Events are best-effort: ``event()`` only puts a record on a bounded queue
and returns; a background task posts them, so a slow or failing apiserver
never blocks a pod sync. A repeat of the same (object, type, reason,
message) bumps ``count`` and ``lastTimestamp`` of the existing Event instead
of creating another. Mirrors client-go tools/record (EventRecorder,
EventBroadcaster, EventCorrelator's aggregation of identical events).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid

from kubelet.pod_status import rfc3339
from kubeling.client import ApiError, Client

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


class EventRecorder:
    """``EventRecorder(client, host="node1")``; ``await run()`` posts queued events."""

    def __init__(self, client: Client, *, host: str, component: str = "kubelet"):
        self.client = client
        self.host = host
        self.component = component
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._seen: dict[tuple, tuple[str, str, int]] = {}  # key -> (namespace, name, count)

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (a Pod or Node dict); drops it if the queue is full."""
        try:
            self._queue.put_nowait((obj, type_, reason, message, time.time()))
        except asyncio.QueueFull:
            log.debug("event queue full, dropping %s %s", reason, message)

    async def run(self) -> None:
        """Post events until cancelled; errors are logged, never raised."""
        while True:
            obj, type_, reason, message, ts = await self._queue.get()
            try:
                await self._post(obj, type_, reason, message, ts)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # best-effort: never stop posting
                log.debug("posting event %s failed: %s", reason, e)

    async def _post(self, obj: dict, type_: str, reason: str, message: str, ts: float) -> None:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid"), type_, reason, message)
        now = rfc3339(ts)
        seen = self._seen.get(key)
        if seen is not None:
            ev_ns, ev_name, count = seen
            try:
                await self.client.patch("events", ev_name, {"count": count + 1, "lastTimestamp": now},
                                        namespace=ev_ns)
                self._seen[key] = (ev_ns, ev_name, count + 1)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}"
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", "Pod"),
                               "name": meta.get("name"), "namespace": meta.get("namespace"),
                               "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        await self.client.create("events", event, namespace=ns)
        if len(self._seen) > 4096:
            self._seen.clear()
        self._seen[key] = (ns, name, 1)
