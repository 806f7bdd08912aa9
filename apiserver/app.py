"""The kube-apiserver process: wiring of storage, registries and HTTP routes; bootstrap of system objects.

Mirrors kube-apiserver's ``cmd/kube-apiserver/app`` + ``pkg/controlplane``:
one generic Store per served resource over one etcd client, each with its
watch cache; routes for /version, health, discovery and the resource paths;
at start the system namespaces (default, kube-system, kube-public,
kube-node-lease) and the ``kubernetes`` Service (first address of the
service range) with its Endpoints are created if absent.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from apiserver import errors, openapi
from apiserver import exec as exec_routes
from apiserver.admission import AdmissionChain, plugins as admission_plugins
from apiserver import bootstrappolicy
from apiserver.authn import APISERVER_USER, InsecureAuthenticator
from apiserver.authn import oidc
from apiserver.authn import options as auth_options
from apiserver.authn.filter import AuthenticationFilter
from apiserver.authn.options import AuthOptions
from apiserver.discovery import VERSION, Discovery, aggregated_content_type, negotiate_aggregated
from apiserver.handlers import ResourceHandler, json_response, status_response
from apiserver.kubeletlocation import KubeletClientConfig
from apiserver import metrics, metrics_api
from apiserver import registry
from apiserver.registry import authorization, core, ipallocator, scheduling
from apiserver.registry.authentication import TokenRequestREST
from apiserver.registry.namespace import NamespaceStore
from apiserver.registry.store import Store
from apiserver.storage import encryption, etcd3

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class Config:
    """Command-line configuration (flag names as kube-apiserver's)."""

    etcd_servers: list[str]
    bind_address: str = "127.0.0.1"
    extra_bind_addresses: list[str] = field(default_factory=list)  # kubeling: more addresses to listen on
    secure_port: int = 6443
    service_cluster_ip_range: str = "10.96.0.0/12"
    advertise_address: str | None = None
    watch_cache_size: int = 1024
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    enable_admission_plugins: list[str] = field(default_factory=list)
    disable_admission_plugins: list[str] = field(default_factory=list)
    encryption_provider_config: str | None = None  # EncryptionConfiguration file: encryption at rest
    # HTTPS serving (file paths; without a certificate: plain HTTP, kubeling's default). With
    # client_ca_file, verified client certificates reach the app as scope["extensions"]["tls"].
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    client_ca_file: str | None = None
    # TLS to etcd and to kubelets (file paths; None: plain connections, kubeling's default).
    etcd_cafile: str | None = None
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    kubelet: KubeletClientConfig = field(default_factory=KubeletClientConfig)
    # Authentication / authorization flags (defaults: no authenticator, AlwaysAllow, as before).
    auth: AuthOptions = field(default_factory=AuthOptions)


class APIServer:
    """Storage and registries of one apiserver; ``start()``/``stop()`` around serving."""

    def __init__(self, config: Config):
        self.config = config
        self.etcd = etcd3.Etcd3Store(config.etcd_servers, cafile=config.etcd_cafile, certfile=config.etcd_certfile,
                                     keyfile=config.etcd_keyfile)
        self.ip_range = ipallocator.Range(config.service_cluster_ip_range)
        self.admission = AdmissionChain()  # plugins below, once the stores they read exist
        self.ready = False
        self.stores: dict[tuple[str, str, str], Store] = {}
        namespaces = NamespaceStore(core.NamespaceStrategy(), self.etcd, namespace_getter=self.get_namespace,
                                    admission=self.admission, watch_cache_capacity=config.watch_cache_size)
        strategies = registry.served_strategies(self.ip_range)
        for store in [namespaces] + [registry.store_class(s)(s, self.etcd, namespace_getter=self.get_namespace,
                                           admission=self.admission, watch_cache_capacity=config.watch_cache_size)
                                     for s in strategies]:
            i = store.info
            self.stores[(i.group, i.version, i.resource)] = store
        self.namespaces = namespaces
        namespaces.content_stores = [s for s in self.stores.values() if s.info.namespaced]
        if config.encryption_provider_config:
            self.etcd.transformers = encryption.StorageTransformers(
                encryption.EncryptionConfig.load(config.encryption_provider_config),
                [(s.info.group, s.info.resource, s.info.prefix()) for s in self.stores.values()])
        self.admission.plugins = admission_plugins.build(
            admission_plugins.enabled_plugins(config.enable_admission_plugins, config.disable_admission_plugins),
            store=self.store, namespace_getter=self.get_namespace,
            explicitly_enabled=frozenset(config.enable_admission_plugins),
            not_ready_seconds=config.default_not_ready_toleration_seconds,
            unreachable_seconds=config.default_unreachable_toleration_seconds,
            # the projected token volume only where the TokenRequest API can issue its tokens
            mount_service_account_token=bool(config.auth.service_account_signing_key_file
                                             and config.auth.service_account_issuers),
            authorizer=lambda: self.auth.authorizer)  # built below; asked per request
        address = config.advertise_address or config.bind_address
        self.discovery = Discovery([s.info for s in self.stores.values()] + metrics_api.RESOURCE_INFOS
                                   + authorization.RESOURCE_INFOS, server_address=f"{address}:{config.secure_port}")
        self.kubelet_client = config.kubelet.http_client()
        self.auth = auth_options.build(config.auth, client_ca_file=config.client_ca_file, store=self.store)
        self.handler = ResourceHandler(self.stores, authenticators=[self.auth.authenticator or InsecureAuthenticator()],
                                       authorizer=self.auth.authorizer, kubelet_client=self.kubelet_client)
        self.handler.routes = authorization.routes(
            authorizer=self.auth.authorizer, authenticator=self.auth.authenticator,
            token_request=TokenRequestREST(self.auth.generator, self.store, audiences=self.auth.audiences,
                                           max_expiration=self.auth.max_expiration, admission=self.admission))
        self.metrics = metrics_api.MetricsAPI(self.stores, kubelet=self.kubelet_client,
                                              authenticators=self.handler.authenticators,
                                              authorizer=self.handler.authorizer)
        self._bootstrap_task: asyncio.Task | None = None
        self._schemas_task: asyncio.Task | None = None

    async def get_namespace(self, name: str) -> dict | None:
        """The Namespace object (watch cache first, etcd when the cache has not seen it)."""
        obj = self.namespaces.cacher.items.get(self.namespaces.info.key(None, name))
        if obj is not None:
            return obj
        kv = await self.etcd.get(self.namespaces.info.key(None, name))
        return kv.obj if kv else None

    def store(self, resource: str, group: str = "", version: str = "v1") -> Store:
        """The Store of a resource by name."""
        return self.stores[(group, version, resource)]

    async def start(self) -> None:
        """Start the watch caches and the bootstrap of system objects (retried until etcd answers)."""
        for s in self.stores.values():
            s.cacher.start()
        self._bootstrap_task = asyncio.create_task(self._bootstrap_loop())
        # The official schemas back fieldValidation and strategic merge patch;
        # load them off the event loop before the first request needs them.
        self._schemas_task = asyncio.create_task(asyncio.to_thread(openapi.preload))

    def stop_watches(self) -> None:
        """End every client watch (first step of a graceful shutdown)."""
        for s in self.stores.values():
            for w in list(s.cacher.watchers):
                w.stop()

    async def stop(self) -> None:
        """Stop caches, the bootstrap task and close clients."""
        if self._bootstrap_task:
            self._bootstrap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._bootstrap_task
        for s in self.stores.values():
            await s.cacher.stop()
        await self.kubelet_client.aclose()
        await self.etcd.close()

    async def _bootstrap_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.bootstrap()
                for s in self.stores.values():
                    await s.cacher.wait_ready(timeout=30.0)
                self.ready = True
                log.info("apiserver ready")
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("bootstrap not done yet: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ensure(self, store: Store, ns: str | None, obj: dict) -> None:
        try:
            await store.create(ns, obj, user=APISERVER_USER)
        except errors.StatusError as e:
            if e.code != 409:
                raise

    async def bootstrap(self) -> None:
        """Create the system namespaces and the ``kubernetes`` Service/Endpoints if absent."""
        for ns in SYSTEM_NAMESPACES:
            await self._ensure(self.namespaces, None, {"metadata": {"name": ns}})
        first = self.ip_range.first()
        labels = {"component": "apiserver", "provider": "kubernetes"}
        await self._ensure(self.store("services"), "default", {"metadata": {"name": "kubernetes", "labels": labels},
                           "spec": {"clusterIP": first, "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                                                   "targetPort": self.config.secure_port}]}})
        address = self.config.advertise_address or self.config.bind_address
        if address not in ("0.0.0.0", "::"):
            await self._ensure(self.store("endpoints"), "default", {
                "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": address}],
                             "ports": [{"name": "https", "port": self.config.secure_port, "protocol": "TCP"}]}]})
            # Upstream's apiserver keeps the kubernetes EndpointSlice beside the Endpoints (its
            # endpoint reconciler writes both), so slice readers (kube-proxy, DNS, dashboards) see it.
            await self._ensure(self.store("endpointslices", "discovery.k8s.io"), "default", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.config.secure_port, "protocol": "TCP"}]})
        # upstream's scheduling/bootstrap-system-priority-classes post-start hook
        for pc in scheduling.system_priority_classes():
            await self._ensure(self.store("priorityclasses", "scheduling.k8s.io"), None, pc)
        if "RBAC" in self.config.auth.authorization_modes:  # upstream's rbac/bootstrap-roles post-start hook
            g = bootstrappolicy.GROUP
            await bootstrappolicy.ensure({r: self.store(r, g) for r in ("clusterroles", "clusterrolebindings")},
                                         user=APISERVER_USER)


