"""Client-certificate authentication: the TLS peer's certificate names the user.

Mirrors k8s.io/apiserver's ``pkg/authentication/request/x509`` (``CommonNameUserConversion``):
the leaf certificate's Subject CommonName is the user name and its
Organization values are the groups. The TLS server verifies the chain during
the handshake and hands it over as the ASGI TLS extension
``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM strings, leaf
first); this authenticator checks again against ``--client-ca-file`` (the
signature of the issuing CA and the validity window), as upstream's
``Verify`` does, so a server without client verification cannot let a forged
certificate through.
"""
from __future__ import annotations

import collections
import datetime
import logging

from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.requests import HTTPConnection

from apiserver.authn import AuthenticationError, UserInfo

log = logging.getLogger(__name__)


def client_chain(scope: dict) -> list[str]:
    """The PEM certificates of the TLS client (leaf first), [] when none was presented."""
    ext = scope.get("extensions")
    tls = ext.get("tls") if isinstance(ext, dict) else None
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if not isinstance(chain, (list, tuple)):
        return []
    return [c.decode() if isinstance(c, bytes) else c for c in chain if isinstance(c, (str, bytes)) and c]


def load_ca_bundle(path: str) -> list[x509.Certificate]:
    """The CA certificates of a PEM bundle file (``--client-ca-file``); ValueError when it holds none."""
    with open(path, "rb") as f:
        cas = x509.load_pem_x509_certificates(f.read())
    if not cas:
        raise ValueError(f"{path}: no certificate found")
    return cas


def user_of(cert: x509.Certificate) -> UserInfo:
    """CN -> user name, O -> groups (CommonNameUserConversion); AuthenticationError without a CN."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or not cns[0].value:
        raise AuthenticationError("x509: certificate has no common name")
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return UserInfo(str(cns[0].value), groups)


class X509Authenticator:
    """``--client-ca-file``: the user of a request that came with a client certificate.

    ``cas`` are the CAs a client certificate must be issued by (directly, or
    through intermediates the client sent); None trusts the TLS layer's own
    verification alone.
    """

    CACHE_SIZE = 4096

    def __init__(self, cas: list[x509.Certificate] | None = None, *, now=None):
        self.cas = cas
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        # leaf PEM -> (user, not_before, not_after): parsing and verifying a chain costs ~0.3 ms, a
        # connection's every request presents the same leaf (upstream caches verified chains too).
        self._verified: collections.OrderedDict[str, tuple[UserInfo, datetime.datetime, datetime.datetime]] = \
            collections.OrderedDict()

    async def authenticate(self, request: HTTPConnection) -> UserInfo | None:
        """None without a client certificate; the CN/O user of a valid one; AuthenticationError (-> 401)
        for an unparsable, expired, not-yet-valid or foreign-CA certificate."""
        pems = client_chain(request.scope)
        if not pems:
            return None
        hit = self._verified.get(pems[0]) if len(pems) == 1 else None
        if hit is not None:
            user, not_before, not_after = hit
            if not_before <= self.now() <= not_after:
                self._verified.move_to_end(pems[0])
                return user
            del self._verified[pems[0]]
        try:
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in pems]
        except (ValueError, TypeError) as e:
            raise AuthenticationError(f"x509: malformed certificate: {e}") from None
        leaf = chain[0]
        now = self.now()
        if now < leaf.not_valid_before_utc or now > leaf.not_valid_after_utc:
            raise AuthenticationError("x509: certificate has expired or is not yet valid")
        if self.cas is not None and not self._chain_ok(chain, now):
            raise AuthenticationError("x509: certificate signed by unknown authority")
        user = user_of(leaf)
        if len(pems) == 1:
            self._verified[pems[0]] = (user, leaf.not_valid_before_utc, leaf.not_valid_after_utc)
            if len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        return user

    def _chain_ok(self, chain: list[x509.Certificate], now) -> bool:
        """Whether ``chain[0]`` leads to one of the CAs through the given intermediates (at most 4 hops)."""
        cert = chain[0]
        for _ in range(5):
            for ca in self.cas:
                if _issued_by(cert, ca):
                    return True
            nxt = next((c for c in chain[1:] if c is not cert and _issued_by(cert, c)
                        and c.not_valid_before_utc <= now <= c.not_valid_after_utc), None)
            if nxt is None:
                return False
            cert = nxt
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, Exception):  # InvalidSignature, unsupported key types
        return False
