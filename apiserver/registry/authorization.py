"""authorization.k8s.io/v1 reviews, and the routes of every create-only auth resource.

Mirrors pkg/registry/authorization/{selfsubjectaccessreview,
subjectaccessreview,localsubjectaccessreview,selfsubjectrulesreview}: the
review is validated, turned into authorizer attributes and answered by the
apiserver's own authorizer chain (``status.allowed`` / ``status.reason``);
nothing is stored. ``kubectl auth can-i`` posts SelfSubjectAccessReviews
(and SelfSubjectRulesReviews for ``--list``), ``kubectl auth whoami`` a
SelfSubjectReview. ``routes()`` maps these resources, TokenReview and the
``serviceaccounts/token`` subresource to their handlers for
apiserver/handlers.py.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from apiserver import errors, protobuf
from apiserver.authn import MASTERS, UserInfo
from apiserver.authz import AlwaysAllow, RequestAttributes, Union, non_resource
from apiserver.authz.node import NodeAuthorizer, node_name
from apiserver.authz.rbac import RBACAuthorizer
from apiserver.handlers import json_response, read_body, read_json
from apiserver.registry import authentication
from apiserver.registry.rest import ResourceInfo
from kubeling.api.resources import Resource

GROUP = "authorization.k8s.io"
VERSION = "v1"

RESOURCE_INFOS = [
    ResourceInfo(Resource(GROUP, VERSION, "selfsubjectaccessreviews", "SelfSubjectAccessReview", False), "",
                 verbs=("create",)),
    ResourceInfo(Resource(GROUP, VERSION, "selfsubjectrulesreviews", "SelfSubjectRulesReview", False), "",
                 verbs=("create",)),
    ResourceInfo(Resource(GROUP, VERSION, "subjectaccessreviews", "SubjectAccessReview", False), "",
                 verbs=("create",)),
    ResourceInfo(Resource(GROUP, VERSION, "localsubjectaccessreviews", "LocalSubjectAccessReview", True), "",
                 verbs=("create",)),
] + authentication.RESOURCE_INFOS

Route = Callable[[Request, object, UserInfo], Awaitable[Response]]


async def read_review(request: Request, kind: str, *, optional: bool = False):
    """The body of a review: JSON / YAML as any create, or the protobuf kubectl's typed clients send."""
    ct = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ct == protobuf.MEDIA_TYPE:
        raw = await read_body(request)
        if not raw and optional:
            return None
        return protobuf.decode(raw, kind)
    return await read_json(request, optional=optional)


def _field(kind: str, path: str, msg: str) -> errors.StatusError:
    return errors.invalid(kind, "", [errors.Cause("FieldValueInvalid", f"Invalid value: {msg}", path)], group=GROUP)


def _review(body, kind: str) -> dict:
    if not isinstance(body, dict):
        raise errors.bad_request(f"a {kind} object is required")
    if body.get("kind") not in (None, "", kind):
        raise errors.bad_request(f"expected a {kind}, got {body.get('kind')!r}")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise errors.invalid(kind, "", [errors.Cause("FieldValueRequired", "Required value", "spec")], group=GROUP)
    return {"kind": kind, "apiVersion": f"{GROUP}/{VERSION}", "metadata": body.get("metadata") or {}, "spec": spec}


def attributes(kind: str, spec: dict) -> RequestAttributes:
    """Authorizer attributes of a review spec (``resourceAttributes`` xor ``nonResourceAttributes``),
    422 with upstream's wording when both or neither are given or a field has the wrong type."""
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None):
        raise _field(kind, "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes "
                     "must be specified")
    src = ra if ra is not None else nra
    if not isinstance(src, dict) or not all(isinstance(v, str) for k, v in src.items()
                                            if k not in ("fieldSelector", "labelSelector")):
        raise _field(kind, "spec.resourceAttributes" if ra is not None else "spec.nonResourceAttributes",
                     "must be an object of strings")
    if nra is not None:
        return non_resource(nra.get("verb", ""), nra.get("path", ""))
    return RequestAttributes(ra.get("verb", ""), ra.get("group", ""), ra.get("resource", ""),
                             ra.get("subresource") or None, ra.get("namespace") or None, ra.get("name") or None)


async def _decide(authorizer, user: UserInfo, attrs: RequestAttributes) -> dict:
    ok, why = await authorizer.authorize(user, attrs)
    status: dict = {"allowed": ok}
    if why:
        status["reason"] = why
    return status


