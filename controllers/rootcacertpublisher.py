"""The root CA certificate publisher: a ``kube-root-ca.crt`` ConfigMap in every namespace.

Mirrors pkg/controller/certificates/rootcacertpublisher: pods read the
cluster CA from the ``kube-root-ca.crt`` ConfigMap (key ``ca.crt``) that the
ServiceAccount admission plugin projects into their kube-api-access volume
beside the token. On every namespace add/update and every change or delete
of that ConfigMap the namespace is queued; its sync creates the ConfigMap
or puts back the CA (the content of ``--root-ca-file``) when someone changed
it. Runs only when the controller-manager has a root CA file.
"""
from __future__ import annotations

import logging

from controllers.controller_utils import BaseController
from kubeling.client import ApiError, Client, Informer

log = logging.getLogger(__name__)

CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
               "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
               "guaranteed across distributions of Kubernetes clusters.")


class RootCACertPublisher(BaseController):
    """Keeps ``kube-root-ca.crt`` (data ``ca.crt`` = ``root_ca``) in every active namespace; keys are namespaces."""

    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, ns_informer: Informer, cm_informer: Informer, *, root_ca: str):
        super().__init__(client, [ns_informer, cm_informer])
        self.root_ca = root_ca
        self.ns_lister = ns_informer.lister
        self.cm_lister = cm_informer.lister
        ns_informer.add_handlers(on_add=lambda ns: self.queue.add(ns["metadata"]["name"]),
                                 on_update=lambda old, new: self.queue.add(new["metadata"]["name"]))

        def cm_changed(cm: dict) -> None:
            if cm["metadata"].get("name") == CONFIGMAP:
                self.queue.add(cm["metadata"].get("namespace") or "")
        cm_informer.add_handlers(on_update=lambda old, new: cm_changed(new), on_delete=cm_changed)

    async def sync(self, key: str) -> None:
        """Create or repair the namespace's ``kube-root-ca.crt``. Raises ApiError to retry."""
        ns = self.ns_lister.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        have = self.cm_lister.get(CONFIGMAP, key)
        data = {"ca.crt": self.root_ca}
        try:
            if have is None:
                await self.client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIGMAP, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, namespace=key)
                log.info("created configmap %s/%s", key, CONFIGMAP)
            elif have.get("data") != data:
                await self.client.patch("configmaps", CONFIGMAP, {"data": data}, namespace=key)
                log.info("restored the CA in configmap %s/%s", key, CONFIGMAP)
        except ApiError as e:
            if e.code not in (409, 403, 404):  # exists, namespace terminating or gone
                raise
