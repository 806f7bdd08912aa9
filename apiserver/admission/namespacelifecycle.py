"""The NamespaceLifecycle admission plugin.

Mirrors k8s.io/apiserver's ``pkg/admission/plugin/namespace/lifecycle``:
nothing new may be created in a namespace that does not exist
(``namespaces "x" not found``) or is being deleted (``unable to create new
content in namespace x because it is being terminated``), and the
namespaces the control plane lives in (default, kube-system, kube-public)
may never be deleted. kubeling's generic registry and namespace registry
check the same rules before admission runs (they predate this plugin and
keep their error precedence); the plugin states them where upstream does,
so a chain run on any path (and ``--disable-admission-plugins``) sees them.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from apiserver import errors
from apiserver.admission import Attributes, forbidden, resource_name

IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
# Review APIs create nothing stored; upstream lets them through in any namespace.
ACCESS_REVIEW_RESOURCES = frozenset({"localsubjectaccessreviews", "subjectaccessreviews", "selfsubjectaccessreviews",
                                     "tokenreviews", "selfsubjectreviews", "selfsubjectrulesreviews"})


class NamespaceLifecycle:
    """Admission plugin guarding namespace lifecycles.

    ``namespace_getter(name)`` returns the Namespace object or None (live
    lookup when the cache has not seen it yet, as upstream's plugin does).
    """

    name = "NamespaceLifecycle"

    def __init__(self, namespace_getter: Callable[[str], Awaitable[dict | None]], *,
                 immortal: frozenset[str] = IMMORTAL_NAMESPACES):
        self.namespace_getter = namespace_getter
        self.immortal = immortal

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Refuse the deletion of an immortal namespace and creates in a missing or terminating one."""
        resource = resource_name(attrs)
        if resource == "namespaces" and not attrs.subresource:
            if attrs.operation == "delete" and attrs.name in self.immortal:
                raise forbidden(attrs, "this namespace may not be deleted")
            return
        if attrs.operation != "create" or not attrs.namespace or resource in ACCESS_REVIEW_RESOURCES:
            return
        ns = await self.namespace_getter(attrs.namespace)
        if ns is None:
            raise errors.not_found("namespaces", attrs.namespace)
        meta = ns.get("metadata") or {}
        if meta.get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            raise forbidden(attrs, f"unable to create new content in namespace {attrs.namespace} "
                                   f"because it is being terminated")
