"""Authentication: who sent a request.

Mirrors k8s.io/apiserver's ``pkg/authentication``: ``user.Info`` (name, uid,
groups, extra) and request authenticators tried in order (client
certificates, bearer tokens, anonymous). With no authentication flag given,
every request is the anonymous user in group ``system:masters`` (the
insecure port of old apiservers, and what kubeling ran before); the
authenticators of ``apiserver/authn/*.py`` plug in behind upstream's flags.

The authenticated user is kept in the ASGI scope under ``SCOPE_KEY`` by the
authentication filter (apiserver/authn/filter.py), so the handlers and the
admission chain see the same UserInfo without authenticating twice.
"""
from __future__ import annotations

import types
from typing import Mapping, NamedTuple, Protocol

from starlette.requests import HTTPConnection

# Where the authentication filter leaves the request's UserInfo (upstream: request.WithUser on the context).
SCOPE_KEY = "kubeling.user"

ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"

_NO_EXTRA: Mapping[str, tuple[str, ...]] = types.MappingProxyType({})


class UserInfo(NamedTuple):
    """The authenticated user (k8s.io/apiserver user.Info): name, groups, uid and extra (key -> values).

    Built positionally as before (``UserInfo("jane", ("dev",))``); ``uid`` and
    ``extra`` are keyword fields (``extra`` e.g. ``{"authentication.kubernetes.io/pod-name": ("web",)}``).
    """

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = _NO_EXTRA

    def as_user_info(self) -> dict:
        """The authentication.k8s.io ``UserInfo`` JSON (username, uid, groups, extra) of TokenReview and
        SelfSubjectReview statuses."""
        out: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"


def node_name(user: UserInfo) -> str | None:
    """The node a user acts for (pkg/auth/nodeidentifier): ``system:node:NAME`` in ``system:nodes``,
    else None. Shared by the Node authorizer and NodeRestriction admission."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):] or None


# The apiserver's own writes (bootstrap objects, internal updates): upstream's loopback client identity.
APISERVER_USER = UserInfo("system:apiserver", (MASTERS, ALL_AUTHENTICATED))


class Authenticator(Protocol):
    """Returns the user of a request, None if this authenticator does not apply.

    Mirrors authenticator.Request; a credential that is present but wrong
    raises AuthenticationError (-> 401 whatever the other authenticators say).
    """

    async def authenticate(self, request: HTTPConnection) -> UserInfo | None:
        """The user of ``request``, or None if this authenticator does not recognise it."""


class AuthenticationError(Exception):
    """A credential was presented and is invalid (expired, bad signature, unknown token) -> 401."""


class InsecureAuthenticator:
    """Every request is ``system:anonymous`` in ``system:masters`` (plain HTTP, local use only)."""

    async def authenticate(self, request: HTTPConnection) -> UserInfo | None:
        """Always ``system:anonymous`` in groups ``system:masters`` and ``system:unauthenticated``."""
        return UserInfo(ANONYMOUS, (MASTERS, ALL_UNAUTHENTICATED))


async def authenticate(authenticators: list[Authenticator], request: HTTPConnection) -> UserInfo | None:
    """The request's user: the one the authentication filter already found (scope ``SCOPE_KEY``), else the
    first user any authenticator recognises, else None (-> 401). AuthenticationError counts as None here;
    the filter is where it becomes a 401 before any handler runs."""
    cached = request.scope.get(SCOPE_KEY)
    if cached is not None:
        return cached
    for a in authenticators:
        try:
            user = await a.authenticate(request)
        except AuthenticationError:
            return None
        if user is not None:
            return user
    return None
