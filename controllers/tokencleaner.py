"""tokencleaner: delete bootstrap token Secrets once they expire.

Mirrors pkg/controller/bootstrap/tokencleaner.go: a Secret of type
``bootstrap.kubernetes.io/token`` in kube-system whose ``expiration``
(RFC 3339) has passed is deleted; one that will expire is looked at again
at that moment (``add_after``). The apiserver already refuses expired
tokens; this keeps ``kubeling token list`` and the Secrets tidy.
"""
from __future__ import annotations

import base64
import binascii
import logging
import time

from controllers.controller_utils import BaseController, parse_time
from kubeling.client import ApiError, Client, Informer

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"


def expiration(secret: dict) -> float | None:
    """Epoch seconds of a bootstrap token Secret's ``expiration`` (None: never, or not such a Secret)."""
    if secret.get("type") != SECRET_TYPE or secret["metadata"].get("namespace") != NAMESPACE:
        return None
    raw = (secret.get("data") or {}).get("expiration")
    if not raw:
        return None
    try:
        return parse_time(base64.b64decode(raw, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class TokenCleaner(BaseController):
    """Deletes expired bootstrap token Secrets; keys are ``kube-system/<name>``."""

    name = "tokencleaner"

    def __init__(self, client: Client, secret_informer: Informer, *, now=time.time):
        super().__init__(client, [secret_informer])
        self.lister = secret_informer.lister
        self.now = now

        def changed(secret: dict) -> None:
            if secret.get("type") == SECRET_TYPE:
                self.enqueue(secret)
        secret_informer.add_handlers(on_add=changed, on_update=lambda old, new: changed(new))

    async def sync(self, key: str) -> None:
        """Delete the token Secret ``key`` if expired, else look again when it expires. Raises ApiError."""
        ns, _, name = key.partition("/")
        secret = self.lister.get(name, ns)
        if secret is None:
            return
        when = expiration(secret)
        if when is None:
            return
        if self.not_due(key, when, self.now()):
            return
        try:
            await self.client.delete("secrets", name, namespace=ns)
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("deleted expired bootstrap token %s", key)
