"""Public key pins: how a joining node checks the cluster CA it was handed over an untrusted channel.

Mirrors kubeadm's ``cmd/kubeadm/app/util/pubkeypin``: a pin is
``sha256:<hex>`` of the DER SubjectPublicKeyInfo of a certificate (what
``kubeadm token create --print-join-command`` prints as
``--discovery-token-ca-cert-hash``, and what ``openssl x509 -pubkey | openssl
pkey -pubin -outform der | sha256sum`` computes).
"""
from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

_PIN_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_cert(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's SubjectPublicKeyInfo (pubkeypin.Hash)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def check_format(pin: str) -> str:
    """``pin`` lower-cased when it is ``sha256:`` and 64 hex digits; raises ValueError (kubeadm's message)."""
    p = pin.strip().lower()
    if not _PIN_RE.match(p):
        raise ValueError(f'invalid hash "{pin}": expected "sha256:" followed by 64 hex digits '
                         f"(the SHA-256 of the CA's SubjectPublicKeyInfo)")
    return p


def matches(pins: list[str], certs: list[x509.Certificate]) -> bool:
    """Whether any of ``certs`` has one of the ``pins`` (pubkeypin.Set.CheckAny)."""
    want = {check_format(p) for p in pins}
    return any(hash_cert(c) in want for c in certs)
