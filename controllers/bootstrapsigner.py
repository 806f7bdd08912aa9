"""bootstrapsigner: sign ``kube-public/cluster-info`` with every bootstrap token meant for signing.

Mirrors pkg/controller/bootstrap/bootstrapsigner.go: for each valid
``bootstrap.kubernetes.io/token`` Secret in kube-system with
``usage-bootstrap-signing: "true"`` (not expired), the ConfigMap's data holds
``jws-kubeconfig-<token-id>``, the detached JWS of its ``kubeconfig`` under
that token; signatures of tokens that are gone, expired or changed are
removed. A joining node verifies the one of its token (kubeling.pki.jws).
One key (the ConfigMap) is synced whenever it or a token Secret changes;
tokens due to expire requeue it for that moment.
"""
from __future__ import annotations

import base64
import binascii
import logging
import time

from controllers.controller_utils import BaseController, parse_time
from kubeling.client import ApiError, Client, Informer
from kubeling.pki.jws import compute_detached_signature

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
CONFIGMAP_NAMESPACE = "kube-public"
CONFIGMAP = "cluster-info"
KEY = f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP}"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SIGNATURE_PREFIX = "jws-kubeconfig-"


def _data(secret: dict, key: str) -> str:
    try:
        return base64.b64decode((secret.get("data") or {}).get(key) or "", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def signing_tokens(secrets: list[dict], now: float) -> tuple[dict[str, str], float | None]:
    """({token id: secret} of the valid signing tokens, the earliest future expiration or None)."""
    out: dict[str, str] = {}
    soonest = None
    for s in secrets:
        if s.get("type") != SECRET_TYPE or s["metadata"].get("namespace") != NAMESPACE \
                or s["metadata"].get("deletionTimestamp") or _data(s, "usage-bootstrap-signing") != "true":
            continue
        tid, tsecret = _data(s, "token-id"), _data(s, "token-secret")
        if s["metadata"].get("name") != f"bootstrap-token-{tid}" or len(tid) != 6 or len(tsecret) != 16:
            continue
        exp = _data(s, "expiration")
        if exp:
            t = parse_time(exp)
            if t is None or t <= now:
                continue
            soonest = t if soonest is None else min(soonest, t)
        out[tid] = tsecret
    return out, soonest


def signed_data(data: dict, tokens: dict[str, str]) -> dict:
    """``data`` with exactly one ``jws-kubeconfig-<id>`` per token, each over ``data["kubeconfig"]``."""
    out = {k: v for k, v in data.items() if not k.startswith(SIGNATURE_PREFIX)}
    for tid, tsecret in tokens.items():
        out[SIGNATURE_PREFIX + tid] = compute_detached_signature(data.get("kubeconfig", ""), tid, tsecret)
    return out


class BootstrapSigner(BaseController):
    """Keeps cluster-info's JWS signatures in step with the signing tokens; the only key is cluster-info."""

    name = "bootstrapsigner"

    def __init__(self, client: Client, cm_informer: Informer, secret_informer: Informer, *, now=time.time):
        super().__init__(client, [cm_informer, secret_informer])
        self.configmaps = cm_informer.lister
        self.secrets = secret_informer.lister
        self.now = now

        def cm_changed(cm: dict) -> None:
            if cm["metadata"].get("namespace") == CONFIGMAP_NAMESPACE and cm["metadata"].get("name") == CONFIGMAP:
                self.queue.add(KEY)

        def secret_changed(s: dict) -> None:
            if s.get("type") == SECRET_TYPE:
                self.queue.add(KEY)
        cm_informer.add_handlers(on_add=cm_changed, on_update=lambda old, new: cm_changed(new))
        secret_informer.add_handlers(on_add=secret_changed, on_update=lambda old, new: secret_changed(new),
                                     on_delete=secret_changed)

    async def sync(self, key: str) -> None:
        """Rewrite cluster-info's signatures when they differ from the tokens'. Raises ApiError to retry."""
        cm = self.configmaps.get(CONFIGMAP, CONFIGMAP_NAMESPACE)
        if cm is None or "kubeconfig" not in (cm.get("data") or {}):
            return
        tokens, soonest = signing_tokens(self.secrets.list(NAMESPACE), self.now())
        if soonest is not None:
            self.queue.add_after(KEY, soonest - self.now() + 0.1)
        want = signed_data(cm.get("data") or {}, tokens)
        if want == cm.get("data"):
            return
        try:
            await self.client.replace("configmaps", {**cm, "data": want})
        except ApiError as e:
            if e.code == 404:
                return
            raise
        log.info("signed %s with %d token(s)", KEY, len(tokens))
