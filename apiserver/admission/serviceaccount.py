"""The ServiceAccount admission plugin.

Mirrors plugin/pkg/admission/serviceaccount: a pod created without
``spec.serviceAccountName`` gets ``default``; with token mounting on (the
apiserver can issue service-account tokens, i.e. ``--service-account-issuer``
and a signing key are configured) a pod whose account allows automounting
gets the projected ``kube-api-access-<5 chars>`` volume (a bound token, the
``kube-root-ca.crt`` ConfigMap's ca.crt and the namespace) mounted read-only
at /var/run/secrets/kubernetes.io/serviceaccount in every container.

Upstream refuses a pod whose ServiceAccount does not exist
(``error looking up service account NS/NAME: serviceaccount "NAME" not
found``). kubeling applies that rejection only when the plugin was named in
``--enable-admission-plugins`` (``require_service_account``): by default
no controller-manager may be running (tests, a bare apiserver), and no
pod would then be admitted. Mirror pods (annotation
``kubernetes.io/config.mirror``) are left untouched, as upstream.
"""
from __future__ import annotations

import random
from typing import Awaitable, Callable

from apiserver import errors
from apiserver.admission import Attributes, forbidden, resource_name

DEFAULT_SERVICE_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
TOKEN_EXPIRATION_SECONDS = 3607  # upstream's default bound token lifetime in the projected volume
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

ServiceAccountGetter = Callable[[str, str], Awaitable[dict | None]]


def token_volume(name: str) -> dict:
    """The projected kube-api-access volume upstream's plugin adds (defaultMode 0644)."""
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def should_automount(sa: dict | None, pod: dict) -> bool:
    """pod.spec.automountServiceAccountToken wins, then the ServiceAccount's, else true."""
    spec = pod.get("spec") or {}
    if isinstance(spec.get("automountServiceAccountToken"), bool):
        return spec["automountServiceAccountToken"]
    if sa is not None and isinstance(sa.get("automountServiceAccountToken"), bool):
        return sa["automountServiceAccountToken"]
    return True


class ServiceAccount:
    """Admission plugin defaulting the pod's ServiceAccount and mounting its token.

    ``get_service_account(namespace, name)`` returns the object or None;
    ``mount_token`` adds the projected token volume; ``require_service_account``
    refuses pods whose account is missing.
    """

    name = "ServiceAccount"

    def __init__(self, get_service_account: ServiceAccountGetter, *, mount_token: bool = False,
                 require_service_account: bool = False, rng: random.Random | None = None):
        self.get_service_account = get_service_account
        self.mount_token = mount_token
        self.require_service_account = require_service_account
        self.rng = rng or random.Random()

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """On pod create: default serviceAccountName, check the account, mount its token."""
        if attrs.operation != "create" or attrs.subresource or obj is None or resource_name(attrs) != "pods":
            return
        if MIRROR_POD_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
            return
        spec = obj.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        sa_name = spec["serviceAccountName"]
        spec["serviceAccount"] = sa_name  # the deprecated alias, kept equal as upstream's defaulting does
        if not (self.require_service_account or self.mount_token):
            return
        sa = await self.get_service_account(attrs.namespace or "", sa_name)
        if sa is None and self.require_service_account:
            missing = errors.not_found("serviceaccount", sa_name)
            raise forbidden(attrs, f"error looking up service account {attrs.namespace}/{sa_name}: {missing.message}")
        if self.mount_token and should_automount(sa, obj):
            self._mount(spec)

    def _mount(self, spec: dict) -> None:
        containers = [c for f in ("initContainers", "containers", "ephemeralContainers")
                      for c in spec.get(f) or [] if isinstance(c, dict)]
        if all(any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in c.get("volumeMounts") or [])
               for c in containers):
            return
        name = "kube-api-access-" + "".join(self.rng.choice(_ALPHABET) for _ in range(5))
        spec.setdefault("volumes", []).append(token_volume(name))
        for c in containers:
            mounts = c.setdefault("volumeMounts", [])
            if not any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
