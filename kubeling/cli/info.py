"""``kubeling version``, ``cluster-info`` and ``api-resources``: what is this cluster.

Mirrors kubectl's version (client version, then the server's ``/version``
gitVersion), cluster-info (where the control plane answers) and
api-resources (the served resources with short names, API version,
scope and kind, here from kubeling's resource table).
"""
from __future__ import annotations

import importlib.metadata

from kubeling.api import resources as res
from kubeling.cli import formats
from kubeling.cli.errors import CLIError
from kubeling.cli.factory import Factory
from kubeling.cli.tabwriter import render_table


def client_version() -> str:
    """``v0.1.0``: the installed kubeling package's version."""
    try:
        return "v" + importlib.metadata.version("kubeling")
    except importlib.metadata.PackageNotFoundError:
        return "v0.0.0"


async def version(args, f: Factory) -> int:
    """``version [--client] [-o json|yaml]``."""
    doc: dict = {"clientVersion": {"gitVersion": client_version()}}
    if not args.client:
        async with f.client() as c:
            doc["serverVersion"] = await c.request("GET", "/version")
    if args.output in ("json", "yaml"):
        f.out.write(formats.to_json(doc) if args.output == "json" else formats.to_yaml(doc))
        return 0
    if args.output:
        raise CLIError("--output must be 'yaml' or 'json'")
    f.print(f"Client Version: {doc['clientVersion']['gitVersion']}")
    if "serverVersion" in doc:
        f.print(f"Server Version: {doc['serverVersion'].get('gitVersion', '<unknown>')}")
    return 0


async def cluster_info(args, f: Factory) -> int:
    """``cluster-info``: the control plane URL, once it answered ``/version``."""
    async with f.client() as c:
        await c.request("GET", "/version")
    f.print(f"Kubernetes control plane is running at {f.server}")
    return 0


async def api_resources(args, f: Factory) -> int:
    """``api-resources [--namespaced=true|false] [-o name]``: the resource table."""
    rows = []
    items = sorted(res.RESOURCES, key=lambda r: (r.group, r.plural))
    if args.namespaced is not None:
        want = args.namespaced.lower() in ("1", "t", "true")
        items = [r for r in items if r.namespaced == want]
    if args.output == "name":
        for r in items:
            f.print(f"{r.plural}.{r.group}" if r.group else r.plural)
        return 0
    for r in items:
        rows.append([r.plural, ",".join(r.short_names), r.api_version, str(r.namespaced).lower(), r.kind])
    header = None if args.no_headers else ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    f.out.write(render_table(header, rows))
    return 0
