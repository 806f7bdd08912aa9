"""Authorization: may this user do this verb on this resource.

Mirrors k8s.io/apiserver's ``pkg/authorization/authorizer`` (Attributes ->
Allow/Deny). This milestone uses AlwaysAllow; RBAC or Node authorizers
implement the same Protocol later.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

from apiserver.authn import UserInfo


class RequestAttributes(NamedTuple):
    """What a request does: verb (get/list/watch/create/update/patch/delete), API group, resource, subresource, namespace, name."""

    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None


class Authorizer(Protocol):
    """Returns (allowed, reason)."""

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """``(allowed, reason)`` for ``user`` doing ``attrs``; reason explains a denial."""


class AlwaysAllow:
    """Allows everything (the --authorization-mode=AlwaysAllow of upstream)."""

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """Always ``(True, "")``: every request is allowed (as ``--authorization-mode=AlwaysAllow``)."""
        return True, ""
