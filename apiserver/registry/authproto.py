"""Protobuf request bodies of the auth reviews and TokenRequest (what kubectl's typed clients send).

kubectl posts SelfSubjectAccessReview (``auth can-i``), SelfSubjectRulesReview
(``can-i --list``), SelfSubjectReview (``auth whoami``) and TokenRequest
(``create token``) as ``application/vnd.kubernetes.protobuf``: the
``k8s\\x00`` magic then a runtime.Unknown (1 typeMeta{1 apiVersion, 2 kind},
2 raw) whose raw bytes are the object in k8s.io/api's generated.proto
layout. The apiserver has no general protobuf serializer, so this module
decodes just these kinds' fields (numbers from k8s.io/api authentication/v1
and authorization/v1 generated.proto) into the JSON form the handlers take;
answers stay JSON, which client-go reads by their Content-Type.
"""
from __future__ import annotations

from apiserver import errors

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# field number -> (JSON name, "str" | "strs" | "int" | "bytes" | nested schema | [schema of a repeated message])
OBJECT_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str")}
RESOURCE_ATTRIBUTES = {1: ("namespace", "str"), 2: ("verb", "str"), 3: ("group", "str"), 4: ("version", "str"),
                       5: ("resource", "str"), 6: ("subresource", "str"), 7: ("name", "str")}
NON_RESOURCE_ATTRIBUTES = {1: ("path", "str"), 2: ("verb", "str")}
BOUND_OBJECT_REFERENCE = {1: ("kind", "str"), 2: ("apiVersion", "str"), 3: ("name", "str"), 4: ("uid", "str")}
SCHEMAS = {
    "SelfSubjectAccessReview": {1: ("metadata", OBJECT_META), 2: ("spec", {
        1: ("resourceAttributes", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES)})},
    "SelfSubjectRulesReview": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("namespace", "str")})},
    "SubjectAccessReview": {1: ("metadata", OBJECT_META), 2: ("spec", {
        1: ("resourceAttributes", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
        3: ("user", "str"), 4: ("groups", "strs"), 6: ("uid", "str")})},
    "SelfSubjectReview": {1: ("metadata", OBJECT_META)},
    "TokenReview": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("token", "str"), 2: ("audiences", "strs")})},
    "TokenRequest": {1: ("metadata", OBJECT_META), 2: ("spec", {
        1: ("audiences", "strs"), 3: ("boundObjectRef", BOUND_OBJECT_REFERENCE), 4: ("expirationSeconds", "int")})},
}
SCHEMAS["LocalSubjectAccessReview"] = SCHEMAS["SubjectAccessReview"]
# kubectl certificate approve|deny PUT the whole CSR to /approval; only the name, resourceVersion and the
# conditions count there (certificates.k8s.io/v1 generated.proto; metav1.Time is {1 seconds, 2 nanos}).
TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
SCHEMAS["CertificateSigningRequest"] = {
    1: ("metadata", {1: ("name", "str"), 6: ("resourceVersion", "str")}),
    3: ("status", {1: ("conditions", [{1: ("type", "str"), 2: ("reason", "str"), 3: ("message", "str"),
                                       4: ("lastUpdateTime", TIME), 5: ("lastTransitionTime", TIME),
                                       6: ("status", "str")}])})}
UNKNOWN = {1: ("typeMeta", {1: ("apiVersion", "str"), 2: ("kind", "str")}), 2: ("raw", "bytes")}


class _Malformed(Exception):
    pass


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _message(data: bytes, schema: dict, depth: int = 0) -> dict:
    """Decode the fields of ``schema`` from one message; unknown fields are skipped by wire type."""
    if depth > 8:
        raise _Malformed("nesting too deep")
    out: dict = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise _Malformed("truncated field")
            value, i = data[i:i + n], i + n
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if i > len(data):
            raise _Malformed("truncated field")
        field = schema.get(num)
        if field is None or value is None:
            continue
        name, kind = field
        if kind == "int" and wire == 0:
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif wire != 2:
            continue
        elif kind == "bytes":
            out[name] = value
        elif kind in ("str", "strs"):
            try:
                text = value.decode()
            except UnicodeDecodeError:
                raise _Malformed("invalid UTF-8 in a string field") from None
            if kind == "strs":
                out.setdefault(name, []).append(text)
            else:
                out[name] = text
        elif isinstance(kind, dict):
            out[name] = _message(value, kind, depth + 1)
        elif isinstance(kind, list):  # repeated message: [schema]
            out.setdefault(name, []).append(_message(value, kind[0], depth + 1))
    return out


def decode(raw: bytes, kind: str) -> dict:
    """The JSON form of a protobuf-encoded ``kind`` body; 400 BadRequest when it is not one."""
    try:
        if not raw.startswith(MAGIC):
            raise _Malformed("missing the k8s protobuf magic prefix")
        unknown = _message(raw[len(MAGIC):], UNKNOWN)
        tm = unknown.get("typeMeta") or {}
        if tm.get("kind") not in (None, "", kind):
            raise _Malformed(f"expected a {kind}, got {tm.get('kind')!r}")
        obj = _message(unknown.get("raw", b""), SCHEMAS[kind])
    except _Malformed as e:
        raise errors.bad_request(f"unable to decode a protobuf {kind}: {e}") from None
    obj.setdefault("spec", {})
    return {"kind": kind, "apiVersion": tm.get("apiVersion", ""), **obj}
