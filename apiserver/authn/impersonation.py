"""User impersonation: ``Impersonate-User`` / ``-Group`` / ``-Uid`` / ``-Extra-*`` headers (``kubectl --as``).

Mirrors k8s.io/apiserver's ``pkg/endpoints/filters/impersonation.go``: each
impersonated attribute is authorized for the real user as verb
``impersonate`` on ``users`` / ``groups`` / ``serviceaccounts`` (core group)
or ``uids`` / ``userextras/<key>`` (authentication.k8s.io); when all are
allowed the request continues as the impersonated user, with
``system:authenticated`` added (``system:serviceaccounts[:NS]`` too for a
ServiceAccount without explicit groups), as upstream.
"""
from __future__ import annotations

from starlette.requests import HTTPConnection

from apiserver import errors
from apiserver.authn import ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS, UserInfo
from apiserver.authn.serviceaccount import SA_GROUP, split_username
from apiserver.authz import RequestAttributes, check

USER = "impersonate-user"
GROUP = "impersonate-group"
UID = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"


def requested(conn: HTTPConnection) -> bool:
    """Whether the request carries any impersonation header."""
    return any(k.startswith("impersonate-") for k in conn.headers.keys())


async def impersonate(conn: HTTPConnection, user: UserInfo, authorizer) -> UserInfo:
    """The user ``user`` acts as; StatusError 403 (upstream's message) when a header is not allowed,
    400 when groups, uid or extras come without a user."""
    headers = conn.headers
    name = headers.get(USER, "")
    groups = headers.getlist(GROUP)
    uid = headers.get(UID, "")
    extra: dict[str, tuple[str, ...]] = {}
    for key in headers.keys():
        if key.startswith(EXTRA_PREFIX):
            extra[key[len(EXTRA_PREFIX):]] = tuple(headers.getlist(key))
    if not name:
        raise errors.bad_request("requested impersonation of groups, uid or extra without impersonating a user")
    checks = []
    sa_ident = split_username(name)
    if sa_ident is not None:
        ns, sa = sa_ident
        checks.append(RequestAttributes("impersonate", "", "serviceaccounts", None, ns, sa))
        if not groups:
            groups = [SA_GROUP, f"{SA_GROUP}:{ns}"]
    else:
        checks.append(RequestAttributes("impersonate", "", "users", None, None, name))
    checks += [RequestAttributes("impersonate", "", "groups", None, None, g) for g in groups]
    if uid:
        checks.append(RequestAttributes("impersonate", "authentication.k8s.io", "uids", None, None, uid))
    for key, values in extra.items():
        checks += [RequestAttributes("impersonate", "authentication.k8s.io", "userextras", key, None, v)
                   for v in values]
    for attrs in checks:
        await check(authorizer, user, attrs)
    if name == ANONYMOUS:
        if ALL_UNAUTHENTICATED not in groups:
            groups.append(ALL_UNAUTHENTICATED)
    elif ALL_AUTHENTICATED not in groups:
        groups.append(ALL_AUTHENTICATED)
    return UserInfo(name, tuple(groups), uid=uid, extra=extra)
