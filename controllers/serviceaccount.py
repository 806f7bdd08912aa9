"""The service account controller: a ``default`` ServiceAccount in every namespace.

Mirrors pkg/controller/serviceaccount/serviceaccounts_controller.go: on every
namespace add/update and every ServiceAccount delete the namespace is queued;
its sync creates the missing ``default`` ServiceAccount unless the namespace
is terminating (the apiserver would refuse it anyway). Tokens are not made
here: since 1.24 pods get bound tokens through the TokenRequest API.
"""
from __future__ import annotations

import logging

from kubeling.client import ApiError, Client, Informer
from controllers.controller_utils import BaseController

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNTS = ("default",)


class ServiceAccountsController(BaseController):
    """Ensures the default ServiceAccounts exist; keys are namespace names."""

    name = "serviceaccount"

    def __init__(self, client: Client, ns_informer: Informer, sa_informer: Informer):
        super().__init__(client, [ns_informer, sa_informer])
        self.ns_lister = ns_informer.lister
        self.sa_lister = sa_informer.lister
        ns_informer.add_handlers(on_add=lambda ns: self.queue.add(ns["metadata"]["name"]),
                                 on_update=lambda old, new: self.queue.add(new["metadata"]["name"]))
        sa_informer.add_handlers(on_delete=lambda sa: self.queue.add(sa["metadata"].get("namespace") or ""))

    async def sync(self, key: str) -> None:
        """Create the missing default ServiceAccounts of namespace ``key``. Raises ApiError to retry."""
        ns = self.ns_lister.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        for name in DEFAULT_SERVICE_ACCOUNTS:
            if self.sa_lister.get(name, key) is not None:
                continue
            try:
                await self.client.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                             "metadata": {"name": name}}, namespace=key)
                log.info("created serviceaccount %s/%s", key, name)
            except ApiError as e:
                if e.code not in (409, 403, 404):  # exists, namespace terminating or gone
                    raise
