"""The proxy's view of Services and Endpoints, rebuilt cheaply on every sync.

Both proxy modes (iptables, nftables) read the informers' listers at each
sync and need the flat service-port and endpoint maps of proxy.serviceport.
Parsing every object on every sync would dominate a sync after a one-endpoint
change at 5,000 services, so each object's parsed form is cached and reparsed
only when the informer replaced the object. Mirrors the role of upstream's
pkg/proxy/servicechangetracker.go and endpointschangetracker.go (which keep
the ServicePortMap and EndpointsMap up to date between syncs).
"""
from __future__ import annotations

from typing import Callable, Iterable

from proxy.serviceport import EndpointsMap, ServicePort, ServicePortName, endpoints_ports, service_ports


class ObjectCache:
    """Parsed form of each API object, reparsed only when the object changes.

    ``parse``: object dict -> parsed form. Informers replace an object on every
    update and never mutate it, so the identity of the dict (kept alive here)
    tells whether it changed.
    """

    def __init__(self, parse: Callable[[dict], object]):
        self.parse = parse
        self.items: dict[tuple[str, str], tuple[dict, object]] = {}

    def update(self, objects: Iterable[dict]) -> list:
        """Parsed forms of ``objects`` (the cache then holds exactly these)."""
        fresh = {}
        for obj in objects:
            meta = obj.get("metadata", {})
            key = (meta.get("namespace", "default"), meta.get("name", ""))
            old = self.items.get(key)
            fresh[key] = old if old is not None and old[0] is obj else (obj, self.parse(obj))
        self.items = fresh
        return [parsed for _, parsed in fresh.values()]


class ChangeTracker:
    """Service dicts + v1 Endpoints dicts -> (ServicePortName -> ServicePort, EndpointsMap).

    ``update`` returns fresh maps each time; the records inside are the cached
    ones for unchanged objects, so renderers can compare by identity.
    """

    def __init__(self) -> None:
        self._services = ObjectCache(service_ports)
        self._endpoints = ObjectCache(endpoints_ports)

    def update(self, services: Iterable[dict],
               endpoints: Iterable[dict]) -> tuple[dict[ServicePortName, ServicePort], EndpointsMap]:
        """The service-port map and the endpoints map of the given objects."""
        service_map: dict[ServicePortName, ServicePort] = {}
        for ports in self._services.update(services):
            service_map.update((sp.name, sp) for sp in ports)
        endpoints_map: EndpointsMap = {}
        for eps in self._endpoints.update(endpoints):
            endpoints_map.update(eps)
        return service_map, endpoints_map
