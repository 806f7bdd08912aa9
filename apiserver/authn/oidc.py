"""ServiceAccount issuer discovery: ``/.well-known/openid-configuration`` and ``/openid/v1/jwks``.

Mirrors pkg/serviceaccount/openidmetadata.go: with ``--service-account-issuer``
set, the apiserver publishes an OpenID Connect discovery document and the
JSON Web Key Set of its ``--service-account-key-file`` keys, so that other
parties can verify ServiceAccount tokens offline. Reading them needs the
``system:service-account-issuer-discovery`` ClusterRole (bound to all
ServiceAccounts by the default policy), checked by the authentication filter
like any non-resource path.
"""
from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from starlette.responses import Response

from apiserver.authn.serviceaccount import key_id

CONFIG_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"


def _b64(n: int, length: int | None = None) -> str:
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(public_key) -> dict | None:
    """The JWK of an RSA or P-256 public key (use sig, kid as the tokens' header), None for other keys."""
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {"use": "sig", "kty": "RSA", "kid": key_id(public_key), "alg": "RS256", "n": _b64(nums.n),
                "e": _b64(nums.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        nums = public_key.public_numbers()
        return {"use": "sig", "kty": "EC", "kid": key_id(public_key), "alg": "ES256", "crv": "P-256",
                "x": _b64(nums.x, 32), "y": _b64(nums.y, 32)}
    return None


def documents(issuer: str, public_keys: list, *, jwks_uri: str | None = None) -> tuple[bytes, bytes]:
    """``(discovery document, JWKS)`` as JSON bytes for ``issuer`` and the verification keys."""
    keys = [k for k in (jwk(p) for p in public_keys) if k is not None]
    config = {"issuer": issuer, "jwks_uri": jwks_uri or issuer.rstrip("/") + JWKS_PATH,
              "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
              "id_token_signing_alg_values_supported": sorted({k["alg"] for k in keys})}
    return json.dumps(config).encode(), json.dumps({"keys": keys}).encode()


def install(app: FastAPI, issuer: str, public_keys: list) -> None:
    """Add the two GET routes (with and without a trailing slash) to ``app``."""
    config, jwks = documents(issuer, public_keys)

    async def config_doc() -> Response:
        return Response(config, media_type="application/json", headers={"Cache-Control": "public, max-age=3600"})

    async def jwks_doc() -> Response:
        return Response(jwks, media_type="application/jwk-set+json",
                        headers={"Cache-Control": "public, max-age=3600"})
    for path, fn in ((CONFIG_PATH, config_doc), (JWKS_PATH, jwks_doc)):
        app.add_api_route(path, fn, methods=["GET"])
        app.add_api_route(path + "/", fn, methods=["GET"])
