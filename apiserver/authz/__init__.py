"""Authorization: may this user do this verb on this resource (or non-resource path).

Mirrors k8s.io/apiserver's ``pkg/authorization/authorizer`` (Attributes ->
Allow / NoOpinion with a reason) and ``pkg/authorization/union`` (the
``--authorization-mode`` list tried in order, the first Allow wins). The
default mode is AlwaysAllow (what kubeling ran before); ``Node,RBAC`` is the
production setting (apiserver/authz/node.py, apiserver/authz/rbac.py).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

from apiserver import errors
from apiserver.authn import MASTERS, UserInfo


class RequestAttributes(NamedTuple):
    """What a request does (authorizer.AttributesRecord without the user).

    Resource requests: verb (get/list/watch/create/update/patch/delete/deletecollection), API group,
    resource, subresource, namespace, name. Non-resource requests (``/healthz``, ``/version``,
    ``/api``, ``/openapi/v3``) have ``resource_request=False``, ``path`` and the lower-case HTTP
    method as verb.
    """

    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    path: str = ""
    resource_request: bool = True


def non_resource(verb: str, path: str) -> RequestAttributes:
    """Attributes of a non-resource request (``get`` of ``/healthz``)."""
    return RequestAttributes(verb, "", "", None, None, None, path, False)


class Authorizer(Protocol):
    """Returns (allowed, reason); not allowed means "no opinion" (the next authorizer is asked)."""

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """``(allowed, reason)`` for ``user`` doing ``attrs``; reason explains a denial."""


class AlwaysAllow:
    """Allows everything (the --authorization-mode=AlwaysAllow of upstream)."""

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """Always ``(True, "")``: every request is allowed (as ``--authorization-mode=AlwaysAllow``)."""
        return True, ""


class AlwaysDeny:
    """Denies everything (``--authorization-mode=AlwaysDeny``, for tests)."""

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """Always ``(False, "")``."""
        return False, ""


class Union:
    """The authorizers of ``--authorization-mode`` in order (union.New): the first Allow wins, the
    reasons of the others are joined with ", " (upstream's aggregate of NoOpinion reasons).

    Members of ``system:masters`` are allowed before any mode is asked, as upstream's
    privileged-group authorizer placed first in the chain.
    """

    def __init__(self, authorizers: list[Authorizer]):
        self.authorizers = list(authorizers)

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """``(True, "")`` on the first Allow, else ``(False, joined reasons)``."""
        if MASTERS in user.groups:
            return True, ""
        reasons = []
        for a in self.authorizers:
            ok, why = await a.authorize(user, attrs)
            if ok:
                return True, why
            if why:
                reasons.append(why)
        return False, ", ".join(reasons)


def forbidden_message(user: UserInfo, attrs: RequestAttributes) -> str:
    """Upstream's responsewriters forbiddenMessage: ``User "jane" cannot list resource "pods" in API
    group "" in the namespace "other"`` (``at the cluster scope`` without a namespace; ``cannot get path
    "/x"`` for non-resource requests; the subresource joins the resource as ``pods/log``)."""
    if not attrs.resource_request:
        return f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    if attrs.namespace:
        return (f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" '
                f'in the namespace "{attrs.namespace}"')
    return f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" at the ' \
           f'cluster scope'


def forbidden(user: UserInfo, attrs: RequestAttributes, reason: str = "") -> errors.StatusError:
    """The 403 Status of a denied request, as responsewriters.Forbidden + apierrors.NewForbidden:
    ``pods is forbidden: User "jane" cannot list ...`` (``pods "web" is forbidden`` with a name,
    ``forbidden: User ... path "/x"`` for non-resource paths), ``: <reason>`` appended when given."""
    # responsewriters' sanitizer: the message never looks like HTML (quotes are fine).
    msg = forbidden_message(user, attrs).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    msg += f": {reason}" if reason else ""
    if not attrs.resource_request:
        return errors.StatusError(403, "Forbidden", f"forbidden: {msg}", details={})
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    details: dict = {}
    if attrs.name:
        details["name"] = attrs.name
        head = f'{qualified} "{attrs.name}" is forbidden'
    else:
        head = f"{qualified} is forbidden"
    if attrs.group:
        details["group"] = attrs.group
    details["kind"] = attrs.resource
    return errors.StatusError(403, "Forbidden", f"{head}: {msg}", details=details)


async def check(authorizer: Authorizer, user: UserInfo, attrs: RequestAttributes) -> None:
    """Raise the upstream 403 (``forbidden``) unless ``authorizer`` allows ``user`` doing ``attrs``."""
    ok, why = await authorizer.authorize(user, attrs)
    if not ok:
        raise forbidden(user, attrs, why)
