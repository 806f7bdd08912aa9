"""Discovery and version documents: /version, /api, /api/v1, /apis, /apis/<group>[/<version>].

Mirrors k8s.io/apiserver's ``pkg/endpoints/discovery`` (APIVersions,
APIGroupList, APIGroup, APIResourceList) as kubectl 1.32 reads them when
aggregated discovery is not offered: resources with verbs, shortNames,
singularName, namespaced, kind, categories, and ``<resource>/<sub>``
entries for subresources (``deployments/scale`` as autoscaling/v1 Scale).
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
