"""What certificates.k8s.io/v1 requests mean, shared by the apiserver, the controllers and the kubelet.

Mirrors ``pkg/apis/certificates/helpers.go`` (ParseCSR, IsKubeletClientCSR,
IsKubeletServingCSR) and the well-known signer names of
``k8s.io/api/certificates/v1``: which subject, SANs and usages a kubelet's
client or serving certificate request may carry. Each check returns the
reason a request does not qualify ("" when it does), which the approver
logs and the signer writes into a Failed condition.
"""
from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.x509.oid import NameOID

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"

# Usages a kubelet client / serving request may ask for; the first named is required.
KUBELET_CLIENT_USAGES = frozenset({"client auth", "digital signature", "key encipherment"})
KUBELET_SERVING_USAGES = frozenset({"server auth", "digital signature", "key encipherment"})


def decode_pem(value) -> str:
    """The PEM text of a base64 []byte field (``spec.request``, ``status.certificate``). Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be base64-encoded PEM")
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("must be base64-encoded PEM") from None


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    """The x509 request of a PEM ``CERTIFICATE REQUEST`` block (certificates.ParseCSR).
    Raises ValueError with upstream's reason when it is not one or its signature is wrong."""
    text = pem.strip()
    if not text.startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except ValueError as e:
        raise ValueError(f"failed to parse certificate request: {e}") from None
    if not csr.is_signature_valid:
        raise ValueError("x509: signature verification failure")
    return csr


def subject(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """(CommonName, Organizations) of the request's subject."""
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(cn[0].value) if cn else ""), [str(o) for o in orgs]


def sans(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str], list[str], list[str]]:
    """(DNS names, IP addresses, emails, URIs) of the request's subjectAltName extension."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (ext.get_values_for_type(x509.DNSName), [str(i) for i in ext.get_values_for_type(x509.IPAddress)],
            ext.get_values_for_type(x509.RFC822Name), ext.get_values_for_type(x509.UniformResourceIdentifier))


def _usages_problem(usages, allowed: frozenset, required: str) -> str:
    have = set(usages or [])
    if not have <= allowed:
        return f"usages did not match {sorted(allowed)}"
    if required not in have:
        return f"usages must include {required!r}"
    return ""


def kubelet_client_problem(csr: x509.CertificateSigningRequest, usages) -> str:
    """Why this is not a kubelet client certificate request ("" when it is; IsKubeletClientCSR):
    O=system:nodes only, CN system:node:<name>, no SANs, client-auth usages."""
    cn, orgs = subject(csr)
    if orgs != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    if not cn.startswith(NODE_USER_PREFIX) or cn == NODE_USER_PREFIX:
        return f'subject common name does not begin with "{NODE_USER_PREFIX}"'
    if any(sans(csr)):
        return "subject alternative names are not allowed"
    return _usages_problem(usages, KUBELET_CLIENT_USAGES, "client auth")


def kubelet_serving_problem(csr: x509.CertificateSigningRequest, usages) -> str:
    """Why this is not a kubelet serving certificate request ("" when it is; IsKubeletServingCSR):
    O=system:nodes only, CN system:node:<name>, at least one DNS or IP SAN, no emails or URIs."""
    cn, orgs = subject(csr)
    if orgs != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    if not cn.startswith(NODE_USER_PREFIX) or cn == NODE_USER_PREFIX:
        return f'subject common name does not begin with "{NODE_USER_PREFIX}"'
    dns, ips, emails, uris = sans(csr)
    if emails or uris:
        return "email and URI subject alternative names are not allowed"
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    return _usages_problem(usages, KUBELET_SERVING_USAGES, "server auth")


def apiserver_client_problem(csr: x509.CertificateSigningRequest, usages) -> str:
    """Why this is not a kube-apiserver client certificate request ("" when it is): client-auth usages."""
    return _usages_problem(usages, KUBELET_CLIENT_USAGES, "client auth")


def condition(csr_obj: dict, ctype: str) -> dict | None:
    """The status condition of ``ctype`` of a CSR object, or None."""
    for c in (csr_obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None
