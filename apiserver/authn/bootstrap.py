"""Bootstrap tokens: short secrets with which a new node joins (``--enable-bootstrap-token-auth``).

Mirrors plugin/pkg/auth/authenticator/token/bootstrap: a token
``<id>.<secret>`` (6 and 16 characters of ``[a-z0-9]``) is valid while the
Secret ``kube-system/bootstrap-token-<id>`` of type
``bootstrap.kubernetes.io/token`` holds the same ``token-id`` /
``token-secret``, has ``usage-bootstrap-authentication: "true"``, is not
expired (``expiration``, RFC 3339) and is not being deleted. The user is
``system:bootstrap:<id>`` in ``system:bootstrappers`` plus the Secret's
``auth-extra-groups`` (each ``system:bootstrappers:...``).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import logging
import re
from typing import Awaitable, Callable

from apiserver.authn import UserInfo

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE = "kube-system"
GROUP = "system:bootstrappers"
EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")

SecretGetter = Callable[[str, str], Awaitable[dict | None]]


def _data(secret: dict, key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


class BootstrapTokenAuthenticator:
    """Bearer ``<id>.<secret>`` -> ``system:bootstrap:<id>``; ``get(namespace, name)`` reads Secrets.

    As upstream, a token that is well formed but matches no valid Secret is
    "not recognised" (None; the bearer authenticator then answers 401).
    """

    def __init__(self, get: SecretGetter, *, now=None):
        self.get = get
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The bootstrap user of ``token``, or None (malformed, unknown, expired, wrong secret, not for auth)."""
        m = TOKEN_RE.match(token)
        if not m:
            return None
        token_id, token_secret = m.groups()
        secret = await self.get(NAMESPACE, f"bootstrap-token-{token_id}")
        if secret is None or secret.get("type") != SECRET_TYPE or (secret.get("metadata") or {}).get(
                "deletionTimestamp"):
            return None
        if _data(secret, "token-id") != token_id or not hmac.compare_digest(
                _data(secret, "token-secret").encode(), token_secret.encode()):
            log.info("bootstrap token %s: secret does not match", token_id)
            return None
        expiration = _data(secret, "expiration")
        if expiration:
            try:
                if datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00")) < self.now():
                    return None
            except ValueError:
                return None
        if _data(secret, "usage-bootstrap-authentication") != "true":
            return None
        groups = [GROUP]
        for g in _data(secret, "auth-extra-groups").split(","):
            g = g.strip()
            if g and EXTRA_GROUP_RE.match(g) and g not in groups:
                groups.append(g)
        return UserInfo(f"system:bootstrap:{token_id}", tuple(groups))
