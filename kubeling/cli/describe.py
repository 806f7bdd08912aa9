"""``kubeling describe``: a readable page per object, with its events.

Mirrors k8s.io/kubectl/pkg/cmd/describe: ``describe TYPE NAME...``,
``describe TYPE/NAME``, ``describe TYPE`` (every object, or those matching
``-l``), ``-f FILE``; a NAME that matches no object exactly describes every
object whose name starts with it (``describe pod web`` shows all web-...
pods), as kubectl does. Pages are separated by two blank lines.
"""
from __future__ import annotations

import time

from kubeling.cli import get
from kubeling.cli.describers import describer_for
from kubeling.cli.errors import CLIError, server_error_line
from kubeling.cli.factory import Factory
from kubeling.cli.formats import with_type
from kubeling.client import ApiError, Client


async def _objects(c: Client, f: Factory, req: get.Request, args) -> tuple[list[dict], list[str]]:
    ns = get.namespace_for(f, req, bool(args.all_namespaces))
    if not req.names:
        listed = await c.list(req.resource, namespace=ns, label_selector=args.selector)
        return list(listed.get("items") or []), []
    objs, errors = [], []
    for name in req.names:
        try:
            objs.append(await c.get(req.resource, name, namespace=req.namespace or ns))
            continue
        except ApiError as e:
            if e.code != 404:
                raise
            not_found = e
        listed = await c.list(req.resource, namespace=req.namespace or ns, label_selector=args.selector)
        matches = [o for o in listed.get("items") or []
                   if (o.get("metadata") or {}).get("name", "").startswith(name)]
        if matches:
            objs.extend(matches)
        else:
            errors.append(server_error_line(not_found))
    return objs, errors


async def run(args, f: Factory) -> int:
    """``describe``: print each object's page; exit 1 if a named object was not found."""
    if args.filename:
        requests = get.requests_from_files(f, args.filename, args.recursive)
    else:
        if not args.args:
            raise CLIError('You must specify the type of resource to describe. Use "kubeling api-resources" '
                           "for a complete list of supported resources.")
        requests = get.parse_args(args.args)
    pages: list[str] = []
    errors: list[str] = []
    async with f.client() as c:
        for req in requests:
            objs, errs = await _objects(c, f, req, args)
            errors.extend(errs)
            for obj in objs:
                obj = with_type(obj, req.resource)
                pages.append(await describer_for(req.resource.kind)(c, obj, time.time()))
    if pages:
        f.out.write("\n\n".join(pages))
        f.out.flush()
    elif not errors:
        f.warn(get.no_resources_message(f, bool(args.all_namespaces),
                                        any(r.resource.namespaced for r in requests)))
    for line in errors:
        f.warn(line)
    return 1 if errors else 0
