"""ServiceAccount tokens: JWTs the apiserver signs (TokenRequest) and verifies (bearer authentication).

Mirrors pkg/serviceaccount (``JWTTokenGenerator``, ``JWTTokenAuthenticator``,
the ``validator`` of bound tokens) with upstream's claims::

    {"iss": <--service-account-issuer>, "sub": "system:serviceaccount:NS:NAME", "aud": [...],
     "exp": ..., "iat": ..., "nbf": ..., "jti": <uuid>,
     "kubernetes.io": {"namespace": NS, "serviceaccount": {"name", "uid"},
                       "pod": {"name", "uid"}, "node": {"name", "uid"}}}

Signed RS256 (RSA keys) or ES256 (P-256 keys) with the private key of
``--service-account-signing-key-file``; verified with any public key of
``--service-account-key-file`` (PEM public or private keys, several allowed
for rotation). A token is accepted only while its ServiceAccount (and the Pod
or Secret it is bound to) still exists with the uid the token names: deleting
the pod revokes the token. The JOSE work is done here with ``cryptography``
(no JWT library in the dependency set); only compact JWS with RS256/ES256.
"""
from __future__ import annotations

import base64
import binascii
import collections
import datetime
import json
import time
import uuid
from typing import Awaitable, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from apiserver.authn import AuthenticationError, UserInfo

SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
LEEWAY_SECONDS = 60  # go-jose's jwt.DefaultLeeway, which upstream's validator uses
MAX_TOKEN_BYTES = 16 * 1024  # a JWT larger than this is not ours; never parse megabytes of header
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
NODE_UID_KEY = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > MAX_TOKEN_BYTES:
        raise ValueError("bad segment")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_private_key(path: str):
    """The signing key of ``--service-account-signing-key-file`` (PEM RSA or EC P-256 private key)."""
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path}: only RSA and EC private keys are supported")
    return key


def load_public_keys(path: str) -> list:
    """Every public key of a ``--service-account-key-file`` PEM file (public keys, or private keys whose
    public half is taken, as upstream's keyutil.PublicKeysFromFile); ValueError when it holds none."""
    with open(path, "rb") as f:
        data = f.read()
    keys = []
    for block in data.split(b"-----END ")[:-1]:
        start = block.rfind(b"-----BEGIN ")
        if start < 0:
            continue
        label = block[start + 11:block.index(b"-----", start + 11)]
        pem = block[start:] + b"-----END " + label + b"-----\n"
        if b"PRIVATE KEY" in label:
            keys.append(serialization.load_pem_private_key(pem, password=None).public_key())
        elif b"PUBLIC KEY" in label:
            keys.append(serialization.load_pem_public_key(pem))
    if not keys:
        raise ValueError(f"{path}: no public key found")
    return keys


