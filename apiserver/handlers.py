"""REST handlers: from an HTTP request under /api or /apis to a registry call and a JSON answer.

Mirrors k8s.io/apiserver's ``pkg/endpoints`` (RequestInfoFactory, the
handlers in ``handlers/{get,create,update,patch,delete,watch}.go``): the path
is parsed into a RequestInfo (group, version, namespace, resource, name,
subresource, verb), the request passes authentication -> authorization, then
the resource's Store does the work. Watches stream newline-delimited JSON
``{"type", "object"}`` events, one chunk per event.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import logging
from typing import NamedTuple

import httpx
import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from apiserver import authz, errors, fieldvalidation, printers, protobuf
from apiserver.authn import UserInfo, authenticate
from apiserver.authz import RequestAttributes
from apiserver.kubeletlocation import kubelet_url, pod_container, pod_kubelet
from apiserver.registry.store import Store, now_rfc3339, patch_function
from apiserver.storage import codec

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT = 1800
BOOKMARK_INTERVAL = 30.0


class RequestInfo(NamedTuple):
    """A parsed resource request (k8s.io/apiserver request.RequestInfo)."""

    verb: str
    group: str
    version: str
    namespace: str | None
    resource: str
    name: str | None
    subresource: str | None


def parse_request_info(method: str, path: str, query) -> RequestInfo | None:
    """RequestInfo of ``/api/v1/namespaces/default/pods/web/status`` etc.; None for discovery paths."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = False
    if rest[0] == "watch":  # deprecated /api/v1/watch/... paths
        watch_path, rest = True, rest[1:]
        if not rest:
            return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise errors.path_not_found()
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    watch = watch_path or query.get("watch") in ("true", "1", "True")
    verb = {"GET": ("watch" if watch else "list") if name is None else "get", "POST": "create",
            "PUT": "update", "PATCH": "patch",
            "DELETE": "deletecollection" if name is None else "delete"}.get(method, method.lower())
    return RequestInfo(verb, group, version, namespace, resource, name, sub)


def json_response(obj, code: int = 200, *, content_type: str = "application/json") -> Response:
    """Compact JSON answer."""
    return Response(codec.dumps(obj), status_code=code, media_type=content_type)


def list_response(store: Store, lst: dict) -> Response:
    """A ``<Kind>List`` answer whose items are the watch cache's shared JSON (Cacher.encode): the list
    is joined from already-encoded objects, not encoded again per request."""
    head = codec.dumps({k: v for k, v in lst.items() if k != "items"})
    items = b",".join([store.cacher.encode(o) for o in lst["items"]])
    body = head[:-1] + (b"," if len(head) > 2 else b"") + b'"items":[' + items + b"]}"
    return Response(body, media_type="application/json")


def status_response(e: errors.StatusError) -> Response:
    """The Status body of an error."""
    return json_response(e.status, e.code)


# Upstream's MaxRequestBodyBytes (k8s.io/apiserver server.Config): 3 MiB.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024


def too_large() -> errors.StatusError:
    """413 RequestEntityTooLarge, as apierrors.NewRequestEntityTooLargeError("limit is N")."""
    return errors.StatusError(413, "RequestEntityTooLarge",
                              f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}")


