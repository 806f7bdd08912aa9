"""Kubernetes resource quantities (``100m``, ``1``, ``128Mi``, ``1Gi``, ``1e3``).

Requests, limits, capacity and allocatable are written as quantities; the
scheduler, the kubelet and the CLI must all read them the same way, so the
parser lives here once. Mirrors k8s.io/apimachinery's ``resource.Quantity``
(ParseQuantity, MilliValue, Value): exact arithmetic (``fractions.Fraction``),
values rounded up to integers as upstream's Value/MilliValue do.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["parse_quantity", "milli_value", "value", "format_milli", "format_quantity", "canonical_quantity",
           "parse_or_zero"]

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
_QUANTITY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                          r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity: ``"100m"`` -> 1/10, ``"1Gi"`` -> 1073741824.

    Accepts numbers too (a manifest may carry ``cpu: 1``). Raises ValueError
    with upstream's message ("quantities must match the regular expression ...")
    for anything else.
    """
    if isinstance(text, bool):
        raise ValueError(f"quantity {text!r} is not a number")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    s = str(text).strip()
    m = _QUANTITY_RE.match(s)
    if not m:
        raise ValueError(f"quantity {text!r}: quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    number, exponent, suffix = m.groups()
    base = Fraction(number)
    if exponent:
        return base * Fraction(10) ** int(exponent[1:])
    suffix = suffix or ""
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    return base * _DECIMAL[suffix]


def milli_value(text: str | int | float | None) -> int:
    """Thousandths of the quantity, rounded up (``"100m"`` -> 100, ``"1"`` -> 1000); None -> 0."""
    if text is None:
        return 0
    return math.ceil(parse_quantity(text) * 1000)


def value(text: str | int | float | None) -> int:
    """The quantity rounded up to an integer (``"128Mi"`` -> 134217728); None -> 0."""
    if text is None:
        return 0
    return math.ceil(parse_quantity(text))


def format_milli(milli: int) -> str:
    """Canonical text of a millis value: 1500 -> ``"1500m"``, 2000 -> ``"2"``."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def parse_or_zero(text: str | int | float | None) -> Fraction:
    """``parse_quantity`` for display code: None or an unreadable quantity -> 0."""
    try:
        return parse_quantity(text) if text is not None else Fraction(0)
    except ValueError:
        return Fraction(0)


def format_quantity(amount: Fraction | float | int, resource: str) -> str:
    """Text of an amount as kubectl shows it: cpu in millicores (``30m``, ``1``),
    other resources in the largest exact binary unit (``48Mi``) or plain."""
    if amount == 0:
        return "0"
    if resource == "cpu":
        return format_milli(round(Fraction(amount) * 1000))
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if Fraction(amount) % _BINARY[suffix] == 0:
            return f"{int(Fraction(amount) // _BINARY[suffix])}{suffix}"
    return str(int(amount))


def canonical_quantity(text: str | int | float) -> str:
    """A binary-suffixed quantity in canonical form (``4028416Ki`` -> ``3934Mi``);
    anything else is returned as written (as resource.Quantity.String does)."""
    s = str(text).strip()
    m = _QUANTITY_RE.match(s)
    if not m or m.group(3) not in _BINARY or "." in m.group(1):
        return str(text)
    return format_quantity(parse_quantity(s), "memory")
