"""Discovery and version documents: /version, /api, /api/v1, /apis, /apis/<group>[/<version>].

Mirrors k8s.io/apiserver's ``pkg/endpoints/discovery`` (APIVersions,
APIGroupList, APIGroup, APIResourceList): resources with verbs, shortNames,
singularName, namespaced, kind, categories, and ``<resource>/<sub>``
entries for subresources (``deployments/scale`` as autoscaling/v1 Scale).
Also its ``aggregated`` package: a client that sends
``Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``
to /api or /apis gets every group, version, resource and subresource in one
apidiscovery.k8s.io/v2 (or v2beta1) APIGroupDiscoveryList, built from the
same ResourceInfo list as the plain documents, as kubectl 1.32 prefers.
"""
from __future__ import annotations

import platform
import sys

from apiserver.registry.rest import ResourceInfo

VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-kubeling", "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}", "compiler": "cpython",
    "platform": f"linux/{'amd64' if platform.machine() in ('x86_64', 'AMD64') else platform.machine()}",
}


AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def aggregated_content_type(version: str) -> str:
    """The Content-Type of an aggregated discovery answer (``version`` v2 or v2beta1)."""
    return f"application/json;g={AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"


def negotiate_aggregated(accept: str | None) -> str | None:
    """Which aggregated discovery version an ``Accept`` header asks for: "v2", "v2beta1" or None.

    Media ranges are taken by descending ``q`` then in order, as the
    apiserver's content negotiation; the first one we can serve wins, so a
    plain ``application/json`` (or ``*/*``) listed first gives None (the
    unaggregated document). Protobuf ranges are skipped (not served).
    """
    if not accept:
        return None
    ranges = []
    for n, item in enumerate(accept.split(",")):
        fields = [f.strip() for f in item.split(";")]
        media, params = fields[0].lower(), {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip().lower()] = v.strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append((-q, n, media, params))
    for _, _, media, params in sorted(ranges):
        if media not in ("application/json", "application/*", "*/*"):
            continue
        if not params:
            return None
        if params.get("g") == AGGREGATED_GROUP and params.get("as") == "APIGroupDiscoveryList" \
                and params.get("v") in AGGREGATED_VERSIONS:
            return params["v"]
    return None


class Discovery:
    """Builds the discovery documents from the served resources' ResourceInfo."""

    def __init__(self, infos: list[ResourceInfo], *, server_address: str):
        self.infos = infos
        self.server_address = server_address

    def group_versions(self) -> dict[str, list[str]]:
        """group name -> served versions (core group is "")."""
        out: dict[str, list[str]] = {}
        for i in self.infos:
            vs = out.setdefault(i.group, [])
            if i.version not in vs:
                vs.append(i.version)
        return out

    def api_versions(self) -> dict:
        """``/api``: APIVersions."""
        return {"kind": "APIVersions", "versions": self.group_versions().get("", ["v1"]),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}]}

    def api_group(self, group: str) -> dict | None:
        """``/apis/<group>``: APIGroup, None if not served."""
        versions = self.group_versions().get(group)
        if not group or not versions:
            return None
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}

    def api_group_list(self) -> dict:
        """``/apis``: APIGroupList of every non-core group."""
        groups = [self.api_group(g) for g in self.group_versions() if g]
        for g in groups:
            g.pop("kind")
            g.pop("apiVersion")
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict | None:
        """``/api/v1`` or ``/apis/<group>/<version>``: APIResourceList, None if not served."""
        infos = [i for i in self.infos if i.group == group and i.version == version]
        if not infos:
            return None
        resources = []
        for i in sorted(infos, key=lambda i: i.resource):
            r = {"name": i.resource, "singularName": i.singular, "namespaced": i.namespaced, "kind": i.kind,
                 "verbs": list(i.verbs)}
            if i.short_names:
                r["shortNames"] = list(i.short_names)
            if i.categories:
                r["categories"] = list(i.categories)
            resources.append(r)
            for sub, (kind, sgroup, sversion, verbs) in sorted(i.subresources.items()):
                s = {"name": f"{i.resource}/{sub}", "singularName": "", "namespaced": i.namespaced, "kind": kind,
                     "verbs": list(verbs)}
                if (sgroup, sversion) != (i.group, i.version):
                    s["group"], s["version"] = sgroup, sversion
                resources.append(s)
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # ------------------------------------------------------------------ aggregated discovery

    def _aggregated_resource(self, i: ResourceInfo) -> dict:
        r = {"resource": i.resource,
             "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
             "scope": "Namespaced" if i.namespaced else "Cluster",
             "singularResource": i.singular, "verbs": list(i.verbs)}
        if i.short_names:
            r["shortNames"] = list(i.short_names)
        if i.categories:
            r["categories"] = list(i.categories)
        subs = [{"subresource": sub, "responseKind": {"group": sgroup, "version": sversion, "kind": kind},
                 "verbs": list(verbs)}
                for sub, (kind, sgroup, sversion, verbs) in sorted(i.subresources.items())]
        if subs:
            r["subresources"] = subs
        return r

    def aggregated(self, root: str, version: str = "v2") -> dict:
        """APIGroupDiscoveryList of ``root`` "api" (the core group) or "apis" (every named group).

        ``version`` is the apidiscovery.k8s.io version asked for (v2 or v2beta1; same shape).
        """
        items = []
        for group, versions in self.group_versions().items():
            if bool(group) != (root == "apis"):
                continue
            vs = []
            for v in versions:
                infos = sorted((i for i in self.infos if i.group == group and i.version == v),
                               key=lambda i: i.resource)
                vs.append({"version": v, "resources": [self._aggregated_resource(i) for i in infos],
                           "freshness": "Current"})
            meta = {"name": group, "creationTimestamp": None} if group else {"creationTimestamp": None}
            items.append({"metadata": meta, "versions": vs})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": f"{AGGREGATED_GROUP}/{version}",
                "metadata": {}, "items": items}
