"""The admission plugin registry behind ``--enable-admission-plugins`` / ``--disable-admission-plugins``.

Mirrors pkg/kubeapiserver/options/plugins.go: every upstream plugin name in
upstream's fixed order (the chain always runs in this order, whatever the
order of the flag), the default-on set, and how the flags combine. kubeling
implements some of them; naming an unimplemented upstream plugin in
``--enable-admission-plugins`` is an error (it would silently not run),
while disabling one is accepted (it does not run anyway).
"""
from __future__ import annotations

from typing import Awaitable, Callable

from apiserver import errors
from apiserver.admission import AdmissionChain, Plugin
from apiserver.admission.certificates import CertificateApproval, CertificateSigning, CertificateSubjectRestriction
from apiserver.admission.defaulttolerationseconds import DefaultTolerationSeconds
from apiserver.admission.limitranger import LimitRanger
from apiserver.admission.namespacelifecycle import NamespaceLifecycle
from apiserver.admission.noderestriction import NodeRestriction
from apiserver.admission.podsecurity import PodSecurity
from apiserver.admission.priority import Priority
from apiserver.admission.resourcequota import ResourceQuota
from apiserver.admission.serviceaccount import ServiceAccount
from apiserver.authn import APISERVER_USER

# AllOrderedPlugins, upstream's order.
ALL_ORDERED_PLUGINS = (
    "AlwaysAdmit", "NamespaceAutoProvision", "NamespaceLifecycle", "NamespaceExists",
    "SecurityContextDeny", "LimitPodHardAntiAffinityTopology", "LimitRanger", "ServiceAccount", "NodeRestriction",
    "TaintNodesByCondition", "AlwaysPullImages", "ImagePolicyWebhook", "PodSecurity", "PodNodeSelector",
    "Priority", "DefaultTolerationSeconds", "PodTolerationRestriction", "EventRateLimit",
    "ExtendedResourceToleration", "DefaultStorageClass", "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement", "PersistentVolumeClaimResize", "RuntimeClass",
    "CertificateApproval", "CertificateSigning", "ClusterTrustBundleAttest", "CertificateSubjectRestriction",
    "DefaultIngressClass", "DenyServiceExternalIPs", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook", "ResourceQuota", "AlwaysDeny",
)
# DefaultOffAdmissionPlugins' complement: what upstream runs when no flag is given.
UPSTREAM_DEFAULT_ON = frozenset({
    "NamespaceLifecycle", "LimitRanger", "ServiceAccount", "TaintNodesByCondition", "PodSecurity", "Priority",
    "DefaultTolerationSeconds", "DefaultStorageClass", "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize", "RuntimeClass", "CertificateApproval", "CertificateSigning",
    "ClusterTrustBundleAttest", "CertificateSubjectRestriction", "DefaultIngressClass",
    "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook", "ResourceQuota",
})
IMPLEMENTED = frozenset({"NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity",
                         "Priority", "DefaultTolerationSeconds", "CertificateApproval", "CertificateSigning",
                         "CertificateSubjectRestriction", "ResourceQuota"})
DEFAULT_ENABLED = tuple(n for n in ALL_ORDERED_PLUGINS if n in UPSTREAM_DEFAULT_ON and n in IMPLEMENTED)


def _implemented() -> str:
    return ", ".join(n for n in ALL_ORDERED_PLUGINS if n in IMPLEMENTED)


