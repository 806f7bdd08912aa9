"""csrapproving: auto-approve kubelet client certificate requests, as upstream's sarApprover.

Mirrors pkg/controller/certificates/approver/sarapprove.go. A CSR for the
signer ``kubernetes.io/kube-apiserver-client-kubelet`` whose request is a
kubelet client certificate (CN ``system:node:<name>``, O ``system:nodes``,
no SANs, client-auth usages) is approved when a SubjectAccessReview says
its requester (``spec.username/groups/uid/extra``) may ``create``
``certificatesigningrequests/selfnodeclient`` (a node renewing its own
certificate: requester == CN) or ``certificatesigningrequests/nodeclient``
(a bootstrap token asking for a new node's). Anything else is left for a
human (``kubectl certificate approve``); nothing is ever denied here.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable, NamedTuple

from controllers.controller_utils import BaseController
from kubeling.api import certificates as certs
from kubeling.client import ApiError, Client, Informer, deep_copy
from kubeling.client.record import now_rfc3339

log = logging.getLogger(__name__)

GROUP = "certificates.k8s.io"


class Recognizer(NamedTuple):
    """One kind of request the approver knows: the subresource the requester needs ``create`` on."""

    subresource: str
    message: str


SELF_NODE_CLIENT = Recognizer("selfnodeclient", "Auto approving self kubelet client certificate after "
                                                "SubjectAccessReview.")
NODE_CLIENT = Recognizer("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview.")

# Does the requester have create on certificatesigningrequests/<subresource>?
AccessCheck = Callable[[dict, str], Awaitable[bool]]


def recognize(csr_obj: dict) -> list[Recognizer]:
    """The recognizers that match ``csr_obj`` (most specific first; [] = leave it to a human).
    A request that does not parse matches none."""
    spec = csr_obj.get("spec") or {}
    if spec.get("signerName") != certs.KUBE_APISERVER_CLIENT_KUBELET:
        return []
    try:
        x509cr = certs.parse_csr(certs.decode_pem(spec.get("request")))
    except ValueError:
        return []
    if certs.kubelet_client_problem(x509cr, spec.get("usages")):
        return []
    cn, _ = certs.subject(x509cr)
    out = [SELF_NODE_CLIENT] if spec.get("username") == cn else []
    return out + [NODE_CLIENT]


async def decide(csr_obj: dict, allowed: AccessCheck) -> Recognizer | None:
    """The recognizer under which ``csr_obj`` is approved, or None (already decided, issued, unrecognized,
    or the requester lacks the permission of every recognizer that matches)."""
    if certs.condition(csr_obj, "Approved") or certs.condition(csr_obj, "Denied") \
            or (csr_obj.get("status") or {}).get("certificate"):
        return None
    for r in recognize(csr_obj):
        if await allowed(csr_obj, r.subresource):
            return r
    return None


async def subject_access_review(client: Client, csr_obj: dict, subresource: str) -> bool:
    """POST a SubjectAccessReview for the CSR's requester: create certificatesigningrequests/<subresource>."""
    spec = csr_obj.get("spec") or {}
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": spec.get("username", ""), "groups": spec.get("groups") or [],
                    "uid": spec.get("uid", ""), "extra": spec.get("extra") or {},
                    "resourceAttributes": {"group": GROUP, "resource": "certificatesigningrequests",
                                           "subresource": subresource, "verb": "create"}}}
    out = await client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=sar)
    return bool((out.get("status") or {}).get("allowed"))


class CSRApprovingController(BaseController):
    """Approves recognized kubelet client CSRs after a SubjectAccessReview; keys are CSR names."""

    name = "csrapproving"

    def __init__(self, client: Client, csr_informer: Informer, *, access_check: AccessCheck | None = None):
        super().__init__(client, [csr_informer])
        self.lister = csr_informer.lister
        self.allowed = access_check or (lambda obj, sub: subject_access_review(client, obj, sub))
        csr_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        """Approve CSR ``key`` if a recognizer allows it. Raises ApiError to retry."""
        csr = self.lister.get(key)
        if csr is None:
            return
        r = await decide(csr, self.allowed)
        if r is None:
            return
        csr = deep_copy(csr)
        now = now_rfc3339()
        csr.setdefault("status", {}).setdefault("conditions", []).append({
            "type": "Approved", "status": "True", "reason": "AutoApproved", "message": r.message,
            "lastUpdateTime": now, "lastTransitionTime": now})
        try:
            await self.client.replace("certificatesigningrequests", csr, subresource="approval")
        except ApiError as e:
            if e.code == 404:
                return
            raise
        log.info("approved certificate signing request %s of %s (%s)", key, csr["spec"].get("username"),
                 r.subresource)