def rules_for(authorizer, user: UserInfo, namespace: str) -> tuple[list[dict], list[dict], bool, list[str]]:
    """``(resourceRules, nonResourceRules, incomplete, errors)`` of ``user`` in ``namespace`` under the
    authorizer chain (the RuleResolver of each mode; the Node authorizer's graph is not listable, so its
    answer is marked incomplete, as upstream)."""
    everything = ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}], [{"verbs": ["*"],
                                                                               "nonResourceURLs": ["*"]}])
    if isinstance(authorizer, AlwaysAllow):
        return everything[0], everything[1], False, []
    members = authorizer.authorizers if isinstance(authorizer, Union) else [authorizer]
    if isinstance(authorizer, Union) and MASTERS in user.groups:
        return everything[0], everything[1], False, []
    res, nonres, incomplete, errs = [], [], False, []
    for a in members:
        rules: list[dict] = []
        if isinstance(a, AlwaysAllow):
            return everything[0], everything[1], False, []
        if isinstance(a, RBACAuthorizer):
            rules, e = a.rules_for(user, namespace or None)
            errs += e
        elif isinstance(a, NodeAuthorizer) and node_name(user):
            rules, incomplete = list(a.rules), True
        for r in rules:
            if r.get("nonResourceURLs"):
                nonres.append({"verbs": list(r.get("verbs") or []), "nonResourceURLs": list(r["nonResourceURLs"])})
            else:
                out = {"verbs": list(r.get("verbs") or []), "apiGroups": list(r.get("apiGroups") or []),
                       "resources": list(r.get("resources") or [])}
                if r.get("resourceNames"):
                    out["resourceNames"] = list(r["resourceNames"])
                res.append(out)
    return res, nonres, incomplete, errs


def routes(*, authorizer, authenticator, token_request: authentication.TokenRequestREST) -> dict:
    """``(group, version, resource, subresource) -> Route`` of the create-only auth resources; each route
    answers 405 to verbs other than create."""

    def create_only(fn):
        async def route(request: Request, info, user: UserInfo) -> Response:
            if info.verb != "create" or (info.name is not None and info.subresource is None):
                raise errors.method_not_allowed(request.method, info.resource)
            return json_response(await fn(request, info, user), 201)
        return route

    async def ssar(request, info, user):
        review = _review(await read_review(request, "SelfSubjectAccessReview"), "SelfSubjectAccessReview")
        attrs = attributes("SelfSubjectAccessReview", review["spec"])
        return {**review, "status": await _decide(authorizer, user, attrs)}

    async def sar(request, info, user, *, kind="SubjectAccessReview", namespace=None):
        review = _review(await read_review(request, kind), kind)
        spec = review["spec"]
        if not spec.get("user") and not spec.get("groups"):
            raise _field(kind, "spec.user", "at least one of user or group must be specified")
        attrs = attributes(kind, spec)
        if namespace is not None:
            ra = spec.get("resourceAttributes")
            if ra is None or (ra.get("namespace") or namespace) != namespace:
                raise _field(kind, "spec.resourceAttributes.namespace", "must match metadata.namespace")
            attrs = attrs._replace(namespace=namespace)
            review["metadata"] = {**review["metadata"], "namespace": namespace}
        extra = spec.get("extra") if isinstance(spec.get("extra"), dict) else {}
        subject = UserInfo(str(spec.get("user") or ""), tuple(str(g) for g in spec.get("groups") or ()),
                           uid=str(spec.get("uid") or ""),
                           extra={str(k): tuple(v) for k, v in extra.items() if isinstance(v, list)})
        return {**review, "status": await _decide(authorizer, subject, attrs)}

    async def lsar(request, info, user):
        if not info.namespace:
            raise errors.path_not_found()
        return await sar(request, info, user, kind="LocalSubjectAccessReview", namespace=info.namespace)

    async def ssrr(request, info, user):
        review = _review(await read_review(request, "SelfSubjectRulesReview"), "SelfSubjectRulesReview")
        ns = review["spec"].get("namespace") or ""
        res, nonres, incomplete, errs = rules_for(authorizer, user, ns)
        status: dict = {"resourceRules": res, "nonResourceRules": nonres, "incomplete": incomplete}
        if errs:
            status["evaluationError"] = ", ".join(errs)
        return {**review, "status": status}

    async def token_review(request, info, user):
        return await authentication.token_review(authenticator, await read_review(request, "TokenReview"))

    async def self_subject_review(request, info, user):
        return authentication.self_subject_review(user, await read_review(request, "SelfSubjectReview",
                                                                             optional=True))

    async def token(request, info, user):
        if info.namespace is None or info.name is None:
            raise errors.path_not_found()
        return await token_request.create(info.namespace, info.name, await read_review(request, "TokenRequest"),
                                          user=user)

    a, n = GROUP, authentication.GROUP
    return {(a, VERSION, "selfsubjectaccessreviews", None): create_only(ssar),
            (a, VERSION, "subjectaccessreviews", None): create_only(sar),
            (a, VERSION, "localsubjectaccessreviews", None): create_only(lsar),
            (a, VERSION, "selfsubjectrulesreviews", None): create_only(ssrr),
            (n, VERSION, "tokenreviews", None): create_only(token_review),
            (n, VERSION, "selfsubjectreviews", None): create_only(self_subject_review),
            ("", "v1", "serviceaccounts", "token"): create_only(token)}
