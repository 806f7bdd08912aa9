"""The EndpointSlice controller: for every Service with a selector, discovery.k8s.io/v1
EndpointSlices listing the selected pods' addresses, ports and conditions.

kubectl 1.32 reads EndpointSlices, not Endpoints (``describe service`` shows
their ready addresses), so both controllers run. Mirrors
pkg/controller/endpointslice (reconciler.go, utils.go), simplified to one
address type (IPv4): endpoints are grouped by their resolved port list, at
most 100 per slice (--max-endpoints-per-slice); a slice is named from
``<service>-`` by generateName, labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by``, owned by the Service. Terminating
pods stay in with ``terminating: true`` (ready false, serving from their
readiness), as upstream. Slices of a deleted Service are removed here (the
garbage collector does not watch EndpointSlices).
"""
from __future__ import annotations

import logging

from kubeling.api import selectors
from kubeling.client import ApiError, Client, Informer, deep_copy, split_key
from controllers.controller_utils import BaseController, is_pod_ready, labels_of
from controllers.endpoints import HEADLESS_LABEL, _ip_key, find_port, services_for, services_to_update

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100


def _endpoint(pod: dict, *, publish_not_ready: bool) -> dict:
    """podToEndpoint: one address, conditions ready/serving/terminating, nodeName, targetRef."""
    meta = pod["metadata"]
    terminating = bool(meta.get("deletionTimestamp"))
    serving = publish_not_ready or is_pod_ready(pod)
    ep = {"addresses": [pod["status"]["podIP"]],
          "conditions": {"ready": serving and not terminating, "serving": serving, "terminating": terminating}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    ep["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                       "uid": meta.get("uid", "")}
    return ep


def desired_slices(service: dict, pods: list[dict], *,
                   max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> list[tuple[list[dict], list[dict]]]:
    """The (ports, endpoints) of each slice ``service`` should have over its selected ``pods``.

    ports are EndpointPorts ({name, port, protocol}); pods without an IP or in
    a terminal phase are left out; a pod missing a named target port is
    listed without that port (so under another port list), as upstream.
    """
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, list[dict]] = {}
    for pod in pods:
        status = pod.get("status") or {}
        if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            port = find_port(pod, sp)
            if port is not None:
                ports.append((sp.get("name") or "", port, sp.get("protocol") or "TCP"))
        groups.setdefault(tuple(ports), []).append(_endpoint(pod, publish_not_ready=publish_not_ready))
    out = []
    for ports in sorted(groups):
        eps = sorted(groups[ports], key=lambda e: _ip_key(e["addresses"][0]))
        port_list = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
        for i in range(0, len(eps), max_per_slice):
            out.append((port_list, eps[i:i + max_per_slice]))
    return out


def slice_labels(service: dict) -> dict:
    """The labels of the service's slices: its own, the headless marker, service-name and managed-by."""
    labels = {k: v for k, v in labels_of(service).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def _owner(service: dict) -> dict:
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


class EndpointSliceController(BaseController):
    """Reconciles the EndpointSlices of Services (with a selector) with their pods."""

    name = "endpointslice"

    def __init__(self, client: Client, service_informer: Informer, pod_informer: Informer,
                 slice_informer: Informer, *, max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE):
        super().__init__(client, [service_informer, pod_informer, slice_informer])
        self.service_lister = service_informer.lister
        self.pod_lister = pod_informer.lister
        self.slice_lister = slice_informer.lister
        self.max_per_slice = max_endpoints_per_slice
        # service key -> slices we created that the informer has not shown yet (upstream's
        # endpointSliceTracker role): without them a quick second sync would create duplicates.
        self._created: dict[str, dict[str, dict]] = {}
        service_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                      on_delete=self.enqueue)
        pod_informer.add_handlers(on_add=self._pod_changed, on_update=self._update_pod,
                                  on_delete=self._pod_changed)
        slice_informer.add_handlers(on_update=lambda old, new: self._slice_changed(new),
                                    on_delete=self._slice_changed)

    def _pod_changed(self, pod: dict) -> None:
        for svc in services_for(self.service_lister, pod):
            self.enqueue(svc)

    def _update_pod(self, old: dict, new: dict) -> None:
        for key in services_to_update(self.service_lister, old, new):
            self.queue.add(key)

    def _slice_changed(self, es: dict) -> None:
        """A managed slice changed or went away behind our back: resync its service."""
        labels = labels_of(es)
        if labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME and labels.get(SERVICE_NAME_LABEL):
            self.queue.add(f"{es['metadata'].get('namespace')}/{labels[SERVICE_NAME_LABEL]}")

    def _slices_of(self, ns: str, name: str) -> list[dict]:
        """The managed slices of service ``ns/name``: the informer's, plus those we created that it lacks."""
        def managed(es: dict) -> bool:
            labels = labels_of(es)
            return labels.get(SERVICE_NAME_LABEL) == name and labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME
        seen = {es["metadata"]["name"]: es for es in self.slice_lister.list(ns, match=managed)}
        pending = self._created.get(f"{ns}/{name}", {})
        for n in [n for n in pending if n in seen]:
            del pending[n]
        return sorted([*seen.values(), *pending.values()], key=lambda es: es["metadata"]["name"])

    async def on_synced(self) -> None:
        """Enqueue the service of every managed slice, so slices of services deleted while we were down go."""
        for es in self.slice_lister.list():
            self._slice_changed(es)

    async def sync(self, key: str) -> None:
        """Make the slices of Service ``namespace/name`` list its pods (mirrors Controller.syncService and
        reconciler.reconcile): matching slices are kept or replaced, missing ones created, extra ones
        deleted. ApiError other than 404/409 propagates to retry."""
        ns, name = split_key(key)
        service = self.service_lister.get(name, ns)
        existing = self._slices_of(ns, name)
        selector = ((service or {}).get("spec") or {}).get("selector")
        if service is None or not selector:
            for es in existing:  # the service is gone (or no longer selects): its slices go too
                await self._delete(es)
            self._created.pop(key, None)
            return
        sel = selectors.selector_from_set(selector)
        pods = self.pod_lister.list(ns, match=lambda p: sel.matches(labels_of(p)))
        labels, owner = slice_labels(service), _owner(service)
        unused = list(existing)
        for ports, endpoints in desired_slices(service, pods, max_per_slice=self.max_per_slice):
            match = next((es for es in unused if (es.get("ports") or []) == ports), None)
            if match is None:
                body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"generateName": f"{name[:57]}-", "namespace": ns, "labels": labels,
                                     "ownerReferences": [owner]},
                        "addressType": "IPv4", "endpoints": endpoints, "ports": ports}
                created = await self.client.create("endpointslices", body, namespace=ns)
                self._created.setdefault(key, {})[created["metadata"]["name"]] = created
                continue
            unused.remove(match)
            if (match.get("endpoints") or []) == endpoints and labels_of(match) == labels and \
                    match["metadata"].get("ownerReferences") == [owner]:
                continue
            obj = deep_copy(match)
            obj["endpoints"], obj["ports"] = endpoints, ports
            obj["metadata"]["labels"], obj["metadata"]["ownerReferences"] = labels, [owner]
            try:
                await self.client.replace("endpointslices", obj)
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                self.queue.add_after(key, 0.2)  # our cache lags: sync again from the informer
        for es in unused:
            await self._delete(es)
            self._created.get(key, {}).pop(es["metadata"]["name"], None)

    async def _delete(self, es: dict) -> None:
        try:
            await self.client.delete("endpointslices", es["metadata"]["name"], namespace=es["metadata"]["namespace"])
        except ApiError as e:
            if e.code != 404:
                raise
