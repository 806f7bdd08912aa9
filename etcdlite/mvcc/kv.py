"""Plain records of the store: a key-value version and a change event.

Mirrors mvccpb.KeyValue and mvccpb.Event, kept as NamedTuples so the store does
not pay for protobuf objects; the gRPC layer converts at the edge.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

PUT = 0
DELETE = 1


class KeyValue(NamedTuple):
    """One version of a key (mvccpb.KeyValue). Revisions are store revisions (int >= 1)."""

    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes
    lease: int = 0


class Event(NamedTuple):
    """A change (mvccpb.Event): ``type`` PUT or DELETE, ``kv`` the new version (for a
    DELETE only key and mod_revision are set), ``prev_kv`` the version before, if any."""

    type: int
    kv: KeyValue
    prev_kv: Optional[KeyValue]


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether ``key`` falls in etcd's range: ``end`` empty means the single key
    ``start``, ``b"\\0"`` means every key >= ``start``, else ``[start, end)``."""
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end