def key_id(public_key) -> str:
    """The ``kid`` header: base64url(SHA-256(DER public key)), as upstream's keyIDFromPublicKey."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return _b64e(digest.finalize())


def sign(claims: dict, private_key) -> str:
    """A compact JWS of ``claims`` (RS256 for RSA, ES256 for EC keys) with the key's ``kid``."""
    alg = "RS256" if isinstance(private_key, rsa.RSAPrivateKey) else "ES256"
    header = {"alg": alg, "kid": key_id(private_key.public_key())}
    signing_input = (_b64e(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64e(json.dumps(claims, separators=(",", ":")).encode())).encode()
    if alg == "RS256":
        sig = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode() + "." + _b64e(sig)


def parse_unverified(token: str) -> tuple[dict, dict, bytes, bytes] | None:
    """``(header, claims, signing input, signature)`` of a compact JWS, None when ``token`` is not one
    (wrong shape, bad base64 or JSON, not objects): such a token is simply not a ServiceAccount token."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    h, c, s = token.split(".")
    try:
        header, claims, sig = json.loads(_b64d(h)), json.loads(_b64d(c)), _b64d(s)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims, f"{h}.{c}".encode(), sig


def verify_signature(header: dict, signing_input: bytes, sig: bytes, keys: list) -> bool:
    """Whether one of ``keys`` verifies ``sig`` under the header's alg (RS256 / ES256 only)."""
    alg = header.get("alg")
    for key in keys:
        try:
            if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
                return True
            if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(sig) == 64:
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
                return True
        except (InvalidSignature, ValueError):
            continue
    return False


def split_username(name: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of ``system:serviceaccount:NS:NAME``, None for other user names."""
    if not name.startswith(SA_PREFIX):
        return None
    parts = name[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


class TokenGenerator:
    """Signs bound ServiceAccount tokens (JWTTokenGenerator + the claims of pkg/serviceaccount/claims.go)."""

    def __init__(self, private_key, issuer: str):
        self.key = private_key
        self.issuer = issuer

    def generate(self, *, namespace: str, sa_name: str, sa_uid: str, audiences: list[str], expiration_seconds: int,
                 pod: dict | None = None, secret: dict | None = None, node: dict | None = None,
                 now: float | None = None) -> tuple[str, int]:
        """``(token, exp)`` (exp in Unix seconds) for the ServiceAccount ``namespace/sa_name``; ``pod`` /
        ``secret`` / ``node`` are ``{"name", "uid"}`` of the object the token is bound to."""
        iat = int(now if now is not None else time.time())
        exp = iat + int(expiration_seconds)
        k8s: dict = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        for key, ref in (("pod", pod), ("secret", secret), ("node", node)):
            if ref:
                k8s[key] = {"name": ref["name"], "uid": ref.get("uid", "")}
        claims = {"aud": list(audiences), "exp": exp, "iat": iat, "iss": self.issuer, "jti": str(uuid.uuid4()),
                  "kubernetes.io": k8s, "nbf": iat, "sub": f"{SA_PREFIX}{namespace}:{sa_name}"}
        return sign(claims, self.key), exp


# getter(resource, namespace, name) -> object or None; resource is "serviceaccounts", "pods", "secrets", "nodes"
ObjectGetter = Callable[[str, str | None, str], Awaitable[dict | None]]


class ServiceAccountAuthenticator:
    """``--service-account-key-file`` / ``--service-account-issuer``: bearer JWT -> the ServiceAccount user.

    A token whose issuer is not ours is "not recognised" (None, the next
    authenticator may know it); one that claims our issuer but fails a check
    raises AuthenticationError (401). ``api_audiences`` (``--api-audiences``,
    default the issuers) must intersect the token's ``aud``. ``get`` reads
    the ServiceAccount and the bound objects (from the watch cache).
    """

    def __init__(self, public_keys: list, issuers: list[str], *, api_audiences: list[str] | None = None,
                 get: ObjectGetter | None = None, now: Callable[[], float] = time.time):
        self.keys = public_keys
        self.issuers = list(issuers)
        self.audiences = list(api_audiences or issuers)
        self.get = get
        self.now = now
        # token -> its claims once the signature verified (~0.1 ms of RSA work saved per request); expiry,
        # audience and the bound objects are still checked on every use.
        self._verified: collections.OrderedDict[str, dict] = collections.OrderedDict()

    CACHE_SIZE = 4096

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The ServiceAccount user of ``token`` (name, SA uid, groups system:serviceaccounts[:NS],
        extra pod-name / pod-uid / node-name / credential-id); None when not our JWT;
        AuthenticationError with upstream's reasons otherwise."""
        claims = self._verified.get(token)
        if claims is not None:
            self._verified.move_to_end(token)
        else:
            parsed = parse_unverified(token)
            if parsed is None:
                return None
            header, claims, signing_input, sig = parsed
            if claims.get("iss") not in self.issuers:
                return None
            if not verify_signature(header, signing_input, sig, self.keys):
                raise AuthenticationError("invalid bearer token, crypto/rsa: verification error")
            self._verified[token] = claims
            if len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        now = self.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + LEEWAY_SECONDS:
            raise AuthenticationError("service account token has expired")
        if isinstance(nbf, (int, float)) and now + LEEWAY_SECONDS < nbf:
            raise AuthenticationError("service account token is not valid yet")
        aud = claims.get("aud")
        aud = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(aud) & set(self.audiences):
            raise AuthenticationError(f"token audiences {aud!r} is invalid for the target audiences "
                                      f"{self.audiences!r}")
        k8s = claims.get("kubernetes.io")
        sub = claims.get("sub")
        ident = split_username(sub) if isinstance(sub, str) else None
        if not isinstance(k8s, dict) or ident is None:
            raise AuthenticationError("service account token claims are malformed")
        sa_ref = k8s.get("serviceaccount") if isinstance(k8s.get("serviceaccount"), dict) else {}
        ns, name = ident
        if k8s.get("namespace") != ns or sa_ref.get("name") != name:
            raise AuthenticationError("service account token claims do not match the subject")
        extra: dict[str, tuple[str, ...]] = {}
        sa_uid = str(sa_ref.get("uid", ""))
        if self.get is not None:
            await self._check_live(ns, name, sa_uid, k8s)
        pod = k8s.get("pod") if isinstance(k8s.get("pod"), dict) else None
        node = k8s.get("node") if isinstance(k8s.get("node"), dict) else None
        if pod:
            extra[POD_NAME_KEY], extra[POD_UID_KEY] = (str(pod.get("name", "")),), (str(pod.get("uid", "")),)
        if node:
            extra[NODE_NAME_KEY], extra[NODE_UID_KEY] = (str(node.get("name", "")),), (str(node.get("uid", "")),)
        if isinstance(claims.get("jti"), str):
            extra[CREDENTIAL_ID_KEY] = (f"JTI={claims['jti']}",)
        return UserInfo(sub, (SA_GROUP, f"{SA_GROUP}:{ns}"), uid=sa_uid, extra=extra)

    async def _check_live(self, ns: str, name: str, sa_uid: str, k8s: dict) -> None:
        """The validator's lookups: the ServiceAccount and every bound object exist with the claimed uid."""
        sa = await self.get("serviceaccounts", ns, name)
        if sa is None:
            raise AuthenticationError(f'serviceaccounts "{name}" not found')
        if sa_uid and (sa.get("metadata") or {}).get("uid") != sa_uid:
            raise AuthenticationError(f"service account UID ({(sa.get('metadata') or {}).get('uid')}) does not "
                                      f"match claim ({sa_uid})")
        for key, resource, namespaced in (("pod", "pods", True), ("secret", "secrets", True)):
            ref = k8s.get(key)
            if not isinstance(ref, dict):
                continue
            obj = await self.get(resource, ns if namespaced else None, str(ref.get("name", "")))
            if obj is None:
                raise AuthenticationError(f"{resource} \"{ref.get('name')}\" not found")
            meta = obj.get("metadata") or {}
            if meta.get("uid") != ref.get("uid"):
                raise AuthenticationError(f"{key} UID ({meta.get('uid')}) does not match claim ({ref.get('uid')})")
            # Upstream keeps a terminating pod's token valid for 60 s (its containers may still call in).
            if key == "pod" and _older_than(meta.get("deletionTimestamp"), self.now() - LEEWAY_SECONDS):
                raise AuthenticationError(f"pod {ns}/{ref.get('name')} has been deleted")


def _older_than(rfc3339, limit: float) -> bool:
    """Whether an RFC 3339 timestamp string lies before ``limit`` (Unix seconds); False when absent or bad."""
    if not isinstance(rfc3339, str) or not rfc3339:
        return False
    try:
        return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() < limit
    except ValueError:
        return False
