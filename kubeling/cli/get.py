"""``kubeling get``: list or fetch objects and print them, optionally watching.

Mirrors k8s.io/kubectl/pkg/cmd/get: arguments are ``TYPE [NAME...]``,
``TYPE1,TYPE2``, ``TYPE/NAME ...`` or ``-f FILE``; tables per kind (names
prefixed with the kind when several kinds are shown), ``-o wide|yaml|json|name``,
``-A`` adds a NAMESPACE column, ``-w`` lists then watches from the list's
resourceVersion and prints a row per event. "No resources found in X
namespace." goes to stderr, as kubectl prints it.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from kubeling.api import resources as res
from kubeling.cli import formats, manifest, printers
from kubeling.cli.errors import CLIError, server_error_line
from kubeling.cli.factory import Factory, kind_group, resource_for, resource_for_object
from kubeling.cli.tabwriter import TableWriter
from kubeling.client import ApiError, Client

MACHINE_OUTPUTS = ("yaml", "json", "name", "jsonpath")
# kubectl's "all" category, restricted to the kinds kubeling serves.
ALL = ("pods", "services", "deployments", "replicasets")


class Request(NamedTuple):
    """One resource type to fetch: by name (``names``) or as a list (``names`` empty)."""

    resource: res.Resource
    names: tuple[str, ...]
    namespace: str | None = None


def parse_args(args: list[str]) -> list[Request]:
    """Command-line ``TYPE [NAME...]`` / ``TYPE,TYPE`` / ``TYPE/NAME...`` -> requests.

    Raises CLIError for a missing type, an unknown type or mixed forms,
    with kubectl's messages.
    """
    if not args:
        raise CLIError('You must specify the type of resource to get. Use "kubeling api-resources" '
                       "for a complete list of supported resources.")
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise CLIError("there is no need to specify a resource type as a separate argument when "
                           "passing arguments in resource/name form (e.g. 'kubeling get resource/<resource_name>' "
                           "instead of 'kubeling get resource resource/<resource_name>'")
        requests: list[Request] = []
        for a in args:
            kind, _, name = a.partition("/")
            if not name:
                raise CLIError("arguments in resource/name form must have a single resource and name")
            r = resource_for(kind)
            if requests and requests[-1].resource == r:
                requests[-1] = Request(r, requests[-1].names + (name,))
            else:
                requests.append(Request(r, (name,)))
        return requests
    kinds = [k for k in args[0].split(",") if k]
    expanded: list[str] = []
    for k in kinds:
        expanded.extend(ALL if k == "all" else [k])
    names = tuple(args[1:])
    if names and len(expanded) > 1:
        raise CLIError("you may only specify a single resource type when passing names")
    seen: list[res.Resource] = []
    for k in expanded:
        r = resource_for(k)
        if r not in seen:
            seen.append(r)
    return [Request(r, names) for r in seen]


def requests_from_files(f: Factory, filenames: list[str], recursive: bool) -> list[Request]:
    """Requests for the objects named in manifests (``get -f`` / ``delete -f``)."""
    out: list[Request] = []
    for m in manifest.load(filenames, verb="get", recursive=recursive):
        r = resource_for_object(m.obj, m.source)
        meta = m.obj.get("metadata") or {}
        ns = (meta.get("namespace") or f.effective_namespace) if r.namespaced else None
        out.append(Request(r, (meta.get("name", ""),), ns))
    return out


def namespace_for(f: Factory, req: Request, all_namespaces: bool) -> str | None:
    """The namespace to address for ``req``: None for cluster-scoped kinds and ``-A`` lists."""
    if not req.resource.namespaced:
        return None
    if req.namespace:
        return req.namespace
    return None if all_namespaces else f.effective_namespace


async def fetch(c: Client, f: Factory, req: Request, *, all_namespaces: bool, label_selector: str | None,
                field_selector: str | None) -> tuple[list[dict], str, list[str]]:
    """(objects, list resourceVersion, error lines) for one request.

    Named objects that are missing become ``Error from server (NotFound)``
    lines; other failures raise.
    """
    ns = namespace_for(f, req, all_namespaces)
    if not req.names:
        listed = await c.list(req.resource, namespace=ns, label_selector=label_selector,
                              field_selector=field_selector)
        rv = (listed.get("metadata") or {}).get("resourceVersion", "")
        return list(listed.get("items") or []), rv, []
    objs, errors = [], []
    for name in req.names:
        try:
            objs.append(await c.get(req.resource, name, namespace=ns))
        except ApiError as e:
            if e.code != 404:
                raise
            errors.append(server_error_line(e))
    # A watch on a named object starts after the version just printed.
    rv = ((objs[-1].get("metadata") or {}).get("resourceVersion") or "") if objs else ""
    return objs, rv, errors


def no_resources_message(f: Factory, all_namespaces: bool, namespaced: bool) -> str:
    """kubectl's "No resources found in default namespace." (or just "No resources found")."""
    if all_namespaces or not namespaced:
        return "No resources found"
    return f"No resources found in {f.effective_namespace} namespace."


