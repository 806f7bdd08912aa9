"""/openapi/v3: the OpenAPI v3 documents of the served group/versions, built from the official schemas.

kubectl 1.32 reads them for three things: ``create``/``apply`` look for a
PATCH operation carrying the object's ``x-kubernetes-group-version-kind``
and a ``fieldValidation`` query parameter (found -> it leaves validation to
the server and sends ``fieldValidation=Strict``); ``explain`` renders the
``components.schemas`` of a group/version. The schemas are never written by
hand: they come from the upstream definitions that the ``kubernetes-validate``
package ships per Kubernetes version (JSON Schema form of the v1.32.0
OpenAPI), converted back to OpenAPI 3.0 shape (``#/components/schemas/``
refs, single ``type`` strings, ``allOf`` around a ``$ref`` with siblings,
``int-or-string``). Mirrors kube-openapi's ``handler3`` (root listing with
``serverRelativeURL?hash=``, ETag = upper-case hex SHA-512 of the document,
immutable caching when the hash matches) and kube-apiserver's route
builder (operation ids, parameters, the GVK extension on each operation).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from importlib import resources as importlib_resources

from apiserver.registry.rest import ResourceInfo

SCHEMA_VERSION = "v1.32.0"
REF_PREFIX = "#/components/schemas/"
_SRC_PREFIX = "#/$defs/"
# Definitions the operations reference besides the served kinds themselves.
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
COMMON_DEFINITIONS = (META + "Status", META + "DeleteOptions", META + "Patch", META + "WatchEvent")
# Leaves the JSON Schema form spells as oneOf; upstream's v3 documents give them as strings.
_SCALAR_DEFINITIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number.", "type": "string"},
}


@functools.lru_cache(maxsize=1)
def definitions() -> dict[str, dict]:
    """Every upstream definition of ``SCHEMA_VERSION`` in OpenAPI 3.0 shape, by name
    (``io.k8s.api.core.v1.Pod`` -> schema). Loaded once from the kubernetes-validate package;
    raises FileNotFoundError if the package or the version is missing."""
    path = importlib_resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/{SCHEMA_VERSION}-local/_definitions.json")
    raw = json.loads(path.read_text())["$defs"]
    out = {name: _convert(schema) for name, schema in raw.items()}
    out.update(copy.deepcopy(_SCALAR_DEFINITIONS))
    for schema in out.values():
        # kubernetes-validate pins apiVersion/kind with an enum; upstream's documents do not
        if schema.get("x-kubernetes-group-version-kind"):
            for prop in ("apiVersion", "kind"):
                (schema.get("properties") or {}).get(prop, {}).pop("enum", None)
    return out


def _convert(schema):
    """One JSON Schema (2020-12, nullable types) -> OpenAPI 3.0 schema object."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif key == "$ref" and isinstance(value, str):
            out["$ref"] = REF_PREFIX + value[len(_SRC_PREFIX):] if value.startswith(_SRC_PREFIX) else value
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: _convert(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value)
        elif key in ("allOf", "oneOf", "anyOf") and isinstance(value, list):
            out[key] = [_convert(s) for s in value]
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:  # OpenAPI 3.0 ignores siblings of $ref: upstream wraps it in allOf
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def ref_name(schema: dict) -> str | None:
    """The definition name a schema points at (``$ref`` or a one-element ``allOf``), else None."""
    ref = schema.get("$ref")
    if ref is None and len(schema.get("allOf") or []) == 1:
        ref = schema["allOf"][0].get("$ref")
    return ref[len(REF_PREFIX):] if isinstance(ref, str) and ref.startswith(REF_PREFIX) else None


