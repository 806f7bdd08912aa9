"""Strategy of discovery.k8s.io/v1 EndpointSlices.

Mirrors kube-apiserver's ``pkg/registry/discovery/endpointslice`` with
``pkg/apis/discovery/validation`` and SetDefaults_EndpointPort (protocol TCP,
name ""): addressType IPv4 / IPv6 / FQDN and immutable, 1..100 addresses per
endpoint valid for that type, at most 1,000 endpoints and 100 ports, port
names DNS-1123 labels and unique.
"""
from __future__ import annotations

import ipaddress

from apiserver.registry.rest import (ResourceInfo, Strategy, duplicate, immutable, invalid_value, not_supported,
                                     required, validate_name)
from kubeling.api import resources

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100


def _address_error(addr, address_type: str) -> str | None:
    if not isinstance(addr, str):
        return "must be a string"
    if address_type == "FQDN":
        return None if not validate_name("x", addr) else "must be a valid FQDN"
    cls = ipaddress.IPv4Address if address_type == "IPv4" else ipaddress.IPv6Address
    try:
        cls(addr)
    except ValueError:
        return f"must be a valid {address_type} address"
    return None


class EndpointSliceStrategy(Strategy):
    """EndpointSlices: written by the EndpointSlice controller (and mirrored from Endpoints)."""

    info = ResourceInfo(resources.for_name("endpointslices"), "endpointslices")
    has_status = False

    def default(self, obj: dict) -> None:
        """SetDefaults_EndpointPort: protocol TCP and name "" on each port; mutates ``obj``."""
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("name", "")

    def validate(self, obj: dict) -> list:
        """Causes: addressType, endpoints (addresses per type, counts, nodeName), ports (names, protocols,
        numbers)."""
        out = []
        at = obj.get("addressType")
        if not at:
            out.append(required("addressType"))
        elif at not in ADDRESS_TYPES:
            out.append(not_supported("addressType", at, list(ADDRESS_TYPES)))
        endpoints = obj.get("endpoints") or []
        if not isinstance(endpoints, list):
            return out + [invalid_value("endpoints", str(endpoints), "must be a list")]
        if len(endpoints) > MAX_ENDPOINTS:
            out.append(invalid_value("endpoints", len(endpoints), f"must have at most {MAX_ENDPOINTS} items"))
        for i, ep in enumerate(endpoints):
            ep_path = f"endpoints[{i}]"
            if not isinstance(ep, dict):
                out.append(invalid_value(ep_path, str(ep), "must be an object"))
                continue
            addrs = ep.get("addresses")
            if not addrs:
                out.append(required(f"{ep_path}.addresses"))
            elif not isinstance(addrs, list) or len(addrs) > MAX_ADDRESSES:
                out.append(invalid_value(f"{ep_path}.addresses", str(addrs),
                                         f"must be a list of 1 to {MAX_ADDRESSES} items"))
            elif at in ADDRESS_TYPES:
                for j, a in enumerate(addrs):
                    why = _address_error(a, at)
                    if why:
                        out.append(invalid_value(f"{ep_path}.addresses[{j}]", a, why))
            if ep.get("nodeName"):
                out += validate_name(f"{ep_path}.nodeName", ep["nodeName"])
            if ep.get("hostname"):
                out += validate_name(f"{ep_path}.hostname", ep["hostname"], "label")
        ports = obj.get("ports") or []
        if not isinstance(ports, list):
            return out + [invalid_value("ports", str(ports), "must be a list")]
        if len(ports) > MAX_PORTS:
            out.append(invalid_value("ports", len(ports), f"must have at most {MAX_PORTS} items"))
        names: set = set()
        for i, p in enumerate(ports):
            pp = f"ports[{i}]"
            if not isinstance(p, dict):
                out.append(invalid_value(pp, str(p), "must be an object"))
                continue
            name = p.get("name") or ""
            if name:
                out += validate_name(f"{pp}.name", name, "label")
            if name in names:
                out.append(duplicate(f"{pp}.name", name))
            names.add(name)
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP", "SCTP"):
                out.append(not_supported(f"{pp}.protocol", proto, ["SCTP", "TCP", "UDP"]))
            port = p.get("port")
            if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536):
                out.append(invalid_value(f"{pp}.port", port, "must be between 0 and 65535, inclusive"))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus immutable addressType."""
        out = self.validate(new)
        if old.get("addressType") and new.get("addressType") != old.get("addressType"):
            out.append(immutable("addressType", new.get("addressType", "")))
        return out
