"""Resource quantities (``10m``, ``16Mi``, ``2``) as numbers and back, for describe's totals.

Mirrors the parts of k8s.io/apimachinery/pkg/api/resource.Quantity that
``describe node`` needs: parsing SI and binary suffixes, the canonical
binary form (``4028416Ki`` prints as ``3934Mi``), and cpu shown in millicores.
"""
from __future__ import annotations

import re

_QTY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}


def parse_quantity(text) -> float:
    """A resource.Quantity string (``10m``, ``16Mi``, ``2``, ``1G``) -> its value (cores / bytes); 0 if unreadable."""
    m = _QTY.match(str(text or "").strip())
    if not m or m.group(2) not in _SUFFIX:
        return 0.0
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def canonical_quantity(text) -> str:
    """A binary-suffixed quantity in its canonical form (``4028416Ki`` -> ``3934Mi``), others unchanged."""
    m = _QTY.match(str(text or "").strip())
    if not m or m.group(2) not in ("Ki", "Mi", "Gi", "Ti") or "." in m.group(1):
        return str(text)
    return format_quantity(parse_quantity(text), "memory")


def format_quantity(value: float, resource: str) -> str:
    """cpu in millicores (``30m``, ``1``), memory in the largest exact binary unit (``48Mi``)."""
    if value == 0:
        return "0"
    if resource == "cpu":
        milli = round(value * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if value % _SUFFIX[suffix] == 0:
            return f"{int(value // _SUFFIX[suffix])}{suffix}"
    return str(int(value))
