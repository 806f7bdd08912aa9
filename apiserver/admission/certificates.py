"""CertificateApproval, CertificateSigning and CertificateSubjectRestriction: who may approve, sign and ask for what.

Mirrors plugin/pkg/admission/certificates/{approval,signing,subjectrestriction}:

- CertificateApproval: an update of ``certificatesigningrequests/approval``
  needs the ``approve`` verb on ``certificates.k8s.io/signers`` named after
  the request's ``signerName`` (or ``<domain>/*``);
- CertificateSigning: a ``/status`` update that sets or changes
  ``status.certificate`` needs the ``sign`` verb on that signer;
- CertificateSubjectRestriction: a request for the
  ``kubernetes.io/kube-apiserver-client`` signer may not carry the group
  ``system:masters`` in its subject (no human approval mistake can then mint
  a cluster-admin certificate).

Updating the subresource is authorized by the request's own RBAC check
before admission; these plugins add the per-signer check. ``authorizer()``
returns the apiserver's authorizer (None: no authorization configured,
everything allowed).
"""
from __future__ import annotations

from typing import Callable

from apiserver.admission import Attributes, forbidden, resource_group, resource_name
from apiserver.authz import RequestAttributes
from kubeling.api import certificates as certs

GROUP = "certificates.k8s.io"


def _is_csr(attrs: Attributes) -> bool:
    return resource_group(attrs) == GROUP and resource_name(attrs) == "certificatesigningrequests"


async def signer_allowed(authorizer, user, verb: str, signer_name: str) -> bool:
    """``verb`` on the signer ``signer_name`` or on its ``<domain>/*`` wildcard (certificates.IsAuthorizedForSignerName)."""
    if authorizer is None:
        return True
    for name in (signer_name, signer_name.split("/", 1)[0] + "/*"):
        allowed, _ = await authorizer.authorize(user, RequestAttributes(verb, GROUP, "signers", None, None, name))
        if allowed:
            return True
    return False


class CertificateApproval:
    """Approving or denying needs ``approve`` on the request's signer."""

    def __init__(self, authorizer: Callable[[], object]):
        self.authorizer = authorizer

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """403 ``user not permitted to approve requests with signerName "X"`` unless allowed."""
        if attrs.operation != "update" or attrs.subresource != "approval" or not _is_csr(attrs) or obj is None:
            return
        signer = (obj.get("spec") or {}).get("signerName", "")
        if not await signer_allowed(self.authorizer(), attrs.user, "approve", signer):
            raise forbidden(attrs, f'user not permitted to approve requests with signerName "{signer}"')


class CertificateSigning:
    """Setting ``status.certificate`` needs ``sign`` on the request's signer."""

    def __init__(self, authorizer: Callable[[], object]):
        self.authorizer = authorizer

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """403 ``user not permitted to sign requests with signerName "X"`` unless allowed."""
        if attrs.operation != "update" or attrs.subresource != "status" or not _is_csr(attrs) or obj is None:
            return
        new_cert = (obj.get("status") or {}).get("certificate")
        if not new_cert or new_cert == ((old or {}).get("status") or {}).get("certificate"):
            return
        signer = (obj.get("spec") or {}).get("signerName", "")
        if not await signer_allowed(self.authorizer(), attrs.user, "sign", signer):
            raise forbidden(attrs, f'user not permitted to sign requests with signerName "{signer}"')


class CertificateSubjectRestriction:
    """No ``system:masters`` in requests for the kube-apiserver-client signer."""

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """403 when a kube-apiserver-client request's subject has O=system:masters."""
        if attrs.operation != "create" or not _is_csr(attrs) or obj is None:
            return
        spec = obj.get("spec") or {}
        if spec.get("signerName") != certs.KUBE_APISERVER_CLIENT:
            return
        try:
            _, orgs = certs.subject(certs.parse_csr(certs.decode_pem(spec.get("request"))))
        except ValueError:
            return  # validation already refused it
        if "system:masters" in orgs:
            raise forbidden(attrs, f"use of {certs.KUBE_APISERVER_CLIENT} signer with system:masters group is "
                                   f"not allowed")
