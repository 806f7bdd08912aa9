"""JSON encoding and decoding of API objects on the apiserver's hot paths (request bodies, etcd values,
responses, watch events).

Mirrors the role of k8s.io/apimachinery's ``runtime/serializer/json``: one
codec for every object the server reads or writes. It uses orjson (several
times faster than the standard library, and its decoder shares the key
strings of the objects it builds, which matters for a watch cache holding
thousands of them) and falls back to the standard ``json`` module wherever
orjson would answer differently, so the accepted inputs, the decoded values
and the error messages are those of ``json``:

- integers of 19 digits or more (orjson turns those beyond 64 bits into
  floats; ``json`` keeps them exact),
- anything orjson refuses (NaN/Infinity literals, lone surrogates, integers
  beyond 64 bits, non-string keys, datetimes or dataclasses when encoding):
  ``json`` decides, raising ``json.JSONDecodeError`` / ``ValueError`` /
  ``TypeError`` as before.

Encoded output is compact (``separators=(",", ":")``) UTF-8; non-ASCII
characters are written as UTF-8 rather than ``\\uXXXX`` escapes (as Go's
encoder does), which decodes to the same value. A float NaN or infinity
(which only a ``NaN`` literal in a request body can bring) encodes as
``null`` instead of the invalid ``NaN``.
"""
from __future__ import annotations

import json
import re

import orjson

_LONG_INT = re.compile(rb"\d{19}")
_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def loads(data: bytes | str):
    """The value of a JSON document; raises json.JSONDecodeError (a ValueError) as ``json.loads`` would."""
    raw = data.encode() if isinstance(data, str) else data
    if _LONG_INT.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(obj) -> bytes:
    """Compact JSON bytes of ``obj``; raises TypeError / ValueError for what ``json.dumps`` cannot encode."""
    try:
        return orjson.dumps(obj, option=_OPTS)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()