class TablePrinter:
    """Prints kubectl-style tables for one kind, remembering column widths for watch rows."""

    def __init__(self, kind: str, *, wide: bool, with_namespace: bool, no_headers: bool,
                 name_prefix: str = "", show_labels: bool = False):
        self.kind, self.wide, self.with_namespace = kind, wide, with_namespace
        self.show_labels = show_labels
        self.no_headers, self.name_prefix = no_headers, name_prefix
        self.writer = TableWriter()
        self.header_done = False

    def render(self, objs: list[dict], *, now: float | None = None) -> str:
        """Rows for ``objs`` (preceded by the header the first time)."""
        rows = []
        if not self.header_done and not self.no_headers:
            rows.append(printers.header(self.kind, wide=self.wide, with_namespace=self.with_namespace)
                        + (["LABELS"] if self.show_labels else []))
        self.header_done = True
        now = time.time() if now is None else now
        for o in objs:
            cells = printers.row(self.kind, o, wide=self.wide, with_namespace=self.with_namespace,
                                 name_prefix=self.name_prefix, now=now)
            if self.show_labels:
                cells.append(printers.format_labels((o.get("metadata") or {}).get("labels")))
            rows.append(cells)
        return self.writer.render(rows) if rows else ""


async def run(args, f: Factory) -> int:
    """``get``: see the module docstring. Returns the exit code (1 if any named object was missing)."""
    output = args.output or ""
    template = None
    if output.startswith("jsonpath="):
        output, template = "jsonpath", output.split("=", 1)[1]
    elif output and output not in formats.OUTPUT_FORMATS:
        raise CLIError(f'unable to match a printer suitable for the output format "{output}", '
                       f"allowed formats are: {','.join(formats.OUTPUT_FORMATS)},jsonpath=...")
    if args.filename:
        requests = requests_from_files(f, args.filename, args.recursive)
    else:
        requests = parse_args(args.args)
    watching = args.watch or args.watch_only
    if watching and len(requests) > 1:
        raise CLIError("you may only specify a single resource type")
    all_ns = bool(args.all_namespaces)
    single = len(requests) == 1 and len(requests[0].names) == 1
    errors: list[str] = []
    results: list[tuple[Request, list[dict], str]] = []
    async with f.client() as c:
        for req in requests:
            objs, rv, errs = await fetch(c, f, req, all_namespaces=all_ns, label_selector=args.selector,
                                         field_selector=args.field_selector)
            results.append((req, objs, rv))
            errors.extend(errs)
        multi_kind = len({req.resource for req in requests}) > 1
        printers_by_kind: dict[res.Resource, TablePrinter] = {}
        chunks: list[str] = []
        machine: list[tuple[dict, res.Resource]] = []
        for req, objs, _ in results:
            r = req.resource
            if output in MACHINE_OUTPUTS:
                machine.extend((o, r) for o in objs)
                continue
            printer = printers_by_kind.get(r) or TablePrinter(
                r.kind, wide=output == "wide", with_namespace=all_ns and r.namespaced,
                no_headers=args.no_headers, name_prefix=f"{kind_group(r)}/" if multi_kind else "",
                show_labels=args.show_labels)
            printers_by_kind[r] = printer
            if objs and not args.watch_only:
                chunks.append(printer.render(objs))
        found = any(objs for _, objs, _ in results)
        if output in MACHINE_OUTPUTS:
            if machine and not args.watch_only:
                f.out.write(formats.render(machine, output, single=single and not watching, template=template))
            elif not watching and output != "name" and not single and not errors:
                f.out.write(formats.render([], output, single=False, template=template))
        else:
            f.out.write("\n".join(chunks))
        f.out.flush()
        for line in errors:
            f.warn(line)
        if not found and not errors and not (output in ("yaml", "json", "jsonpath") and not watching):
            if not args.watch_only:
                f.warn(no_resources_message(f, all_ns, any(r.resource.namespaced for r in requests)))
        if watching:
            req, _, rv = results[0]
            printer = printers_by_kind.get(req.resource)
            await watch(c, f, req, rv, printer, output, template=template, all_namespaces=all_ns,
                        label_selector=args.selector,
                        field_selector=args.field_selector)
    return 1 if errors else 0


async def watch(c: Client, f: Factory, req: Request, rv: str, printer: TablePrinter | None, output: str, *,
                template: str | None = None, all_namespaces: bool, label_selector: str | None, field_selector: str | None) -> None:
    """Print every change after ``rv`` until the server ends the watch (or Ctrl-C).

    A named get watches with ``fieldSelector=metadata.name=NAME``. Raises
    ApiError when the server reports an ERROR event (e.g. 410 Gone).
    """
    if req.names:
        if len(req.names) > 1:
            raise CLIError("watch is only supported on individual resources and resource collections, "
                           f"but {len(req.names)} resources were found")
        field_selector = f"metadata.name={req.names[0]}"
    ns = namespace_for(f, req, all_namespaces)
    first = True
    async for etype, obj in c.watch(req.resource, namespace=ns, resource_version=rv or None,
                                    label_selector=label_selector, field_selector=field_selector):
        if etype == "BOOKMARK":
            continue
        if etype == "ERROR":
            raise ApiError(int(obj.get("code") or 500), obj)
        if output in MACHINE_OUTPUTS:
            text = formats.render([(obj, req.resource)], output, single=True, template=template)
            if output == "yaml" and not first:
                text = "---\n" + text
            f.out.write(text)
        else:
            f.out.write(printer.render([obj]))
        first = False
        f.out.flush()
