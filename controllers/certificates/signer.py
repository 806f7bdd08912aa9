"""csrsigning: issue the certificates of approved requests with the cluster CA.

Mirrors pkg/controller/certificates/signer (signer.go, ``--cluster-signing-cert-file``
/ ``--cluster-signing-key-file`` / ``--cluster-signing-duration``): for an
approved, not yet failed or issued CSR of one of the kubernetes.io signers
kubeling serves (``kube-apiserver-client``, ``kube-apiserver-client-kubelet``,
``kubelet-serving``), the request is checked against what that signer may
issue (upstream's per-signer validation; a misfit gets a ``Failed``
condition with reason ``SignerValidationFailure``), then signed: the
request's subject and SANs, the requested usages, valid from 5 minutes ago
(clock skew, as upstream's backdating) for ``spec.expirationSeconds``
capped by the signing duration and by the CA's own expiry. The PEM goes to
``status.certificate`` through ``/status``.
"""
from __future__ import annotations

import base64
import datetime
import logging
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from controllers.controller_utils import BaseController
from kubeling.api import certificates as certs
from kubeling.client import ApiError, Client, Informer, deep_copy
from kubeling.client.record import now_rfc3339

log = logging.getLogger(__name__)

DEFAULT_DURATION = 365 * 24 * 3600.0  # upstream's --cluster-signing-duration 8760h
BACKDATE = datetime.timedelta(minutes=5)
SIGNERS = {certs.KUBE_APISERVER_CLIENT: certs.apiserver_client_problem,
           certs.KUBE_APISERVER_CLIENT_KUBELET: certs.kubelet_client_problem,
           certs.KUBELET_SERVING: certs.kubelet_serving_problem}
_EKU = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
        "code signing": ExtendedKeyUsageOID.CODE_SIGNING, "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
        "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING}


class CA:
    """The signing CA: certificate and private key loaded from PEM files (Raises ValueError / OSError)."""

    def __init__(self, cert_file: str, key_file: str):
        self.cert = x509.load_pem_x509_certificate(pathlib.Path(cert_file).read_bytes())
        self.key = serialization.load_pem_private_key(pathlib.Path(key_file).read_bytes(), password=None)


def sign(ca: CA, x509cr: x509.CertificateSigningRequest, usages: list[str], *, duration: float,
         now: datetime.datetime | None = None) -> x509.Certificate:
    """A certificate for the request's public key, subject and SANs with ``usages``, valid for
    ``duration`` seconds from now (backdated 5 minutes), never past the CA's NotAfter
    (upstream's authority.Sign with PermissiveSigningPolicy)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_after = min(now + datetime.timedelta(seconds=duration), ca.cert.not_valid_after_utc)
    ku = set(usages)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(x509cr.subject))
               .issuer_name(ca.cert.subject)
               .public_key(x509cr.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature="digital signature" in ku or "signing" in ku,
                   content_commitment="content commitment" in ku, key_encipherment="key encipherment" in ku,
                   data_encipherment="data encipherment" in ku, key_agreement="key agreement" in ku,
                   key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    ekus = [_EKU[u] for u in usages if u in _EKU]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    try:
        san = x509cr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(san, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca.key, hashes.SHA256())


def duration_of(csr_obj: dict, max_duration: float) -> float:
    """Seconds the certificate is valid: spec.expirationSeconds capped by ``max_duration`` (the signing flag)."""
    exp = (csr_obj.get("spec") or {}).get("expirationSeconds")
    return min(float(exp), max_duration) if isinstance(exp, int) and exp > 0 else max_duration


class CSRSigningController(BaseController):
    """Signs approved CSRs of the kubernetes.io signers with ``ca``; keys are CSR names."""

    name = "csrsigning"

    def __init__(self, client: Client, csr_informer: Informer, *, ca: CA, duration: float = DEFAULT_DURATION):
        super().__init__(client, [csr_informer])
        self.lister = csr_informer.lister
        self.ca = ca
        self.duration = duration
        csr_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        """Issue (or fail) CSR ``key`` when it is approved and ours. Raises ApiError to retry."""
        csr = self.lister.get(key)
        if csr is None:
            return
        spec, status = csr.get("spec") or {}, csr.get("status") or {}
        check = SIGNERS.get(spec.get("signerName"))
        if check is None or status.get("certificate") or not certs.condition(csr, "Approved") \
                or certs.condition(csr, "Denied") or certs.condition(csr, "Failed"):
            return
        csr = deep_copy(csr)
        try:
            x509cr = certs.parse_csr(certs.decode_pem(spec.get("request")))
            problem = check(x509cr, spec.get("usages"))
        except ValueError as e:
            x509cr, problem = None, str(e)
        if problem:
            now = now_rfc3339()
            csr.setdefault("status", {}).setdefault("conditions", []).append({
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": f"invalid certificate request: {problem}", "lastUpdateTime": now,
                "lastTransitionTime": now})
            log.info("certificate signing request %s failed validation: %s", key, problem)
        else:
            cert = sign(self.ca, x509cr, list(spec.get("usages") or []), duration=duration_of(csr, self.duration))
            csr.setdefault("status", {})["certificate"] = base64.b64encode(
                cert.public_bytes(serialization.Encoding.PEM)).decode()
            log.info("signed certificate signing request %s for %s (%s)", key, certs.subject(x509cr)[0],
                     spec.get("signerName"))
        try:
            await self.client.replace_status("certificatesigningrequests", csr)
        except ApiError as e:
            if e.code == 404:
                return
            raise