def build_app(config: Config) -> tuple[FastAPI, APIServer]:
    """The FastAPI app serving ``config`` and its APIServer (started by the app's lifespan)."""
    server = APIServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await server.start()
        try:
            yield
        finally:
            server.stop_watches()
            await server.stop()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/version")
    async def version() -> Response:
        """GET /version: the version.Info JSON (gitVersion, platform, ...) kubectl reads."""
        return json_response(VERSION)

    async def health(request: Request) -> Response:
        """GET /healthz, /livez, /readyz: "ok"; /readyz answers 500 until the server has finished bootstrapping."""
        if request.url.path.startswith("/readyz") and not server.ready:
            return PlainTextResponse("[-]bootstrap not finished\nreadyz check failed", status_code=500)
        return PlainTextResponse("ok")

    for path in ("/healthz", "/livez", "/readyz"):
        app.add_api_route(path, health, methods=["GET"])
    if server.auth.public_keys and config.auth.service_account_issuers:  # ServiceAccountIssuerDiscovery
        oidc.install(app, config.auth.service_account_issuers[0], server.auth.public_keys)

    spec = openapi.OpenAPIV3([s.info for s in server.stores.values()])

    @app.get("/openapi/v3")
    async def openapi_root() -> Response:
        """GET /openapi/v3: the served group/versions with their hashed document URLs."""
        return Response(await asyncio.to_thread(spec.root), media_type="application/json")

    @app.get("/openapi/v3/{path:path}")
    async def openapi_document(request: Request, path: str) -> Response:
        """GET /openapi/v3/<api/v1|apis/g/v>: the group/version's OpenAPI 3.0 document (kube-openapi's
        handler3 caching: 301 to the current ?hash=, immutable when it matches, 304 on If-None-Match)."""
        found = await asyncio.to_thread(spec.document, path.strip("/"))
        if found is None:
            return status_response(errors.path_not_found())
        data, etag = found
        want = request.query_params.get("hash")
        if want and want != etag:
            return Response(status_code=301, headers={"Location": f"/openapi/v3/{path.strip('/')}?hash={etag}"})
        headers = {"ETag": f'"{etag}"', "Vary": "Accept",
                   "Cache-Control": "public, immutable" if want else "no-cache, private"}
        if request.headers.get("if-none-match", "").strip('"') == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    exec_routes.install(app, server)  # pods/exec and pods/portforward websockets; before the catch-all
    metrics.install(app, server)  # GET /metrics; before the catch-all

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def dispatch(request: Request, path: str) -> Response:
        """Every other path: discovery under /api and /apis, else the REST handler; errors become a Status JSON
        (404 NotFound for paths outside /api and /apis).
        """
        try:
            parts = [p for p in path.split("/") if p]
            if request.method == "GET" and parts and parts[0] in ("api", "apis") and len(parts) <= 3 \
                    and not (parts[0] == "api" and len(parts) == 3):
                agg = negotiate_aggregated(request.headers.get("accept")) if len(parts) == 1 else None
                if agg:
                    resp = json_response(server.discovery.aggregated(parts[0], agg),
                                         content_type=aggregated_content_type(agg))
                    resp.headers["vary"] = "Accept"
                    return resp
                doc = discovery_doc(server.discovery, parts)
                if doc is None:
                    raise errors.path_not_found()
                return json_response(doc)
            if not parts or parts[0] not in ("api", "apis"):
                raise errors.path_not_found()
            if parts[1:3] == [metrics_api.GROUP, metrics_api.VERSION]:
                return json_response(await server.metrics.handle(request, parts[3:]))
            return await server.handler.handle(request)
        except errors.StatusError as e:
            return status_response(e)
        except etcd3.StorageError as e:
            log.warning("storage error on %s %s: %s", request.method, request.url.path, e)
            return status_response(errors.StatusError(503, "ServiceUnavailable", f"storage unavailable: {e}"))
        except Exception as e:  # a bug: answer with a Status, never a traceback
            log.exception("internal error on %s %s", request.method, request.url.path)
            return status_response(errors.internal(str(e) or type(e).__name__))

    app.add_middleware(ResourceFastPath, dispatch=dispatch)
    if server.auth.authenticator is not None:  # outermost: every request is authenticated first
        app.add_middleware(AuthenticationFilter, authenticator=server.auth.authenticator,
                           authorizer=server.auth.authorizer)
    app.add_middleware(metrics.RequestMetrics)  # outermost: every answer is counted
    return app, server


