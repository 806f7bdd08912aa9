"""Detached JWS signatures of the ``cluster-info`` kubeconfig, keyed by bootstrap tokens.

Mirrors k8s.io/cluster-bootstrap/token/jws (``ComputeDetachedSignature``,
``DetachedTokenIsValid``): HS256 with the token secret as key and the token id
as ``kid``, in compact serialization with the payload left out
(``<header>..<signature>``). The controller-manager's bootstrapsigner writes one
per signing token into ``kube-public/cluster-info`` as
``jws-kubeconfig-<token-id>``; ``kubeling join`` checks it, which proves the
apiserver it talks to knows the token's secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def compute_detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """``<b64url header>..<b64url HMAC-SHA256>`` over ``content`` (header ``{"alg":"HS256","kid":id}``)."""
    header = _b64(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64(content.encode())}".encode()
    return f"{header}..{_b64(hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest())}"


def detached_token_is_valid(signature: str, content: str, token_id: str, token_secret: str) -> bool:
    """Whether ``signature`` is the detached JWS of ``content`` for this token (constant-time compare)."""
    return hmac.compare_digest(signature.encode(), compute_detached_signature(content, token_id,
                                                                              token_secret).encode())
