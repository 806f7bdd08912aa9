"""Asking the cluster for a certificate through the CertificateSigningRequest API.

Mirrors client-go's ``util/certificate/csr`` (``RequestCertificate``,
``WaitForCertificate``) and ``util/cert`` (``MakeCSR``): build a PKCS#10
request for a key, POST it as a ``certificates.k8s.io/v1``
CertificateSigningRequest for a signer, then wait until it is approved and
the signer put ``status.certificate`` (or it is denied / failed). The
kubelet's TLS bootstrap and ``kubeling join`` use it.
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from kubeling.client.rest import ApiError, Client

RESOURCE = "certificatesigningrequests"


class CSRError(Exception):
    """The request was denied or failed, or it did not get a certificate in time."""


def make_csr(key, *, common_name: str, organizations: tuple[str, ...] = (), dns_names: tuple[str, ...] = (),
             ips: tuple[str, ...] = ()) -> bytes:
    """PEM ``CERTIFICATE REQUEST`` for ``key`` with subject O=...,CN=... and optional SANs (cert.MakeCSR)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


async def request_certificate(client: Client, csr_pem: bytes, *, signer_name: str, usages: list[str],
                              name: str = "", expiration_seconds: int | None = None) -> dict:
    """Create the CSR (``name``, else generateName ``csr-``); returns the created object.

    A CSR of that name that already exists is reused when it carries the same
    request (a retry after a lost answer), else CSRError. Raises ApiError otherwise.
    """
    meta = {"name": name} if name else {"generateName": "csr-"}
    spec: dict = {"request": base64.b64encode(csr_pem).decode(), "signerName": signer_name, "usages": usages}
    if expiration_seconds:
        spec["expirationSeconds"] = expiration_seconds
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta,
            "spec": spec}
    try:
        return await client.create(RESOURCE, body)
    except ApiError as e:
        if e.code != 409 or not name:
            raise
    have = await client.get(RESOURCE, name)
    if (have.get("spec") or {}).get("request") != spec["request"]:
        raise CSRError(f"certificate signing request {name} already exists with a different request")
    return have


async def wait_for_certificate(client: Client, name: str, uid: str, *, timeout: float,
                               interval: float = 0.5) -> bytes:
    """PEM certificate(s) of CSR ``name`` once issued (polling GET every ``interval`` seconds).

    Raises CSRError when it is denied or failed, replaced (another uid), or not
    issued within ``timeout`` seconds; ApiError on other API errors.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            csr = await client.get(RESOURCE, name)
        except ApiError as e:
            if e.code != 404:
                raise
            raise CSRError(f"certificate signing request {name} was deleted") from None
        if uid and csr["metadata"].get("uid") != uid:
            raise CSRError(f"certificate signing request {name} was replaced")
        status = csr.get("status") or {}
        for c in status.get("conditions") or []:
            if c.get("type") in ("Denied", "Failed"):
                raise CSRError(f"certificate signing request {name} is {c['type'].lower()}: "
                               f"{c.get('reason', '')} {c.get('message', '')}".rstrip())
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        if time.monotonic() >= deadline:
            approved = any(c.get("type") == "Approved" for c in status.get("conditions") or [])
            raise CSRError(f"timed out after {timeout:g}s waiting for certificate signing request {name} to be "
                           + ("issued (approved, but no signer answered)" if approved else "approved"))
        await asyncio.sleep(interval)
