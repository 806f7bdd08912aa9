"""Go-style durations (``40s``, ``1m30s``, ``500ms``, ``2h``, bare seconds ``30``), as
Kubernetes components' flags and kubectl's ``--timeout`` take them (time.ParseDuration)."""
from __future__ import annotations

import argparse
import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds of ``text`` (``1m30s`` -> 90.0; a bare number is seconds). Raises ValueError
    with Go's wording (``time: invalid duration "x"``) for anything else, including negatives."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = _PART.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise ValueError(f'time: invalid duration "{text}"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def flag_duration(text: str) -> float:
    """argparse ``type=`` for duration flags: seconds, or ArgumentTypeError with the reason."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