def split_names(value: str | None) -> list[str]:
    """Plugin names of a comma-separated flag value (blanks dropped)."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def enabled_plugins(enable: list[str], disable: list[str]) -> list[str]:
    """The plugins to run, in upstream's order: the default set plus ``enable`` minus ``disable``.

    Raises ValueError with one readable line for an unknown name, an
    unimplemented plugin to enable, or a plugin named in both lists."""
    for n in enable + disable:
        if n not in ALL_ORDERED_PLUGINS:
            raise ValueError(f"unknown admission plugin {n!r} (kubeling implements: {_implemented()})")
    both = sorted(set(enable) & set(disable))
    if both:
        raise ValueError(f"{','.join(both)} in --enable-admission-plugins and --disable-admission-plugins "
                         f"at the same time")
    missing = [n for n in enable if n not in IMPLEMENTED]
    if missing:
        raise ValueError(f"admission plugin {missing[0]!r} is not implemented by kubeling (it implements: "
                         f"{_implemented()})")
    wanted = (set(DEFAULT_ENABLED) | set(enable)) - set(disable)
    return [n for n in ALL_ORDERED_PLUGINS if n in wanted]


class CachedLister:
    """A namespace's objects from a Store's watch cache (etcd while the cache is not ready yet)."""

    def __init__(self, store):
        self.store = store

    async def list(self, namespace: str) -> list[dict]:
        """The objects of ``namespace`` (the cache's own dicts: do not mutate)."""
        prefix = self.store.info.prefix(namespace)
        if self.store.cacher.ready.is_set():
            pairs, _ = self.store.cacher.list(prefix, lambda obj: True)
            return [obj for _, obj in pairs]
        kvs, _ = await self.store.etcd.list(prefix)
        return [kv.obj for kv in kvs]

    async def get(self, namespace: str, name: str) -> dict | None:
        """One object from the cache, else from etcd (an object created a moment ago), or None."""
        key = self.store.info.key(namespace, name)
        obj = self.store.cacher.items.get(key)
        if obj is not None:
            return obj
        kv = await self.store.etcd.get(key)
        return kv.obj if kv else None


class QuotaStoreAccess(CachedLister):
    """ResourceQuota plugin access over the apiserver's resourcequotas Store (resourcequota.QuotaAccess)."""

    async def get(self, namespace: str, name: str) -> dict | None:
        """The quota read from etcd (never the cache: this follows a lost race), or None when gone."""
        try:
            return await self.store.get(namespace, name)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise

    async def update_status(self, rq: dict) -> dict:
        """PUT resourcequotas/status conditional on the quota's resourceVersion (409 when stale)."""
        meta = rq["metadata"]
        out, _ = await self.store.update(meta.get("namespace"), meta["name"], rq, subresource="status",
                                         user=APISERVER_USER)
        return out


def build(names: list[str], *, store: Callable[..., object],
          namespace_getter: Callable[[str], Awaitable[dict | None]], explicitly_enabled: frozenset[str] = frozenset(),
          not_ready_seconds: int = 300, unreachable_seconds: int = 300,
          mount_service_account_token: bool = False, authorizer: Callable[[], object] = lambda: None) -> list[Plugin]:
    """The plugin instances of ``names`` over the apiserver's stores (``store(plural[, group])`` -> its Store);
    ``authorizer()`` is the apiserver's authorizer for the certificate plugins (None: allow)."""
    factories: dict[str, Callable[[], Plugin]] = {
        "NamespaceLifecycle": lambda: NamespaceLifecycle(namespace_getter),
        "LimitRanger": lambda: LimitRanger(CachedLister(store("limitranges")).list),
        "ServiceAccount": lambda: ServiceAccount(CachedLister(store("serviceaccounts")).get, mount_token=mount_service_account_token,
                                                 require_service_account="ServiceAccount" in explicitly_enabled),
        "NodeRestriction": lambda: NodeRestriction(CachedLister(store("pods")).get),
        "PodSecurity": lambda: PodSecurity(namespace_getter),
        "Priority": lambda: Priority(lambda: CachedLister(store("priorityclasses", "scheduling.k8s.io")).list(None)),
        "DefaultTolerationSeconds": lambda: DefaultTolerationSeconds(not_ready_seconds=not_ready_seconds,
                                                                     unreachable_seconds=unreachable_seconds),
        "ResourceQuota": lambda: ResourceQuota(QuotaStoreAccess(store("resourcequotas"))),
        "CertificateApproval": lambda: CertificateApproval(authorizer),
        "CertificateSigning": lambda: CertificateSigning(authorizer),
        "CertificateSubjectRestriction": CertificateSubjectRestriction,
    }
    return [factories[n]() for n in names]


def new_chain(names: list[str], **kwargs) -> AdmissionChain:
    """An AdmissionChain running ``names`` (see ``build`` for the keyword arguments)."""
    return AdmissionChain(build(names, **kwargs))
