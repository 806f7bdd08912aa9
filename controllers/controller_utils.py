"""What every controller shares: the worker loop, expectations, owner
references, pod state helpers and adoption/release of dependents.

Mirrors kube-controller-manager's pkg/controller/controller_utils.go and
controller_ref_manager.go, and the worker loop of kubernetes/sample-controller:
handlers only enqueue keys; a worker takes a key, syncs it from listers,
forgets it on success, re-adds it rate-limited on error, and always marks it done.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Callable, Iterable

import prometheus_client

from kubeling.api import selectors
from kubeling.client import ApiError, Client, Informer, ShutDown, WorkQueue, deep_copy, meta_key

log = logging.getLogger(__name__)

SYNCS = prometheus_client.Counter("controller_syncs_total", "Reconciles by controller and result.",
                                  ["controller", "result"])

# Upstream's ExpectationsTimeout: a controller stuck waiting for events it
# never sees syncs anyway after this long.
EXPECTATIONS_TIMEOUT = 300.0


class BaseController:
    """Worker loop over a WorkQueue of keys; subclasses implement ``sync(key)``.

    ``informers`` must all be synced before workers start (the manager runs
    them); ``on_synced()`` runs once after that, before the first sync.
    """

    name = "controller"

    def __init__(self, client: Client, informers: Iterable[Informer]):
        self.client = client
        self.informers = list(informers)
        self.queue = WorkQueue(name=self.name)  # workqueue_* metrics by controller name

    def enqueue(self, obj: dict) -> None:
        """Queue ``obj``'s key."""
        self.queue.add(meta_key(obj))

    async def sync(self, key: str) -> None:
        """Reconcile one key (level-triggered, idempotent). Raise to be retried with backoff."""
        raise NotImplementedError

    def not_due(self, key: str, when: float, now: float) -> bool:
        """True (and ``key`` queued again for then) while ``when`` (epoch seconds) is after
        ``now``: the requeue-at-expiry step of upstream's TTL-style controllers (ttlafterfinished,
        tokencleaner, csrcleaner)."""
        if when > now:
            self.queue.add_after(key, when - now)
            return True
        return False

    async def on_synced(self) -> None:
        """Hook run once the informers have synced, before the workers start."""

    async def run(self, *, workers: int = 1) -> None:
        """Wait for the informer caches, then run ``workers`` workers until cancelled."""
        for inf in self.informers:
            await inf.wait_synced()
        await self.on_synced()
        log.info("%s controller: caches synced, starting %d worker(s)", self.name, workers)
        tasks = [asyncio.ensure_future(self._worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
                self.queue.forget(key)
                SYNCS.labels(self.name, "success").inc()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                SYNCS.labels(self.name, "error").inc()
                level = logging.INFO if isinstance(e, ApiError) and e.code == 409 else logging.WARNING
                log.log(level, "%s controller: error syncing %r (will retry): %s", self.name, key, e,
                        exc_info=not isinstance(e, ApiError), extra={"controller": self.name, "key": key})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)


class ControllerExpectations:
    """How many creations and which deletions a controller still waits to see
    in its informer, per controller key (upstream's UIDTrackingControllerExpectations).

    A controller syncs only when its expectations are satisfied (or expired),
    so it does not create pods twice while the informer lags behind its writes.
    The clock is injected for tests.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock = clock
        self.timeout = timeout
        self._adds: dict[str, int] = {}
        self._dels: dict[str, set[str]] = {}
        self._stamp: dict[str, float] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is expected, the expectations were met, or they expired."""
        if key not in self._stamp:
            return True
        if self._adds.get(key, 0) <= 0 and not self._dels.get(key):
            return True
        return self.clock() - self._stamp[key] > self.timeout

    def expect_creations(self, key: str, n: int) -> None:
        """Expect ``n`` pod creations for ``key`` (replaces earlier expectations)."""
        self._adds[key] = n
        self._dels[key] = set()
        self._stamp[key] = self.clock()

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        """Expect the deletion of these pods (``namespace/name`` keys)."""
        self._adds[key] = 0
        self._dels[key] = set(pod_keys)
        self._stamp[key] = self.clock()

    def creation_observed(self, key: str) -> None:
        """One expected creation was seen (or failed and will never be seen)."""
        if key in self._adds:
            self._adds[key] -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        """An expected deletion was seen (or failed and will never be seen)."""
        self._dels.get(key, set()).discard(pod_key)

    def delete(self, key: str) -> None:
        """Drop all expectations of ``key`` (its controller object is gone)."""
        self._adds.pop(key, None)
        self._dels.pop(key, None)
        self._stamp.pop(key, None)


# -- owner references -------------------------------------------------------------------------
async def write_status(client: Client, resource: str, obj: dict, status: dict) -> None:
    """PUT ``status`` as ``obj``'s status subresource when it differs from the current one; an
    object gone meanwhile (404) is fine, a 409 is raised for the work queue to retry."""
    if status == (obj.get("status") or {}):
        return
    new = deep_copy(obj)
    new["status"] = status
    try:
        await client.replace_status(resource, new)
    except ApiError as e:
        if e.code != 404:
            raise


def get_controller_of(obj: dict) -> dict | None:
    """The ownerReference with ``controller: true``, or None (metav1.GetControllerOf)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controller_ref(owner: dict) -> dict:
    """An ownerReference making ``owner`` the controller (metav1.NewControllerRef)."""
    meta = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""), "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def resolve_controller_ref(obj: dict, lister, kind: str) -> dict | None:
    """The owner of ``obj`` of ``kind`` from ``lister``, if its controllerRef names it by name and uid."""
    ref = get_controller_of(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    owner = lister.get(ref.get("name", ""), (obj.get("metadata") or {}).get("namespace"))
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return owner


def selector_of(obj: dict) -> selectors.LabelSelector:
    """spec.selector of a ReplicaSet, Deployment or Job (a metav1.LabelSelector), or of a
    ReplicationController (a plain label map; empty selects nothing); a malformed one selects nothing."""
    selector = (obj.get("spec") or {}).get("selector")
    if obj.get("kind") == "ReplicationController":
        selector = {"matchLabels": selector} if selector else None
    try:
        return selectors.label_selector_from_object(selector)
    except ValueError:
        return selectors.LabelSelector(nothing=True)


def labels_of(obj: dict) -> dict:
    """metadata.labels (never None)."""
    return (obj.get("metadata") or {}).get("labels") or {}


async def claim_objects(client: Client, owner: dict, candidates: Iterable[dict], resource: str,
                        *, can_adopt: Callable[[], "asyncio.Future[bool]"] | None = None) -> list[dict]:
    """The objects ``owner`` controls after adopting orphans matching its
    selector and releasing those of its own that no longer match.

    Mirrors controller_ref_manager.go's ClaimPods / ClaimReplicaSets: objects
    controlled by someone else are left alone; an owner being deleted adopts
    nothing. Adoption and release are merge patches of
    metadata.ownerReferences; an object gone meanwhile (404) is skipped.
    """
    selector = selector_of(owner)
    owner_uid = owner["metadata"].get("uid")
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    claimed = []
    for obj in candidates:
        ref = get_controller_of(obj)
        matches = selector.matches(labels_of(obj))
        refs = list((obj.get("metadata") or {}).get("ownerReferences") or [])
        meta = obj["metadata"]
        try:
            if ref is not None:
                if ref.get("uid") != owner_uid:
                    continue
                if matches or deleting:
                    claimed.append(obj)
                    continue
                rest = [r for r in refs if r.get("uid") != owner_uid]
                await client.patch(resource, meta["name"], {"metadata": {"ownerReferences": rest or None}},
                                   namespace=meta.get("namespace"))
                continue
            if not matches or deleting or meta.get("deletionTimestamp"):
                continue
            if can_adopt is not None and not await can_adopt():
                continue
            patched = await client.patch(resource, meta["name"],
                                         {"metadata": {"ownerReferences": refs + [controller_ref(owner)]}},
                                         namespace=meta.get("namespace"))
            claimed.append(patched)
        except ApiError as e:
            if e.code != 404:
                raise
    return claimed


# -- pods ------------------------------------------------------------------------------------
def rfc3339(t: float, tz: datetime.tzinfo = datetime.timezone.utc) -> str:
    """``t`` (seconds since the epoch) as Kubernetes writes metav1.Time: whole seconds,
    ``2024-01-02T03:04:05Z`` in UTC (an offset in another ``tz``)."""
    return datetime.datetime.fromtimestamp(int(t), tz).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_pod_active(pod: dict) -> bool:
    """Not Succeeded/Failed and not being deleted (controller.IsPodActive)."""
    return ((pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not (pod.get("metadata") or {}).get("deletionTimestamp"))


def _ready_condition(pod: dict) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    """The Ready condition is True (podutil.IsPodReady)."""
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def pod_delete_rank(pod: dict, pods_on_node: dict[str, int]) -> tuple:
    """Sort key: pods to delete first sort first (controller.ActivePodsWithRanks):
    unassigned, then Pending / Unknown before Running, not ready, more related
    pods on the same node, ready for less time, more restarts, newer."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName") or ""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    ready = is_pod_ready(pod)
    ready_since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime")) or 0.0
    restarts = max((c.get("restartCount", 0) for c in status.get("containerStatuses") or []), default=0)
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or 0.0
    return (bool(node), phase_rank, ready, -pods_on_node.get(node, 0) if node else 0,
            -ready_since if ready else 0.0, -restarts, -created)

