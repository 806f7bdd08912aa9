"""Keys and X.509 certificates: the primitives kubeadm's certs phase is built from.

Mirrors k8s.io/client-go/util/cert and kubeadm's pkiutil (NewCertificateAuthority,
NewCertAndKey, TryLoadCertAndKeyFromDisk): a self-signed CA, leaf certificates it
signs with a subject, SANs and key usages, PEM files with private keys at mode 0600,
and the check that decides whether a file on disk can be kept (same CA, same subject,
every wanted SAN, not about to expire). Keys are ECDSA P-256 (kubeadm's
``--encryption-algorithm=ECDSA-P256``; its default is RSA-2048, which takes ~50x
longer to generate), except the service-account key, which is RSA-2048 as kubeadm
makes it so RS256 JWTs can be signed with it.
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)  # kubeadm: 10 years for CAs
CERT_VALIDITY = datetime.timedelta(days=365)  # kubeadm: 1 year for leaves
RENEW_BEFORE = datetime.timedelta(days=30)  # a leaf closer than this to expiry is renewed on the next init

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


class PKIError(Exception):
    """A certificate or key on disk cannot be read or used (message names the file)."""


@dataclasses.dataclass(frozen=True)
class CertSpec:
    """What one certificate must say (kubeadm's certutil.Config).

    ``name`` is the file base under the PKI dir (``"apiserver"`` -> apiserver.crt/.key,
    ``"etcd/peer-m1"``); ``organizations`` become O= entries (Kubernetes groups);
    ``dns_names``/``ips`` the subjectAltNames; ``usages`` the extended key usages;
    ``ca`` the file base of the signing CA (``"ca"``, ``"etcd/ca"``).
    """

    name: str
    common_name: str
    ca: str
    usages: tuple = (CLIENT_AUTH,)
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A new RSA-2048 private key (the service-account signing key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_ca(common_name: str, *, key=None) -> tuple[x509.Certificate, object]:
    """A self-signed CA certificate and its key (kubeadm NewCertificateAuthority)."""
    key = key or new_private_key()
    now = _now()
    subject = _name(common_name)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def new_signed_cert(spec: CertSpec, ca_cert: x509.Certificate, ca_key, *, key=None
                    ) -> tuple[x509.Certificate, object]:
    """A leaf certificate for ``spec`` signed by the CA, with a new key (kubeadm NewCertAndKey).

    Raises PKIError when an entry of ``spec.ips`` is not an IP address.
    """
    key = key or new_private_key()
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    for ip in spec.ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PKIError(f"{spec.name}: {ip!r} is not an IP address") from None
    builder = (x509.CertificateBuilder()
               .subject_name(_name(spec.common_name, spec.organizations))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(min(now + CERT_VALIDITY, ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM bytes of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    """PEM bytes of a private key (unencrypted PKCS#8, as kubeadm writes them)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key) -> bytes:
    """PEM bytes of the public half of ``key`` (sa.pub)."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def write_file(path: pathlib.Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` atomically; mode 0600 when ``private`` (keys), else 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)  # the umask may have narrowed the mode
    os.replace(tmp, path)


def write_cert_and_key(base: pathlib.Path, cert: x509.Certificate, key) -> None:
    """Write ``base``.crt (0644) and ``base``.key (0600)."""
    write_file(base.with_name(base.name + ".key"), key_pem(key), private=True)
    write_file(base.with_name(base.name + ".crt"), cert_pem(cert), private=False)


def load_cert_and_key(base: pathlib.Path) -> tuple[x509.Certificate, object] | None:
    """``base``.crt and ``base``.key, or None if either is missing. Raises PKIError if unreadable."""
    crt, key = base.with_name(base.name + ".crt"), base.with_name(base.name + ".key")
    if not crt.exists() or not key.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        pkey = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as e:
        raise PKIError(f"{crt} / {key}: {e}") from None
    return cert, pkey


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def usable(cert: x509.Certificate, key, spec: CertSpec, ca_cert: x509.Certificate) -> bool:
    """Whether a leaf on disk can be kept for ``spec``: its key matches, it was signed by
    ``ca_cert``, subject and usages are the wanted ones, it covers every wanted SAN, and it
    is valid for at least RENEW_BEFORE more."""
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    if cert.subject != _name(spec.common_name, spec.organizations):
        return False
    try:
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return False
    if eku != set(spec.usages):
        return False
    dns, ips = _sans(cert)
    if not set(spec.dns_names) <= dns or not {str(ipaddress.ip_address(i)) for i in spec.ips} <= ips:
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE
