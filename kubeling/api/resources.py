"""The table of API resources kubeling's clients know by name.

Mirrors the part of discovery (``/api/v1``, ``/apis/apps/v1``) that clients
need to build request paths: for each kind its group/version, plural
resource name, whether it is namespaced, and the short names kubectl accepts
(``po``, ``svc``, ``deploy``). The apiserver serves the authoritative
discovery documents; this table lets components build paths without a
discovery round trip, as client-go's typed clients do.
"""
from __future__ import annotations

from typing import NamedTuple


class Resource(NamedTuple):
    """One served resource: ``Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",))``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``group/version`` (e.g. ``apps/v1``)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        """Lower-case kind, as discovery's singularName (``deployment``)."""
        return self.kind.lower()

    def path(self, *, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """Request path, e.g. ``/apis/apps/v1/namespaces/default/deployments/web/scale``.

        A namespaced resource without ``namespace`` gives the all-namespaces
        path (``/api/v1/pods``); ``name`` and ``subresource`` are appended when set.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Resource("", "v1", "pods", "Pod", True, ("po",)),
    Resource("", "v1", "nodes", "Node", False, ("no",)),
    Resource("", "v1", "services", "Service", True, ("svc",)),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "secrets", "Secret", True, ()),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",)),
    Resource("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    Resource("batch", "v1", "jobs", "Job", True, ()),
    Resource("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, ()),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, ()),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True, ()),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, ()),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, ()),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, ()),
    Resource("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False,
             ("csr",)),
    # served over the same storage as core v1 events; names resolve to the core row first, as kubectl's
    # preferred-version order does
    Resource("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
)

_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
_BY_NAME: dict[str, Resource] = {}
for _r in RESOURCES:
    for _n in (_r.plural, _r.singular, _r.kind, *_r.short_names):
        _BY_NAME.setdefault(_n.lower(), _r)


def for_kind(api_version: str, kind: str) -> Resource:
    """Resource of a manifest's ``apiVersion``/``kind``.

    Raises KeyError with a kubectl-like message when the pair is not served.
    """
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f'no matches for kind "{kind}" in version "{api_version}"') from None


def for_name(name: str) -> Resource:
    """Resource of a command-line name: plural, singular, kind or short name
    (``pods``, ``pod``, ``Pod``, ``po``; ``deployments.apps`` also accepted).

    Raises KeyError with kubectl's message when the name is unknown.
    """
    key = name.lower().split(".", 1)[0]
    try:
        return _BY_NAME[key]
    except KeyError:
        raise KeyError(f'the server doesn\'t have a resource type "{name}"') from None