@functools.lru_cache(maxsize=1)
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            out[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name
    return out


def preload() -> None:
    """Load and index the schemas now (about 3 s), so the first patch or
    fieldValidation check does not pay for it; call from a worker thread."""
    _gvk_index()


def definition_for(group: str, version: str, kind: str) -> str | None:
    """Name of the definition of a kind (``("apps", "v1", "Deployment")`` -> ``io.k8s.api.apps.v1.Deployment``)."""
    return _gvk_index().get((group, version, kind))


def closure(names) -> set[str]:
    """``names`` plus every definition they reference, transitively."""
    defs = definitions()
    seen: set[str] = set()
    todo = [n for n in names if n in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack = [defs[name]]
        while stack:
            s = stack.pop()
            if isinstance(s, dict):
                ref = s.get("$ref")
                if isinstance(ref, str) and ref.startswith(REF_PREFIX) and ref[len(REF_PREFIX):] not in seen:
                    todo.append(ref[len(REF_PREFIX):])
                stack.extend(v for k, v in s.items() if k != "$ref")
            elif isinstance(s, list):
                stack.extend(s)
    return seen


def gv_path(group: str, version: str) -> str:
    """Key of a group/version in the root document: ``api/v1``, ``apis/apps/v1``."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def etag_of(data: bytes) -> str:
    """kube-openapi's ETag: upper-case hex SHA-512 of the served bytes."""
    return hashlib.sha512(data).hexdigest().upper()


# --------------------------------------------------------------------- operations

def _param(name: str, where: str, description: str, typ: str = "string", **extra) -> dict:
    p = {"name": name, "in": where, "description": description, "schema": {"type": typ, "uniqueItems": True}}
    p.update(extra)
    return p


P_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
P_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be persisted. "
                   "Valid values are: - All: all dry run stages will be processed")
P_FIELD_MANAGER = _param("fieldManager", "query", "fieldManager is a name associated with the actor or entity "
                         "that is making these changes.")
P_FIELD_VALIDATION = _param(
    "fieldValidation", "query",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are "
    "silently dropped from the object, and will ignore all but the last duplicate field that the decoder "
    "encounters. - Warn: This will send a warning via the standard warning response header for each unknown "
    "field that is dropped from the object, and for each duplicate field that is encountered. The request will "
    "still succeed if there are no other errors, and will only persist the last of any duplicate fields. This "
    "is the default. - Strict: This will fail the request with a BadRequest error if any unknown fields would "
    "be dropped from the object, or if any duplicate fields are present. The error returned from the server "
    "will contain all unknown and duplicate fields encountered.")
P_FORCE = _param("force", "query", "Force is going to \"force\" Apply requests.", "boolean")
P_GRACE = _param("gracePeriodSeconds", "query", "The duration in seconds before the object should be deleted.",
                 "integer")
P_PROPAGATION = _param("propagationPolicy", "query", "Whether and how garbage collection will be performed.")
LIST_PARAMS = [_param(n, "query", d, t) for n, d, t in (
    ("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
    ("continue", "The continue option should be set when retrieving more results from the server.", "string"),
    ("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
    ("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
    ("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served "
     "from.", "string"),
    ("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and "
     "remove notifications.", "boolean"),
)]
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")


def _body(name: str, content_types=("*/*",)) -> dict:
    return {"content": {ct: {"schema": {"$ref": REF_PREFIX + name}} for ct in content_types}, "required": True}


def _responses(name: str, *codes: str) -> dict:
    content = {ct: {"schema": {"$ref": REF_PREFIX + name}}
               for ct in ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")}
    return {code: {"description": {"200": "OK", "201": "Created", "202": "Accepted"}[code], "content": content}
            for code in codes} | {"401": {"description": "Unauthorized"}}


def _op_id(verb: str, info: ResourceInfo, kind: str, *, namespaced_path: bool, suffix: str = "") -> str:
    group = "".join(p.capitalize() for p in (info.group or "core").split(".")[:1])
    scope = "Namespaced" if namespaced_path else ""
    return f"{verb}{group}{info.version.capitalize()}{scope}{kind}{suffix}"


def resource_paths(info: ResourceInfo) -> dict[str, dict]:
    """The ``paths`` entries of one served resource (collection, item, and its subresources), as upstream's
    route builder emits them; each operation carries ``x-kubernetes-group-version-kind``."""
    name = definition_for(info.group, info.version, info.kind)
    if name is None:
        return {}
    list_name = definition_for(info.group, info.version, info.list_kind) or name
    gvk = {"group": info.group, "kind": info.kind, "version": info.version}
    base = "/api/v1" if not info.group else f"/apis/{info.group}/{info.version}"
    ns = "/namespaces/{namespace}" if info.namespaced else ""
    tags = [f"{(info.group or 'core').split('.')[0]}_{info.version}"]
    scope_params = ([_param("namespace", "path", "object name and auth scope, such as for teams and projects",
                            required=True)] if info.namespaced else []) + [P_PRETTY]
    name_param = _param("name", "path", f"name of the {info.kind}", required=True)

    def op(action: str, verb: str, description: str, *, kind=info.kind, suffix="", body=None, responses,
           params=(), op_gvk=gvk) -> dict:
        o = {"tags": tags, "description": description,
             "operationId": _op_id(verb, info, kind, namespaced_path=info.namespaced, suffix=suffix),
             "parameters": list(params)}
        if body is not None:
            o["requestBody"] = body
        o["responses"] = responses
        o["x-kubernetes-action"] = action
        o["x-kubernetes-group-version-kind"] = op_gvk
        return o

    write = [P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION]
    patch_params = write + [P_FORCE]
    paths = {
        f"{base}{ns}/{info.resource}": {
            "get": op("list", "list", f"list or watch objects of kind {info.kind}", responses=_responses(list_name,
                      "200"), params=LIST_PARAMS),
            "post": op("post", "create", f"create a {info.kind}", body=_body(name),
                       responses=_responses(name, "200", "201", "202"), params=write),
            "delete": op("deletecollection", "deleteCollection", f"delete collection of {info.kind}",
                         body=_body(META + "DeleteOptions"), responses=_responses(META + "Status", "200"),
                         params=[P_DRY_RUN, P_GRACE, P_PROPAGATION] + LIST_PARAMS),
            "parameters": scope_params,
        },
        f"{base}{ns}/{info.resource}/{{name}}": {
            "get": op("get", "read", f"read the specified {info.kind}", responses=_responses(name, "200")),
            "put": op("put", "replace", f"replace the specified {info.kind}", body=_body(name),
                      responses=_responses(name, "200", "201"), params=write),
            "patch": op("patch", "patch", f"partially update the specified {info.kind}",
                        body=_body(META + "Patch", PATCH_TYPES), responses=_responses(name, "200", "201"),
                        params=patch_params),
            "delete": op("delete", "delete", f"delete a {info.kind}", body=_body(META + "DeleteOptions"),
                         responses=_responses(name if info.kind == "Pod" else META + "Status", "200", "202"),
                         params=[P_DRY_RUN, P_GRACE, P_PROPAGATION]),
            "parameters": [name_param] + scope_params,
        },
    }
    for sub, (kind, sgroup, sversion, verbs) in sorted(info.subresources.items()):
        sname = definition_for(sgroup, sversion, kind)
        if sname is None:
            continue
        sgvk = {"group": sgroup, "kind": kind, "version": sversion}
        suffix = sub.capitalize()
        entry: dict = {"parameters": [name_param] + scope_params}
        if "get" in verbs:
            entry["get"] = op("get", "read", f"read {sub} of the specified {info.kind}", kind=info.kind,
                              suffix=suffix, responses=_responses(sname, "200"), op_gvk=sgvk)
        if "update" in verbs:
            entry["put"] = op("put", "replace", f"replace {sub} of the specified {info.kind}", kind=info.kind,
                              suffix=suffix, body=_body(sname), responses=_responses(sname, "200", "201"),
                              params=write, op_gvk=sgvk)
        if "patch" in verbs:
            entry["patch"] = op("patch", "patch", f"partially update {sub} of the specified {info.kind}",
                                kind=info.kind, suffix=suffix, body=_body(META + "Patch", PATCH_TYPES),
                                responses=_responses(sname, "200", "201"), params=patch_params, op_gvk=sgvk)
        if "create" in verbs:
            entry["post"] = op("post", "create", f"create {sub} of a {info.kind}", kind=info.kind, suffix=suffix,
                               body=_body(sname), responses=_responses(sname, "200", "201", "202"), params=write,
                               op_gvk=sgvk)
        if len(entry) > 1:
            paths[f"{base}{ns}/{info.resource}/{{name}}/{sub}"] = entry
    return paths


def _referenced(obj, out: set[str]) -> None:
    if isinstance(obj, dict):
        ref = obj.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            out.add(ref[len(REF_PREFIX):])
        for v in obj.values():
            _referenced(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _referenced(v, out)


def group_version_document(group: str, version: str, infos: list[ResourceInfo]) -> dict:
    """The OpenAPI 3.0 document of one group/version: paths of its resources, and components.schemas with
    every definition those paths reference (transitively)."""
    paths: dict[str, dict] = {}
    for info in sorted(infos, key=lambda i: i.resource):
        if (info.group, info.version) == (group, version):
            paths.update(resource_paths(info))
    wanted: set[str] = set(COMMON_DEFINITIONS)
    _referenced(paths, wanted)
    defs = definitions()
    schemas = {n: defs[n] for n in sorted(closure(wanted))}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SCHEMA_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                                "name": "authorization", "in": "header"}},
        },
    }


class OpenAPIV3:
    """The /openapi/v3 documents of a set of served resources, built on first use and cached as bytes.

    ``root()`` -> (body bytes); ``document(path)`` -> (body bytes, etag) or None for an unknown group/version.
    The served list is read from the ResourceInfos, so a new registry appears without changes here.
    """

    def __init__(self, infos: list[ResourceInfo]):
        self.infos = list(infos)
        self._docs: dict[str, tuple[bytes, str]] = {}
        self._root: bytes | None = None

    def group_versions(self) -> list[tuple[str, str]]:
        """Served (group, version) pairs that have at least one resource with an upstream schema."""
        out: list[tuple[str, str]] = []
        for i in self.infos:
            gv = (i.group, i.version)
            if gv not in out and definition_for(i.group, i.version, i.kind) is not None:
                out.append(gv)
        return out

    def document(self, path: str) -> tuple[bytes, str] | None:
        """Serialized document of ``api/v1`` / ``apis/<group>/<version>`` and its ETag, None if not served."""
        if path in self._docs:
            return self._docs[path]
        for group, version in self.group_versions():
            if gv_path(group, version) == path:
                data = json.dumps(group_version_document(group, version, self.infos),
                                  separators=(",", ":")).encode()
                self._docs[path] = (data, etag_of(data))
                return self._docs[path]
        return None

    def root(self) -> bytes:
        """``/openapi/v3``: ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}``."""
        if self._root is None:
            paths = {}
            for group, version in sorted(self.group_versions()):
                p = gv_path(group, version)
                _, etag = self.document(p)
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={etag}"}
            self._root = json.dumps({"paths": paths}, separators=(",", ":")).encode()
        return self._root
