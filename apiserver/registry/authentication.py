"""authentication.k8s.io/v1: TokenRequest (``serviceaccounts/NAME/token``), TokenReview, SelfSubjectReview.

Mirrors pkg/registry/core/serviceaccount/storage/token.go (TokenREST: the
ServiceAccount and the bound object must exist, ``expirationSeconds`` at
least 600 and capped by ``--service-account-max-token-expiration``, the
audiences default to the apiserver's ``--api-audiences``) and
pkg/registry/authentication/{tokenreview,selfsubjectreview}: create-only
resources that are never stored; the answer is the request with its status
filled in.
"""
from __future__ import annotations

import datetime

from apiserver import errors
from apiserver.admission import Attributes
from apiserver.authn import APISERVER_USER, AuthenticationError, UserInfo
from apiserver.registry.rest import ResourceInfo
from kubeling.api.resources import Resource

GROUP = "authentication.k8s.io"
VERSION = "v1"
MIN_EXPIRATION_SECONDS = 600
DEFAULT_EXPIRATION_SECONDS = 3600
MAX_EXPIRATION_SECONDS = 1 << 32

RESOURCE_INFOS = [
    ResourceInfo(Resource(GROUP, VERSION, "tokenreviews", "TokenReview", False), "", verbs=("create",)),
    ResourceInfo(Resource(GROUP, VERSION, "selfsubjectreviews", "SelfSubjectReview", False), "", verbs=("create",)),
]


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _object(body, kind: str) -> dict:
    """The request body as a ``kind`` object of authentication.k8s.io/v1 (400 for anything else)."""
    if not isinstance(body, dict):
        raise errors.bad_request(f"a {kind} object is required")
    if body.get("kind") not in (None, "", kind):
        raise errors.bad_request(f"expected a {kind}, got {body.get('kind')!r}")
    spec = body.get("spec", {})
    if spec is not None and not isinstance(spec, dict):
        raise errors.invalid(kind, "", [errors.Cause("FieldValueInvalid", "Invalid value: must be an object",
                                                     "spec")], group=GROUP)
    return {"kind": kind, "apiVersion": f"{GROUP}/{VERSION}", "metadata": body.get("metadata") or {},
            "spec": spec or {}}