async def read_body(request: Request, *, limit: int = MAX_REQUEST_BODY_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes; 413 as soon as more arrive (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


# Body media types of create/update/delete requests: JSON and YAML; protobuf (apiserver/protobuf.py) for
# the kinds kubectl's typed clients post; no CBOR.
ACCEPTED_MEDIA_TYPES = ("application/json", "application/yaml")
BODY_MEDIA_TYPES = frozenset((*ACCEPTED_MEDIA_TYPES, "text/yaml", ""))


async def read_json(request: Request, *, optional: bool = False):
    """The request body decoded as JSON (YAML for ``application/yaml``, protobuf for kubectl's typed
    clients: apiserver/protobuf.py, 415 where a field would be lost); 400 for a malformed body,
    413 over MAX_REQUEST_BODY_BYTES (None when optional and empty)."""
    ct = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if ct == protobuf.MEDIA_TYPE and request.method != "PATCH":
        # kubectl's typed clients (create namespace|deployment|secret ...) send protobuf: decoded to the
        # same dict a JSON body gives, or a 415 asking for JSON when a field would otherwise be lost.
        raw = await read_body(request)
        if not raw and optional:
            return None
        return protobuf.decode(raw)
    if request.method != "PATCH" and ct not in BODY_MEDIA_TYPES:
        # As upstream's NegotiateInputSerializer: a body we cannot decode (protobuf, CBOR ...) is a
        # 415 naming what we take, never a JSON parse error (PATCH types are checked by the store).
        raise errors.StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format "
                                 "- accepted media types include: " + ", ".join(ACCEPTED_MEDIA_TYPES))
    raw = await read_body(request)
    if not raw.strip():
        if optional:
            return None
        raise errors.bad_request("the request body is empty; an object is required")
    if ct == "application/apply-patch+yaml":
        raise errors.unsupported_media_type(ct)
    if ct in ("application/yaml", "text/yaml"):
        try:
            # YAML timestamps and non-string keys have no JSON form: normalise them as JSON would.
            return json.loads(json.dumps(yaml.safe_load(raw.decode()), default=str))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise errors.bad_request(f"couldn't get version/kind; yaml parse error: {e}") from None
    try:
        return codec.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None


class ResourceHandler:
    """Serves every resource request of the apiserver (one instance per app)."""

    def __init__(self, stores: dict[tuple[str, str, str], Store], *, authenticators, authorizer,
                 kubelet_client: httpx.AsyncClient):
        self.stores = stores
        self.authenticators = authenticators
        self.authorizer = authorizer
        self.kubelet = kubelet_client
        self.routes: dict = {}  # (group, version, resource, subresource) -> async (request, info, user) -> Response

    def store_for(self, group: str, version: str, resource: str) -> Store:
        """The Store of a resource; 404 when not served."""
        store = self.stores.get((group, version, resource))
        if store is None:
            raise errors.path_not_found()
        return store

    async def handle(self, request: Request) -> Response:
        """Entry point of every /api/... and /apis/... resource request."""
        q = request.query_params
        info = parse_request_info(request.method, request.url.path, q)
        if info is None:
            raise errors.path_not_found()
        user = await authenticate(self.authenticators, request)
        if user is None:
            raise errors.StatusError(401, "Unauthorized", "Unauthorized")
        # Authorized before the resource is looked up, as upstream's WithAuthorization filter; a namespace's
        # own path is "in" that namespace (RequestInfoFactory), so a RoleBinding there can grant reading it.
        ns_attr = info.name if info.group == "" and info.resource == "namespaces" and info.namespace is None \
            else info.namespace
        await authz.check(self.authorizer, user, RequestAttributes(
            info.verb, info.group, info.resource, info.subresource, ns_attr, info.name, request.url.path))
        route = self.routes.get((info.group, info.version, info.resource, info.subresource))
        if route is not None:  # create-only auth resources and serviceaccounts/token (registry/authorization.py)
            return await route(request, info, user)
        store = self.store_for(info.group, info.version, info.resource)
        if store.info.namespaced is False and info.namespace is not None:
            raise errors.path_not_found()
        sub = info.subresource
        if sub is not None and sub not in store.info.subresources:
            raise errors.path_not_found()
        ns = info.namespace if store.info.namespaced else None
        if store.info.namespaced and info.name is not None and ns is None:
            raise errors.path_not_found()
        dry_run = q.get("dryRun") == "All"
        verb = info.verb
        if sub == "log":
            if verb != "get":
                raise errors.method_not_allowed(request.method, "pods/log")
            return await self.pod_log(store, ns, info.name, q)
        if sub == "binding":
            if verb != "create":
                raise errors.method_not_allowed(request.method, "pods/binding")
            return await self.bind(store, ns, info.name, await read_json(request), user=user)
        if sub == "scale":
            return await self.scale(store, request, verb, ns, info.name, dry_run=dry_run, user=user)
        if sub == "finalize" and verb != "update":
            raise errors.method_not_allowed(request.method, "namespaces/finalize")
        if sub in ("status", "finalize", "approval") and verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed(request.method, f"{info.resource}/{sub}")
        as_table = printers.wants_table(request.headers.get("accept"))
        include = q.get("includeObject") or "Metadata"
        if verb == "get":
            obj = await store.get(ns, info.name)
            if as_table and sub is None:
                return json_response(printers.table(store.info.kind, [obj], include_object=include,
                                                    resource_version=obj["metadata"].get("resourceVersion", "")))
            return json_response(obj)
        if verb == "list":
            limit = q.get("limit")
            try:
                limit_n = int(limit) if limit else 0
            except ValueError:
                raise errors.bad_request(f"invalid limit {limit!r}") from None
            lst = await store.list(
                ns, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                resource_version=q.get("resourceVersion"), limit=limit_n, continue_token=q.get("continue"))
            if as_table:
                return json_response(printers.table(store.info.kind, lst["items"], include_object=include,
                                                    list_meta=lst["metadata"]))
            return list_response(store, lst)
        if verb == "watch":
            return self.watch(store, ns, q, table_include=include if as_table else None)
        if verb == "create":
            if info.name is not None:
                raise errors.method_not_allowed(request.method, info.resource)
            body, warnings = self.check_fields(store, sub, q, await read_json(request))
            return with_warnings(json_response(await store.create(ns, body, dry_run=dry_run, user=user), 201),
                                 warnings)
        if verb == "update":
            reader = getattr(store, "read_body", read_json)  # CSRs also take kubectl's protobuf approvals
            body, warnings = self.check_fields(store, sub, q, await reader(request), operation="update")
            obj, created = await store.update(ns, info.name, body, subresource=sub, dry_run=dry_run, user=user)
            return with_warnings(json_response(obj, 201 if created else 200), warnings)
        if verb == "patch":
            content_type = request.headers.get("content-type", "")
            body, warnings = self.check_fields(store, sub, q, await read_json(request), patch_type=content_type)
            return with_warnings(json_response(await store.patch(ns, info.name, content_type, body,
                                                                 subresource=sub, dry_run=dry_run, user=user)),
                                 warnings)
        if verb in ("delete", "deletecollection"):
            options = await read_json(request, optional=True) or {}
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            if "gracePeriodSeconds" in q:
                try:
                    options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
                except ValueError:
                    raise errors.bad_request("gracePeriodSeconds must be an integer") from None
            if "propagationPolicy" in q:
                options["propagationPolicy"] = q["propagationPolicy"]
            policy = options.get("propagationPolicy")
            if policy not in (None, "Orphan", "Background", "Foreground"):
                raise errors.invalid("DeleteOptions", "", [errors.Cause(
                    "FieldValueNotSupported", f'Unsupported value: "{policy}": supported values: "Background", '
                    f'"Foreground", "Orphan"', "propagationPolicy")])
            if verb == "deletecollection":
                return json_response(await store.delete_collection(
                    ns, options, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                    user=user))
            return json_response(await store.delete(ns, info.name, options, dry_run=dry_run, user=user))
        raise errors.method_not_allowed(request.method, info.resource)

    @staticmethod
    def check_fields(store: Store, sub: str | None, q, body, *, patch_type: str | None = None,
                     operation: str = "create"):
        """``(body without unknown fields, Warning values)`` under the request's ``fieldValidation``
        (apiserver/fieldvalidation.py); 400 under Strict. The endpoint's kind is the subresource's if any."""
        kind, group, version = store.info.kind, store.info.group, store.info.version
        if sub in store.info.subresources:
            kind, group, version = store.info.subresources[sub][:3]
        return fieldvalidation.check(body, group=group, version=version, kind=kind,
                                     value=q.get("fieldValidation"), patch_type=patch_type, operation=operation)

    # ---------------------------------------------------------------- watch

    def watch(self, store: Store, ns: str | None, q, *, table_include: str | None = None) -> Response:
        """Chunked NDJSON watch; a too-old resourceVersion gives one ERROR event (410) then the end.

        With ``table_include`` each object is sent as a one-row Table (column
        definitions in the first event only), for ``kubectl get -w``.
        """
        try:
            timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be a number") from None
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        try:
            watcher = store.watch(ns, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                                  resource_version=q.get("resourceVersion"))
        except errors.StatusError as e:
            if e.code != 410:
                raise
            status = e.status

            async def expired():
                yield _line("ERROR", status)
            return StreamingResponse(expired(), media_type="application/json")
        info = store.info

        async def events():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            first = True
            try:
                while True:
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    try:
                        ev = await watcher.next(min(left, BOOKMARK_INTERVAL))
                    except StopAsyncIteration:
                        return
                    if ev is None:
                        if bookmarks and loop.time() < deadline:
                            yield _line("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version,
                                                     "metadata": {"resourceVersion": str(max(
                                                         watcher.revision, store.cacher.revision))}})
                        continue
                    if table_include is not None:
                        etype, obj = ev
                        ev = (etype, printers.table(info.kind, [obj], include_object=table_include,
                                                    headers=first, resource_version=obj["metadata"].get(
                                                        "resourceVersion", "")))
                        first = False
                        yield _line(*ev)
                    else:
                        yield store.cacher.event_line(*ev)
            finally:
                watcher.stop()
        return StreamingResponse(events(), media_type="application/json")

    # ---------------------------------------------------------------- subresources

    async def bind(self, store: Store, ns: str, name: str, body, *, user: UserInfo) -> Response:
        """POST pods/NAME/binding: set spec.nodeName once, add the PodScheduled condition (201 Status Success)."""
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict) or not body["target"].get("name"):
            raise errors.invalid("Binding", name, [errors.Cause("FieldValueRequired", "Required value", "target.name")])
        if (body.get("metadata") or {}).get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({body['metadata']['name']}) does not match the "
                                     f"name on the URL ({name})")
        node = body["target"]["name"]

        def assign(pod: dict) -> dict:
            meta, spec = pod["metadata"], pod.setdefault("spec", {})
            if meta.get("deletionTimestamp"):
                raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned "
                                      f"to a host")
            if spec.get("nodeName"):
                raise errors.conflict("pods/binding", name, f'pod {name} is already assigned to node '
                                      f'"{spec["nodeName"]}"')
            uid = (body.get("metadata") or {}).get("uid")
            if uid and uid != meta.get("uid"):
                raise errors.conflict("pods/binding", name, f"Precondition failed: UID in precondition: {uid}, "
                                      f"UID in object meta: {meta.get('uid')}")
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            status["conditions"] = conds
            return pod
        await store.guaranteed_update(ns, name, assign, raw=True, user=user)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    async def scale(self, store: Store, request: Request, verb: str, ns: str, name: str, *, dry_run: bool,
                    user: UserInfo) -> Response:
        """GET/PUT/PATCH deployments|replicasets/NAME/scale as autoscaling/v1 Scale."""
        strategy = store.strategy
        if verb == "get":
            return json_response(strategy.to_scale(await store.get(ns, name)))
        if verb not in ("update", "patch"):
            raise errors.method_not_allowed(request.method, f"{store.info.resource}/scale")
        body = await read_json(request)
        if verb == "update":
            scale_in = store._decode(body, kind="Scale", api_version="autoscaling/v1")

            def mutate(obj: dict) -> dict:
                return strategy.from_scale(obj, scale_in)
        else:
            apply = patch_function(request.headers.get("content-type", ""))

            def mutate(obj: dict) -> dict:
                try:
                    patched = apply(strategy.to_scale(obj), body)
                except ValueError as e:
                    raise errors.bad_request(str(e)) from None
                return strategy.from_scale(obj, patched)
        out = await store.guaranteed_update(ns, name, mutate, dry_run=dry_run, user=user)
        return json_response(strategy.to_scale(out))

    async def pod_log(self, store: Store, ns: str, name: str, q) -> Response:
        """GET pods/NAME/log: proxied to the kubelet's /containerLogs/NS/POD/CONTAINER, streamed as text/plain."""
        validate_log_options(name, q)
        pod = await store.get(ns, name)
        container = pod_container(pod, q.get("container"))
        where = await pod_kubelet(self.stores, pod)
        params = {k: q[k] for k in ("follow", "tailLines", "timestamps", "sinceSeconds", "sinceTime", "limitBytes",
                                    "previous") if k in q}
        url = kubelet_url(self.kubelet, where, f"/containerLogs/{ns}/{name}/{container}")
        try:
            upstream = await self.kubelet.send(self.kubelet.build_request("GET", url, params=params), stream=True)
        except httpx.HTTPError as e:
            raise errors.internal(f"Get \"{url}\": {e}") from None
        if upstream.status_code != 200:
            text = (await upstream.aread()).decode(errors="replace")
            await upstream.aclose()
            # The kubelet's refusals (unknown container, no previous run, still waiting) reach kubectl as
            # BadRequest, as upstream ("Error from server (BadRequest): previous terminated container ...").
            if 400 <= upstream.status_code < 500:
                raise errors.bad_request(text.strip() or f"kubelet answered {upstream.status_code}")
            raise errors.internal(text.strip() or f"kubelet answered {upstream.status_code}")

        async def body():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError as e:
                log.info("log stream of %s/%s ended: %s", ns, name, e)
            finally:
                await upstream.aclose()
        return StreamingResponse(body(), media_type="text/plain")


