"""Admission: the hook between validation and storage where plugins may mutate or reject a write.

Mirrors k8s.io/apiserver's ``pkg/admission`` (Attributes, a chain of
MutationInterface/ValidationInterface plugins). The plugins live in this
package under upstream's names; ``plugins.py`` is the registry of names,
order and default set behind ``--enable-admission-plugins`` /
``--disable-admission-plugins`` (pkg/kubeapiserver/options/plugins.go).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

from apiserver import errors
from apiserver.authn import UserInfo


class Attributes(NamedTuple):
    """What is being admitted: verb (create/update/delete), resource info, namespace, name, subresource, and
    the requesting user as authenticated (apiserver.authn.UserInfo: name, groups, uid, extra; the
    apiserver's own writes are authn.APISERVER_USER)."""

    operation: str
    resource: object
    namespace: str | None
    name: str
    subresource: str | None
    user: UserInfo
    dry_run: bool = False  # ?dryRun=All: plugins with side effects (ResourceQuota's charge) skip them


def resource_name(attrs: Attributes) -> str:
    """The plural resource name of the request (``pods``)."""
    return getattr(attrs.resource, "resource", "") or ""


def resource_group(attrs: Attributes) -> str:
    """The API group of the request ("" for the core group)."""
    return getattr(attrs.resource, "group", "") or ""


def forbidden(attrs: Attributes, message: str) -> errors.StatusError:
    """403 ``pods "x" is forbidden: <message>`` for the request's resource and name (admission.NewForbidden)."""
    return errors.forbidden(resource_name(attrs), attrs.name, message, group=resource_group(attrs))


class Plugin(Protocol):
    """One admission plugin: may mutate ``obj`` in place or raise errors.StatusError to reject."""

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Admit one write: may mutate ``obj`` in place; raise errors.StatusError to reject it.

        ``old`` is None on create, ``obj`` is None on delete."""


class AdmissionChain:
    """Runs the plugins in order (mutating and validating alike); empty by default."""

    def __init__(self, plugins: list[Plugin] | None = None):
        self.plugins = list(plugins or [])

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Run every plugin; the first StatusError raised rejects the request."""
        for p in self.plugins:
            await p.admit(attrs, obj, old)