class ResourceFastPath:
    """ASGI middleware sending plain HTTP requests under /api and /apis straight to the catch-all ``dispatch``.

    Those paths have exactly one route, so the router's matching and FastAPI's
    per-request dependency solving (a good share of a small request's CPU)
    are skipped; the answers are the same. Websockets (pods/exec) and other
    paths and methods go through FastAPI as before.
    """

    METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app, *, dispatch):
        self.app = app
        self.dispatch = dispatch

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in self.METHODS:
            path = scope["path"]
            # pods/exec, attach and portforward have their own routes, which also answer (400)
            # requests that are not websockets.
            if (path.startswith("/api/") or path.startswith("/apis/") or path in ("/api", "/apis")) and \
                    not path.endswith(("/exec", "/attach", "/portforward")):
                response = await self.dispatch(Request(scope, receive, send), path[1:])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def discovery_doc(discovery: Discovery, parts: list[str]) -> dict | None:
    """The discovery document of ``/api``, ``/api/v1``, ``/apis``, ``/apis/g`` or ``/apis/g/v``."""
    if parts == ["api"]:
        return discovery.api_versions()
    if parts[0] == "api" and len(parts) == 2:
        return discovery.resource_list("", parts[1])
    if parts == ["apis"]:
        return discovery.api_group_list()
    if len(parts) == 2:
        return discovery.api_group(parts[1])
    return discovery.resource_list(parts[1], parts[2])
