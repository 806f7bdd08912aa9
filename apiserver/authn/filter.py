"""The authentication filter: every request is authenticated before any handler runs.

Mirrors k8s.io/apiserver's ``pkg/endpoints/filters/authentication.go`` with
the request authenticator that pkg/kubeapiserver/authenticator builds: the
union of the client-certificate authenticator and the bearer-token
authenticator (static token file, ServiceAccount JWTs, bootstrap tokens),
``system:authenticated`` added to whoever authenticates, and the anonymous
user last when ``--anonymous-auth`` is on. A credential that is presented and
wrong is a 401 even when anonymous requests are allowed (union.NewFailOnError).

Impersonation headers (``kubectl --as``) are honoured next
(apiserver/authn/impersonation.py). The filter then authorizes non-resource
requests (``/healthz``, ``/version``, discovery, ``/openapi``) as upstream's
WithAuthorization; resource requests are authorized by the resource
handlers, which know the resource's RequestInfo (apiserver/handlers.py,
exec.py, metrics_api.py).
"""
from __future__ import annotations

import base64
import binascii
import logging
from typing import Protocol

from starlette.requests import HTTPConnection

from apiserver import errors
from apiserver.authn import (ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS, SCOPE_KEY, AuthenticationError,
                             UserInfo)
from apiserver.authn import impersonation
from apiserver.authz import check, non_resource
from apiserver.handlers import status_response

log = logging.getLogger(__name__)

WEBSOCKET_TOKEN_PREFIX = "base64url.bearer.authorization.k8s.io."
MAX_TOKEN_BYTES = 64 * 1024


class TokenAuthenticator(Protocol):
    """authenticator.Token: the user of a bearer token, None if not recognised, AuthenticationError if invalid."""

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The user of ``token``; None when this authenticator does not know it."""


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer token of a request (``Authorization: Bearer <token>``; for websockets also the
    ``base64url.bearer.authorization.k8s.io.<b64>`` subprotocol), None when there is none."""
    auth = conn.headers.get("authorization", "").strip()
    if auth:
        parts = auth.split(" ", 2)
        if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1]:
            return parts[1]
        return None
    if conn.scope.get("type") == "websocket":
        for proto in conn.scope.get("subprotocols") or ():
            if isinstance(proto, str) and proto.startswith(WEBSOCKET_TOKEN_PREFIX):
                enc = proto[len(WEBSOCKET_TOKEN_PREFIX):]
                try:
                    token = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    return None
                return token or None
    return None


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """``user`` with ``system:authenticated`` among its groups (group.AuthenticatedGroupAdder)."""
    if ALL_AUTHENTICATED in user.groups or user.name == ANONYMOUS or ALL_UNAUTHENTICATED in user.groups:
        return user
    return user._replace(groups=(*user.groups, ALL_AUTHENTICATED))


class RequestAuthenticator:
    """The union request authenticator (an Authenticator of apiserver.authn).

    ``x509`` authenticates client certificates (or None), ``tokens`` are
    tried in order on a bearer token, ``anonymous`` answers for requests
    that carry no credential at all.
    """

    def __init__(self, *, x509=None, tokens: list[TokenAuthenticator] | None = None, anonymous: bool = True,
                 anonymous_paths: frozenset[str] | None = None):
        self.x509 = x509
        self.tokens = list(tokens or [])
        self.anonymous = anonymous
        self.anonymous_paths = anonymous_paths  # None: anonymous on any path

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The user of a bearer token by the token authenticators (TokenReview uses this); raises
        AuthenticationError for a token that is invalid or that no authenticator knows."""
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError("invalid bearer token")
        failure = None
        for a in self.tokens:
            try:
                user = await a.authenticate_token(token)
            except AuthenticationError as e:
                failure = failure or e
                continue
            if user is not None:
                return with_authenticated_group(user)
        raise failure or AuthenticationError("invalid bearer token")

    async def authenticate(self, conn: HTTPConnection) -> UserInfo | None:
        """The request's user; None (-> 401) when it carries no credential and anonymous is off; raises
        AuthenticationError (-> 401) when every presented credential failed."""
        failure = None
        if self.x509 is not None:
            try:
                user = await self.x509.authenticate(conn)
            except AuthenticationError as e:
                failure = e
                user = None
            if user is not None:
                return with_authenticated_group(user)
        token = bearer_token(conn) if self.tokens else None
        if token is not None:
            try:
                return await self.authenticate_token(token)
            except AuthenticationError as e:
                failure = failure or e
        if failure is not None:
            raise failure
        if self.anonymous and (self.anonymous_paths is None or conn.url.path in self.anonymous_paths):
            return UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
        return None


def is_resource_path(path: str) -> bool:
    """Whether ``path`` is a resource request (RequestInfoFactory: ``/api/V/...`` with a resource,
    ``/apis/G/V/...``), as opposed to discovery and other non-resource paths."""
    parts = [p for p in path.split("/") if p]
    return (len(parts) >= 3 and parts[0] == "api") or (len(parts) >= 4 and parts[0] == "apis")


class AuthenticationFilter:
    """ASGI middleware: authenticate every HTTP and websocket request (401 Status when that fails),
    leave the user in ``scope[SCOPE_KEY]``, authorize non-resource requests (403 Status)."""

    def __init__(self, app, *, authenticator: RequestAuthenticator, authorizer):
        self.app = app
        self.authenticator = authenticator
        self.authorizer = authorizer

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        try:
            try:
                user = await self.authenticator.authenticate(conn)
            except AuthenticationError as e:
                # Bounded: hostile requests must not turn into megabytes of log.
                log.info("unable to authenticate %s %.200s: %.300s", scope.get("method", "WS"), scope.get("path"), e)
                user = None
            if user is None:
                raise errors.StatusError(401, "Unauthorized", "Unauthorized")
            if impersonation.requested(conn):
                user = await impersonation.impersonate(conn, user, self.authorizer)
            scope[SCOPE_KEY] = user
            path = scope.get("path") or "/"
            if scope["type"] == "http" and not is_resource_path(path):
                await check(self.authorizer, user, non_resource(scope["method"].lower(), path))
        except errors.StatusError as e:
            await _reject(scope, receive, send, e)
            return
        await self.app(scope, receive, send)


async def _reject(scope, receive, send, e: errors.StatusError) -> None:
    """Answer ``e`` as a Status JSON (HTTP) or refuse the websocket handshake (uvicorn answers 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": e.message[:120]})
        return
    await status_response(e)(scope, receive, send)