class TokenRequestREST:
    """POST ``/api/v1/namespaces/NS/serviceaccounts/NAME/token``: a signed, bound ServiceAccount JWT.

    ``generator`` is an apiserver.authn.serviceaccount.TokenGenerator (None: tokens cannot be issued,
    as an apiserver without ``--service-account-signing-key-file``); ``store(resource)`` the apiserver's
    Store lookup; ``audiences`` the default audiences; ``max_expiration`` seconds (0: no cap).
    """

    def __init__(self, generator, store, *, audiences: list[str], max_expiration: float = 0, admission=None):
        self.generator = generator
        self.store = store
        self.audiences = list(audiences)
        self.max_expiration = max_expiration
        self.admission = admission

    async def create(self, namespace: str, name: str, body, *, user: UserInfo = APISERVER_USER) -> dict:
        """The TokenRequest with ``status.token`` / ``status.expirationTimestamp``; 404 for a missing
        ServiceAccount or bound object, 422 for bad spec fields, 409 for a stale bound uid. The request
        passes the admission chain first as ``create`` of ``serviceaccounts/token`` (the object is the
        TokenRequest, so NodeRestriction can check a node binds tokens to its own pods only)."""
        if self.generator is None:
            raise errors.StatusError(405, "MethodNotAllowed", "token creation is not enabled on this server "
                                     "(--service-account-signing-key-file)")
        req = _object(body, "TokenRequest")
        spec = req["spec"]
        causes = []
        exp = spec.get("expirationSeconds", DEFAULT_EXPIRATION_SECONDS)
        if not isinstance(exp, int) or isinstance(exp, bool):
            causes.append(errors.Cause("FieldValueInvalid", "Invalid value: must be an integer",
                                       "spec.expirationSeconds"))
        elif exp < MIN_EXPIRATION_SECONDS:
            causes.append(errors.Cause("FieldValueInvalid", f"Invalid value: {exp}: may not specify a duration "
                                       f"less than 10 minutes", "spec.expirationSeconds"))
        elif exp > MAX_EXPIRATION_SECONDS:
            causes.append(errors.Cause("FieldValueTooLong", f"Invalid value: {exp}: may not specify a duration "
                                       f"larger than 2^32 seconds", "spec.expirationSeconds"))
        audiences = spec.get("audiences") or self.audiences
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            causes.append(errors.Cause("FieldValueInvalid", "Invalid value: must be a list of strings",
                                       "spec.audiences"))
        ref = spec.get("boundObjectRef")
        if ref is not None and (not isinstance(ref, dict) or ref.get("kind") not in ("Pod", "Secret", "Node")):
            causes.append(errors.Cause("FieldValueNotSupported", 'Unsupported value: supported values: "Pod", '
                                       '"Secret", "Node"', "spec.boundObjectRef.kind"))
        elif ref is not None and not ref.get("name"):
            causes.append(errors.Cause("FieldValueRequired", "Required value", "spec.boundObjectRef.name"))
        if causes:
            raise errors.invalid("TokenRequest", name, causes, group=GROUP)
        if self.max_expiration and exp > self.max_expiration:
            exp = int(self.max_expiration)
        sa_store = self.store("serviceaccounts")
        sa = await sa_store.get(namespace, name)
        req["spec"] = {**spec, "audiences": audiences, "expirationSeconds": exp}
        if self.admission is not None:
            await self.admission.admit(Attributes("create", sa_store.info, namespace, name, "token", user), req, None)
        ref = req["spec"].get("boundObjectRef")
        bound: dict = {}
        if ref is not None:
            kind = ref["kind"]
            resource = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[kind]
            obj = await self.store(resource).get(None if kind == "Node" else namespace, ref["name"])
            meta = obj.get("metadata") or {}
            if ref.get("uid") and ref["uid"] != meta.get("uid"):
                raise errors.conflict(resource, ref["name"], f"the UID in the bound object reference "
                                      f"({ref['uid']}) does not match the UID in record. The object might have "
                                      f"been deleted and then recreated")
            bound[kind.lower()] = {"name": ref["name"], "uid": meta.get("uid", "")}
            if kind == "Pod":
                node = ((obj.get("spec") or {}).get("nodeName"))
                if node:
                    try:
                        n = await self.store("nodes").get(None, node)
                        bound["node"] = {"name": node, "uid": (n.get("metadata") or {}).get("uid", "")}
                    except errors.StatusError:
                        pass
        token, expires = self.generator.generate(
            namespace=namespace, sa_name=name, sa_uid=(sa.get("metadata") or {}).get("uid", ""),
            audiences=audiences, expiration_seconds=exp, pod=bound.get("pod"), secret=bound.get("secret"),
            node=bound.get("node"))
        meta = {**req["metadata"], "name": name, "namespace": namespace,
                "creationTimestamp": _rfc3339(expires - exp)}
        spec_out = {"audiences": audiences, "expirationSeconds": exp, "boundObjectRef": ref}
        return {**req, "metadata": meta, "spec": spec_out,
                "status": {"token": token, "expirationTimestamp": _rfc3339(expires)}}


async def token_review(authenticator, body) -> dict:
    """POST tokenreviews: ``status.authenticated`` and ``status.user`` (or ``status.error``) for
    ``spec.token`` under the bearer-token authenticators (``authenticator.authenticate_token``)."""
    review = _object(body, "TokenReview")
    token = review["spec"].get("token")
    if not isinstance(token, str) or not token:
        raise errors.invalid("TokenReview", "", [errors.Cause("FieldValueRequired", "Required value: token",
                                                              "spec.token")], group=GROUP)
    status: dict = {"authenticated": False, "user": {}}
    if authenticator is None or not hasattr(authenticator, "authenticate_token"):
        status["error"] = "token authentication is not enabled on this server"
    else:
        try:
            user = await authenticator.authenticate_token(token)
            status = {"authenticated": True, "user": user.as_user_info(),
                      "audiences": review["spec"].get("audiences") or []}
        except AuthenticationError as e:
            status["error"] = str(e)
    return {**review, "status": status}


def self_subject_review(user: UserInfo, body) -> dict:
    """POST selfsubjectreviews (``kubectl auth whoami``): ``status.userInfo`` of the caller."""
    review = _object(body if body is not None else {}, "SelfSubjectReview")
    return {**review, "metadata": {**review["metadata"], "creationTimestamp": _rfc3339(
        datetime.datetime.now(datetime.timezone.utc).timestamp())}, "status": {"userInfo": user.as_user_info()}}
