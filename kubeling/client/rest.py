"""The REST client every kubeling component uses to talk to the apiserver.

Mirrors client-go's dynamic client: objects are plain JSON dicts, requests
are built from the resource table (kubeling.api.resources), failures are
raised as ApiError carrying the server's ``Status``. Watches are read as
newline-delimited ``{"type", "object"}`` events, as the apiserver streams them.
JSON goes through orjson (as the apiserver's codec): decoding watch events and
answers is a large share of every controller's CPU.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import AsyncIterator

import httpx
import orjson

from kubeling.api import resources as res
from kubeling.client import kubeconfig
from kubeling.client import metrics as client_metrics

DEFAULT_TIMEOUT = 30.0


class ApiError(Exception):
    """A non-2xx answer from the apiserver.

    ``code`` is the HTTP status (404, 409, 410, 422 ...), ``reason`` the
    Status reason (``NotFound``, ``Conflict``, ``AlreadyExists``, ``Gone``,
    ``Invalid``), ``status`` the whole Status dict (empty if the body was not one).
    """

    def __init__(self, code: int, status: dict | None = None, text: str = ""):
        self.code = code
        self.status = status or {}
        self.reason = self.status.get("reason", "")
        message = self.status.get("message") or text or f"HTTP {code}"
        super().__init__(message)

    @property
    def message(self) -> str:
        """The human-readable message (Status.message)."""
        return str(self)


class Client:
    """Async client for one apiserver.

    ``Client.from_kubeconfig(path)`` or ``Client(config)``. Methods take a
    ``Resource`` (or a resource name such as ``"pods"``) and return the
    decoded JSON object or list. Raise ApiError on an error answer and
    httpx.TransportError when the server cannot be reached.
    """

    def __init__(self, config: kubeconfig.ClusterConfig, *, timeout: float = DEFAULT_TIMEOUT,
                 user_agent: str = "kubeling"):
        self.config = config
        kwargs = config.httpx_kwargs()
        # kept so a rotated client certificate can be loaded into it (kubelet --rotate-certificates)
        self.ssl_context = kwargs.get("verify")
        headers = {"User-Agent": user_agent, "Accept": "application/json", **kwargs.pop("headers", {})}
        kwargs["transport"] = client_metrics.transport(verify=kwargs.pop("verify", True))  # rest_client_*
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers, **kwargs)

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike, **kwargs) -> "Client":
        """Client for the current context of the kubeconfig at ``path``."""
        return cls(kubeconfig.load(path), **kwargs)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @staticmethod
    def _resource(resource: res.Resource | str) -> res.Resource:
        return res.for_name(resource) if isinstance(resource, str) else resource

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: dict | list | None = None, content_type: str = "application/json",
                      timeout: float | None = None) -> dict:
        """Send one request; returns the decoded JSON body (``{}`` if empty). Raises ApiError."""
        headers = {}
        content = None
        if body is not None:
            content = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
            headers["Content-Type"] = content_type
        kwargs = {} if timeout is None else {"timeout": timeout}
        resp = await self._http.request(method, path, params=_clean(params), content=content,
                                        headers=headers, **kwargs)
        if resp.status_code >= 400:
            raise _error(resp.status_code, resp.text)
        if not resp.content:
            return {}
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            return {"text": resp.text}

    async def get(self, resource: res.Resource | str, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> dict:
        """GET one object. Raises ApiError (404 NotFound when absent)."""
        r = self._resource(resource)
        return await self.request("GET", r.path(namespace=namespace, name=name, subresource=subresource))

    async def list(self, resource: res.Resource | str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   resource_version: str | None = None) -> dict:
        """LIST objects (all namespaces when ``namespace`` is None) -> the List dict
        with ``items`` and ``metadata.resourceVersion``."""
        r = self._resource(resource)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                  "resourceVersion": resource_version}
        return await self.request("GET", r.path(namespace=namespace), params=params)

    async def create(self, resource: res.Resource | str, obj: dict, *, namespace: str | None = None,
                     subresource: str | None = None, name: str | None = None) -> dict:
        """POST a new object (or a subresource such as ``binding`` of ``name``)."""
        r = self._resource(resource)
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", r.path(namespace=ns, name=name, subresource=subresource),
                                  body=obj)

    async def replace(self, resource: res.Resource | str, obj: dict, *,
                      subresource: str | None = None) -> dict:
        """PUT ``obj`` (its metadata.resourceVersion makes it conditional: 409 Conflict if stale)."""
        r = self._resource(resource)
        meta = obj.get("metadata", {})
        return await self.request("PUT", r.path(namespace=meta.get("namespace"), name=meta["name"],
                                                subresource=subresource), body=obj)

    async def replace_status(self, resource: res.Resource | str, obj: dict) -> dict:
        """PUT the ``status`` subresource of ``obj``."""
        return await self.replace(resource, obj, subresource="status")

    async def patch(self, resource: res.Resource | str, name: str, patch: dict | list, *,
                    namespace: str | None = None, subresource: str | None = None,
                    patch_type: str = "application/merge-patch+json") -> dict:
        """PATCH one object; ``patch_type`` is the Content-Type (merge, json or strategic)."""
        r = self._resource(resource)
        return await self.request("PATCH", r.path(namespace=namespace, name=name, subresource=subresource),
                                  body=patch, content_type=patch_type)

    async def delete(self, resource: res.Resource | str, name: str, *, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict | None = None) -> dict:
        """DELETE one object with DeleteOptions; returns the server's answer
        (the object, e.g. a pod now Terminating, or a Status). Raises ApiError."""
        r = self._resource(resource)
        opts: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", r.path(namespace=namespace, name=name), body=opts)

    async def watch(self, resource: res.Resource | str, *, namespace: str | None = None,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[tuple[str, dict]]:
        """Stream watch events as ``(type, object)`` pairs: ADDED, MODIFIED,
        DELETED, BOOKMARK, ERROR (object is then a Status; 410 means relist).

        Ends when the server closes the stream. Raises ApiError if the watch
        request itself is refused.
        """
        r = self._resource(resource)
        params = {"watch": "true", "resourceVersion": resource_version,
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None}
        timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=(timeout_seconds or 300) + 30)
        async with self._http.stream("GET", r.path(namespace=namespace), params=_clean(params),
                                     timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, (await resp.aread()).decode(errors="replace"))
            # Bytes split on newlines, not aiter_lines: no text decoding of every event first.
            pending = b""
            async for chunk in resp.aiter_bytes():
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        event = orjson.loads(line)
                        yield event.get("type", ""), event.get("object") or {}
            if pending.strip():
                event = orjson.loads(pending)
                yield event.get("type", ""), event.get("object") or {}

    async def stream_text(self, path: str, *, params: dict | None = None) -> AsyncIterator[str]:
        """Stream a text body (e.g. ``pods/NAME/log?follow=true``) chunk by chunk."""
        async with self._http.stream("GET", path, params=_clean(params),
                                     timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=None)) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, (await resp.aread()).decode(errors="replace"))
            async for chunk in resp.aiter_text():
                yield chunk


def _clean(params: dict | None) -> dict | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


def _error(code: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError(code, body)
    return ApiError(code, None, text.strip()[:500])


async def retry_on_conflict(fn, *, attempts: int = 5, delay: float = 0.05):
    """Call the coroutine function ``fn()`` again while it raises a 409 Conflict
    (mirrors client-go's retry.RetryOnConflict); re-raises the last error."""
    for i in range(attempts):
        try:
            return await fn()
        except ApiError as e:
            if e.code != 409 or i == attempts - 1:
                raise
            await asyncio.sleep(delay * (2 ** i))
