"""The Endpoints controller: for every Service with a selector, an Endpoints
object of the same name listing the selected pods' IPs and ports.

Mirrors pkg/controller/endpoint/endpoints_controller.go: ready pods go to
``addresses``, others to ``notReadyAddresses`` (all to ``addresses`` with
publishNotReadyAddresses); pods without an IP or being deleted are left out;
each service port's targetPort is resolved per pod (a number, or the name of
a container port); subsets are then repacked so that addresses sharing the
same ports share a subset (endpoints.RepackSubsets).
"""
from __future__ import annotations

import logging

from kubeling.api import selectors
from kubeling.client import ApiError, Client, Informer, deep_copy, meta_key, split_key
from controllers.controller_utils import BaseController, is_pod_ready, labels_of

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


def find_port(pod: dict, service_port: dict) -> int | None:
    """The pod's port for a ServicePort: targetPort as a number, or the
    containerPort named targetPort with the same protocol (podutil.FindPort);
    targetPort defaults to port. None when the pod has no such named port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return int(p["containerPort"])
    return None


def _address(pod: dict) -> dict:
    meta = pod["metadata"]
    addr = {"ip": pod["status"]["podIP"],
            "targetRef": {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                          "uid": meta.get("uid", "")}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    return addr


def compute_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """The Endpoints subsets of ``service`` over the (already selected) ``pods``."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    # address ip -> (address, ready, set of (name, port, protocol))
    entries: dict[str, tuple[dict, bool, set]] = {}
    for pod in pods:
        status = pod.get("status") or {}
        if not status.get("podIP") or pod["metadata"].get("deletionTimestamp") or \
                status.get("phase") in ("Succeeded", "Failed"):
            continue
        ready = publish_not_ready or is_pod_ready(pod)
        if not ports:
            if headless:
                entries.setdefault(status["podIP"], (_address(pod), ready, set()))
            continue
        for sp in ports:
            port = find_port(pod, sp)
            if port is None:
                continue
            entry = entries.setdefault(status["podIP"], (_address(pod), ready, set()))
            entry[2].add((sp.get("name") or "", port, sp.get("protocol") or "TCP"))
    groups: dict[frozenset, dict] = {}
    for ip in sorted(entries, key=_ip_key):
        addr, ready, port_set = entries[ip]
        subset = groups.setdefault(frozenset(port_set), {"addresses": [], "notReadyAddresses": []})
        subset["addresses" if ready else "notReadyAddresses"].append(addr)
    subsets = []
    for port_set, subset in groups.items():
        out = {k: v for k, v in subset.items() if v}
        if port_set:
            out["ports"] = [{**({"name": n} if n else {}), "port": p, "protocol": proto}
                            for n, p, proto in sorted(port_set)]
        subsets.append(out)
    return sorted(subsets, key=lambda s: repr(s.get("ports")))


def _ip_key(ip: str) -> tuple:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (ip,)


def services_for(service_lister, pod: dict) -> list[dict]:
    """The Services (with a selector) in ``pod``'s namespace whose selector matches its labels
    (getPodServiceMemberships)."""
    labels = labels_of(pod)

    def selects(svc: dict) -> bool:
        sel = (svc.get("spec") or {}).get("selector")
        return bool(sel) and selectors.selector_from_set(sel).matches(labels)
    return service_lister.list(pod["metadata"].get("namespace"), match=selects)


def services_to_update(service_lister, old: dict, new: dict) -> set[str]:
    """Keys of the Services a pod update concerns: none for a resync (same resourceVersion), those
    selecting the new pod, and those selecting the old one when its labels changed (GetServicesToUpdateOnPodChange)."""
    if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
        return set()
    keys = {meta_key(s) for s in services_for(service_lister, new)}
    if labels_of(old) != labels_of(new):
        keys |= {meta_key(s) for s in services_for(service_lister, old)}
    return keys


class EndpointsController(BaseController):
    """Reconciles Endpoints with Services (with a selector) and their pods."""

    name = "endpoints"

    def __init__(self, client: Client, service_informer: Informer, pod_informer: Informer,
                 endpoints_informer: Informer):
        super().__init__(client, [service_informer, pod_informer, endpoints_informer])
        self.service_lister = service_informer.lister
        self.pod_lister = pod_informer.lister
        self.endpoints_lister = endpoints_informer.lister
        service_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                      on_delete=self.enqueue)
        pod_informer.add_handlers(on_add=self._pod_changed, on_update=self._update_pod,
                                  on_delete=self._pod_changed)
        endpoints_informer.add_handlers(on_delete=self.enqueue)

    def _pod_changed(self, pod: dict) -> None:
        for svc in services_for(self.service_lister, pod):
            self.enqueue(svc)

    def _update_pod(self, old: dict, new: dict) -> None:
        for key in services_to_update(self.service_lister, old, new):
            self.queue.add(key)

    async def on_synced(self) -> None:
        """Enqueue every Endpoints so those of services deleted while we were down get removed (checkLeftoverEndpoints)."""
        # Endpoints left behind by services deleted while we were down (checkLeftoverEndpoints).
        for ep in self.endpoints_lister.list():
            self.enqueue(ep)

    async def sync(self, key: str) -> None:
        """Make Endpoints ``namespace/name`` list the ready/not-ready addresses of the pods its Service selects, or delete
        it when the Service is gone (mirrors EndpointsController.syncService); ApiError other than 404 propagates to retry.
        """
        ns, name = split_key(key)
        service = self.service_lister.get(name, ns)
        if service is None:
            if self.endpoints_lister.get(name, ns) is not None:
                try:
                    await self.client.delete("endpoints", name, namespace=ns)
                except ApiError as e:
                    if e.code != 404:
                        raise
            return
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return  # endpoints of selector-less services are managed by the user
        sel = selectors.selector_from_set(selector)
        pods = self.pod_lister.list(ns, match=lambda p: sel.matches(labels_of(p)))
        subsets = compute_subsets(service, pods)
        labels = dict(labels_of(service))
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        current = self.endpoints_lister.get(name, ns)
        if current is not None and (current.get("subsets") or []) == subsets and labels_of(current) == labels:
            return
        if current is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {})},
                    "subsets": subsets}
            try:
                await self.client.create("endpoints", body, namespace=ns)
            except ApiError as e:
                if e.code != 409:
                    raise
                # Created meanwhile (or our cache lags): sync again from the informer.
                self.queue.add_after(key, 0.2)
            return
        obj = deep_copy(current)
        obj["subsets"] = subsets
        obj["metadata"]["labels"] = labels
        await self.client.replace("endpoints", obj)
