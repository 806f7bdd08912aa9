"""List-then-watch informers with a local cache, as client-go's SharedInformer.

An informer lists a resource, marks itself synced, then watches from the
list's resourceVersion; every event updates the local store before the
registered handlers run. A ``410 Gone`` (or any broken watch) leads to a
relist whose differences with the store are delivered as add/update/delete,
so handlers see a consistent sequence. Components read from the informer's
lister, never from the API, in their reconcile loops.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from typing import Callable, Protocol

import httpx

from kubeling.api import resources as res
from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)


def meta_key(obj: dict) -> str:
    """``namespace/name`` for namespaced objects, ``name`` otherwise (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of ``meta_key``: ``"ns/name"`` -> ``("ns", "name")``, ``"name"`` -> ``(None, "name")``."""
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


class AddHandler(Protocol):
    """Callback taking one object dict: ``on_add`` (list or watch ADDED), ``on_delete`` (last known state)."""
    def __call__(self, obj: dict) -> None: ...


class UpdateHandler(Protocol):
    """Callback for a modified object: ``(old, new)`` as stored before and after (also on resync/relist)."""
    def __call__(self, old: dict, new: dict) -> None: ...


@dataclasses.dataclass
class Handlers:
    """One set of event callbacks; any may be None. Callbacks must be quick
    (enqueue a key) and must not mutate the objects they are given."""

    on_add: AddHandler | None = None
    on_update: UpdateHandler | None = None
    on_delete: AddHandler | None = None


class Lister:
    """Read-only view over an informer's store (client-go's Lister).

    Returned objects are the cache's own: copy before mutating (``copy.deepcopy``).
    """

    def __init__(self, store: dict[str, dict]):
        self._store = store

    def get(self, name: str, namespace: str | None = None) -> dict | None:
        """The cached object, or None."""
        return self._store.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None,
             match: Callable[[dict], bool] | None = None) -> list[dict]:
        """Cached objects, optionally of one namespace and passing ``match``."""
        out = []
        for obj in self._store.values():
            if namespace is not None and obj.get("metadata", {}).get("namespace") != namespace:
                continue
            if match is not None and not match(obj):
                continue
            out.append(obj)
        return out


class Informer:
    """Keeps a local copy of one resource (optionally filtered) in sync.

    ``await informer.run()`` runs until cancelled; ``await informer.wait_synced()``
    returns once the first list has been delivered. Handlers are added with
    ``add_handlers`` before ``run``. Mirrors client-go's Reflector + Indexer +
    sharedIndexInformer.
    """

    def __init__(self, client: Client, resource: res.Resource | str, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 watch_timeout: int = 300, retry_delay: float = 1.0):
        self.client = client
        self.resource = res.for_name(resource) if isinstance(resource, str) else resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.store: dict[str, dict] = {}
        self.lister = Lister(self.store)
        self.resource_version = ""
        self._handlers: list[Handlers] = []
        self._synced = asyncio.Event()

    def add_handlers(self, handlers: Handlers | None = None, **kwargs) -> None:
        """Register callbacks: ``add_handlers(on_add=f, on_update=g, on_delete=h)``."""
        self._handlers.append(handlers or Handlers(**kwargs))

    @property
    def has_synced(self) -> bool:
        """True once the first list has been applied to the store."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first list (asyncio.TimeoutError after ``timeout`` seconds)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _dispatch(self, kind: str, *args: dict) -> None:
        for h in self._handlers:
            fn = getattr(h, kind)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:  # a handler bug must not stop the informer
                log.exception("%s handler for %s failed", kind, self.resource.plural)

    async def _relist(self) -> None:
        lst = await self.client.list(self.resource, namespace=self.namespace,
                                     label_selector=self.label_selector,
                                     field_selector=self.field_selector)
        fresh = {}
        for item in lst.get("items", []):
            item.setdefault("kind", self.resource.kind)
            item.setdefault("apiVersion", self.resource.api_version)
            fresh[meta_key(item)] = item
        for key in list(self.store):
            if key not in fresh:
                old = self.store.pop(key)
                self._dispatch("on_delete", old)
        for key, obj in fresh.items():
            old = self.store.get(key)
            self.store[key] = obj
            if old is None:
                self._dispatch("on_add", obj)
            elif old.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._dispatch("on_update", old, obj)
        self.resource_version = lst.get("metadata", {}).get("resourceVersion", "")
        self._synced.set()

    def _apply(self, etype: str, obj: dict) -> None:
        rv = obj.get("metadata", {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if etype == "BOOKMARK":
            return
        key = meta_key(obj)
        if etype == "DELETED":
            old = self.store.pop(key, None)
            self._dispatch("on_delete", old or obj)
            return
        old = self.store.get(key)
        self.store[key] = obj
        if old is None:
            self._dispatch("on_add", obj)
        else:
            self._dispatch("on_update", old, obj)

    async def run(self) -> None:
        """List, then watch forever; relist after 410 Gone or a broken stream."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for etype, obj in self.client.watch(
                        self.resource, namespace=self.namespace, resource_version=self.resource_version,
                        label_selector=self.label_selector, field_selector=self.field_selector,
                        timeout_seconds=self.watch_timeout):
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            log.info("watch of %s expired (410), relisting", self.resource.plural)
                        else:
                            log.warning("watch of %s: %s", self.resource.plural, obj.get("message"))
                        need_list = True
                        break
                    obj.setdefault("kind", self.resource.kind)
                    obj.setdefault("apiVersion", self.resource.api_version)
                    self._apply(etype, obj)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                log.warning("list/watch of %s failed: %s", self.resource.plural, e)
                need_list = True
                await asyncio.sleep(self.retry_delay)
            except (httpx.TransportError, ValueError) as e:
                log.warning("connection for %s lost: %s", self.resource.plural, e)
                need_list = need_list or not self.resource_version
                await asyncio.sleep(self.retry_delay)


def deep_copy(obj: dict) -> dict:
    """A copy of a cached object that may be mutated (cache objects must not be)."""
    return copy.deepcopy(obj)