def validate_log_options(name: str, q) -> None:
    """422 Invalid PodLogOptions as upstream's ValidatePodLogOptions (tailLines >= 0, limitBytes > 0,
    sinceSeconds > 0, at most one of sinceTime / sinceSeconds); 400 for values that are not integers."""
    causes = []
    for field, low, msg in (("tailLines", 0, "must be greater than or equal to 0"),
                            ("limitBytes", 1, "must be greater than 0"),
                            ("sinceSeconds", 1, "must be greater than 0")):
        if field not in q:
            continue
        try:
            v = int(q[field])
        except ValueError:
            raise errors.bad_request(f"{field}: invalid integer {q[field]!r}") from None
        if v < low:
            causes.append(errors.Cause("FieldValueInvalid", f"Invalid value: {v}: {msg}", field))
    if "sinceSeconds" in q and "sinceTime" in q:
        causes.append(errors.Cause("FieldValueForbidden",
                                   "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified", ""))
    if "sinceTime" in q:
        try:
            datetime.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(f"sinceTime: invalid RFC3339 time {q['sinceTime']!r}") from None
    if causes:
        raise errors.invalid("PodLogOptions", name, causes)


def with_warnings(response: Response, warnings: list[str]) -> Response:
    """``response`` with one ``Warning`` header per value (k8s.io/apiserver's warning recorder)."""
    for w in warnings:
        response.headers.append("Warning", w)
    return response


def _line(etype: str, obj: dict) -> bytes:
    return codec.dumps({"type": etype, "object": obj}) + b"\n"
