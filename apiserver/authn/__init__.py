"""Authentication: who sent a request.

Mirrors k8s.io/apiserver's ``pkg/authentication`` request authenticators
(client certificates, bearer tokens). Over this milestone's plain HTTP every
request is the anonymous user in group ``system:masters`` (full access, as
the insecure port of old apiservers); TLS client-certificate and token
authenticators plug in as further Authenticator implementations.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

from starlette.requests import Request


class UserInfo(NamedTuple):
    """The authenticated user: name and groups."""

    name: str
    groups: tuple[str, ...] = ()


class Authenticator(Protocol):
    """Returns the user of a request, None if this authenticator does not apply."""

    async def authenticate(self, request: Request) -> UserInfo | None:
        """The user of ``request``, or None if this authenticator does not recognise it."""


class InsecureAuthenticator:
    """Every request is ``system:anonymous`` in ``system:masters`` (plain HTTP, local use only)."""

    async def authenticate(self, request: Request) -> UserInfo | None:
        """Always ``system:anonymous`` in groups ``system:masters`` and ``system:unauthenticated``."""
        return UserInfo("system:anonymous", ("system:masters", "system:unauthenticated"))


async def authenticate(authenticators: list[Authenticator], request: Request) -> UserInfo | None:
    """The first user any authenticator recognises, or None (-> 401)."""
    for a in authenticators:
        user = await a.authenticate(request)
        if user is not None:
            return user
    return None
