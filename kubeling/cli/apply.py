"""``kubeling apply -f``: declarative create-or-update, as kubectl's client-side apply.

Mirrors k8s.io/kubectl/pkg/cmd/apply: for each object, GET it; absent ->
POST it carrying the ``kubectl.kubernetes.io/last-applied-configuration``
annotation; present -> PATCH with the three-way patch computed from the
last applied configuration, the manifest and the live object (see
kubeling.cli.mergepatch), or nothing when the patch is empty ("unchanged").
The annotation is written exactly as kubectl writes it (compact JSON with
sorted keys and a trailing newline), so kubectl and kubeling can take turns
applying the same objects.
"""
from __future__ import annotations

import copy
import json

from kubeling.api import resources as res
from kubeling.cli import manifest
from kubeling.cli.errors import CLIError, server_error_line
from kubeling.cli.factory import Factory, kind_group, resource_for_object
from kubeling.cli.mergepatch import three_way_merge_patch
from kubeling.cli.printers import LAST_APPLIED
from kubeling.client import ApiError, Client

MERGE_PATCH = "application/merge-patch+json"


def go_json(obj) -> str:
    """JSON as Go's encoding/json writes a map: compact, keys sorted, ``<>&`` escaped."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def last_applied_configuration(obj: dict) -> str:
    """The annotation value for ``obj``: the object without that annotation
    (``annotations: {}`` when it has no others), encoded as kubectl's
    GetModifiedConfiguration does, with a trailing newline."""
    clean = copy.deepcopy(obj)
    meta = clean.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    meta["annotations"] = annotations
    return go_json(clean) + "\n"


def with_last_applied(obj: dict) -> dict:
    """A copy of ``obj`` carrying its own last-applied annotation (the "modified" configuration)."""
    value = last_applied_configuration(obj)
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: value}
    return out


def decode_last_applied(live: dict) -> dict | None:
    """The live object's last applied configuration, or None when absent or unreadable."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def resolve_namespace(obj: dict, r: res.Resource, f: Factory) -> str | None:
    """The namespace to use for ``obj`` (set into its metadata, as kubectl does).

    Raises CLIError when ``-n`` contradicts the manifest's namespace.
    """
    if not r.namespaced:
        return None
    meta = obj.setdefault("metadata", {})
    given = meta.get("namespace")
    if given and f.namespace and given != f.namespace:
        raise CLIError(f'the namespace from the provided object "{given}" does not match the namespace '
                       f'"{f.namespace}". You must pass \'--namespace={given}\' to perform this operation.')
    ns = given or f.effective_namespace
    meta["namespace"] = ns
    return ns


async def apply_one(c: Client, obj: dict, r: res.Resource, namespace: str | None, source: str,
                    *, warn=None, dry_run: bool = False) -> str:
    """Create or patch one object; returns ``created`` / ``configured`` / ``unchanged``.

    Raises ApiError from the server, with kubectl's "error when creating"
    context added to its message.
    """
    name = (obj.get("metadata") or {}).get("name")
    try:
        live = await c.get(r, name, namespace=namespace)
    except ApiError as e:
        if e.code != 404:
            raise
        if not dry_run:
            try:
                await c.create(r, with_last_applied(obj), namespace=namespace)
            except ApiError as ce:
                raise _annotated(ce, f'error when creating "{source}": ') from None
        return "created"
    original = decode_last_applied(live)
    if original is None and warn:
        warn(f"Warning: resource {r.plural}/{name} is missing the {LAST_APPLIED} annotation which is "
             "required by kubectl apply. kubectl apply should only be used on resources created "
             "declaratively by either kubectl create --save-config or kubectl apply. The missing "
             "annotation will be patched automatically.")
    patch = three_way_merge_patch(original, with_last_applied(obj), live)
    if not patch:
        return "unchanged"
    if not dry_run:
        try:
            await c.patch(r, name, patch, namespace=namespace, patch_type=MERGE_PATCH)
        except ApiError as pe:
            raise _annotated(pe, f'error when patching "{source}": ') from None
    return "configured"


def _annotated(err: ApiError, prefix: str) -> ApiError:
    status = dict(err.status) if err.status else {"message": err.message}
    status["message"] = prefix + (status.get("message") or "")
    return ApiError(err.code, status)


async def run(args, f: Factory) -> int:
    """``apply -f FILE|DIR|- [-R] [-n NS] [--dry-run=client]``; prints one line per object."""
    if not args.filename:
        raise CLIError("must specify one of -f and -k")
    dry_run = args.dry_run in ("client", "true")
    items = []
    for m in manifest.load(args.filename, recursive=args.recursive):
        r = resource_for_object(m.obj, m.source)
        if not (m.obj.get("metadata") or {}).get("name"):
            raise CLIError(f'error when retrieving current configuration of {r.kind} from "{m.source}": '
                           "resource name may not be empty")
        items.append((m, r, resolve_namespace(m.obj, r, f)))
    failures = []
    async with f.client() as c:
        for m, r, ns in items:
            try:
                result = await apply_one(c, m.obj, r, ns, m.source, warn=f.warn, dry_run=dry_run)
            except ApiError as e:
                failures.append(server_error_line(e))
                continue
            suffix = " (dry run)" if dry_run else ""
            if args.output == "name":
                f.print(f"{kind_group(r)}/{m.obj['metadata']['name']}")
            else:
                f.print(f"{kind_group(r)}/{m.obj['metadata']['name']} {result}{suffix}")
    for line in failures:
        f.warn(line)
    return 1 if failures else 0
