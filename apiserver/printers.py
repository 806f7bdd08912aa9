"""Server-side printing: meta.k8s.io/v1 Table answers for ``kubectl get``.

Mirrors kube-apiserver's ``pkg/printers/internalversion`` column sets for the
served kinds (pods: Name Ready Status Restarts Age IP Node; services:
Name Type Cluster-IP External-IP Port(s) Age Selector; ...). kubectl asks
with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``; rows carry
PartialObjectMetadata (or the whole object with ``includeObject=Object``).
"""
from __future__ import annotations

import datetime
from typing import Callable

Column = tuple[str, str, int, Callable[[dict], object]]  # name, type, priority, cell


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header asks for a meta.k8s.io Table."""
    return bool(accept) and "as=Table" in accept


def age(obj: dict) -> str:
    """kubectl's short duration since creationTimestamp (``5s``, ``3m``, ``2d``)."""
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<unknown>"
    s = max(0, int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _pod_status(p: dict) -> str:
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    st = p.get("status") or {}
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason") or (state.get("terminated") or {}).get("reason")
        if reason and st.get("phase") != "Succeeded":
            return reason
    return st.get("reason") or st.get("phase") or "Unknown"


def _pod_ready(p: dict) -> str:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = sum(1 for cs in st.get("containerStatuses") or [] if cs.get("ready"))
    return f"{ready}/{total}"


def _ports(svc: dict) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        s = str(p.get("port"))
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _selector(d: dict) -> str:
    sel = (d.get("spec") or {}).get("selector") or {}
    sel = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _node_status(n: dict) -> str:
    conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
    s = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready"), "Unknown")
    if (n.get("spec") or {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def _endpoints(ep: dict) -> str:
    out = []
    for ss in ep.get("subsets") or []:
        for a in ss.get("addresses") or []:
            for p in ss.get("ports") or [{}]:
                out.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip", ""))
    if not out:
        return "<none>"
    return ",".join(out[:3]) + (f" + {len(out) - 3} more..." if len(out) > 3 else "")


def _g(path: str, default="<none>") -> Callable[[dict], object]:
    def get(obj: dict):
        cur = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        return default if cur in (None, "") else cur
    return get


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, age)

COLUMNS: dict[str, list[Column]] = {
    "pods": [NAME, ("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
             ("Restarts", "string", 0, lambda p: str(sum(cs.get("restartCount", 0) for cs in
                                                         (p.get("status") or {}).get("containerStatuses") or []))),
             AGE, ("IP", "string", 1, _g("status.podIP")), ("Node", "string", 1, _g("spec.nodeName"))],
    "nodes": [NAME, ("Status", "string", 0, _node_status),
              ("Roles", "string", 0, lambda n: ",".join(sorted(
                  k.split("/", 1)[1] for k in (n["metadata"].get("labels") or {})
                  if k.startswith("node-role.kubernetes.io/"))) or "<none>"),
              AGE, ("Version", "string", 0, _g("status.nodeInfo.kubeletVersion", "")),
              ("Internal-IP", "string", 1, lambda n: next((a.get("address") for a in (n.get("status") or {}).get(
                  "addresses") or [] if a.get("type") == "InternalIP"), "<none>"))],
    "services": [NAME, ("Type", "string", 0, _g("spec.type")), ("Cluster-IP", "string", 0, _g("spec.clusterIP")),
                 ("External-IP", "string", 0, lambda s: ",".join((s.get("spec") or {}).get("externalIPs") or [])
                  or "<none>"), ("Port(s)", "string", 0, _ports), AGE,
                 ("Selector", "string", 1, _selector)],
    "deployments": [NAME, ("Ready", "string", 0, lambda d: f"{(d.get('status') or {}).get('readyReplicas', 0)}/"
                                                              f"{(d.get('spec') or {}).get('replicas', 0)}"),
                    ("Up-to-date", "integer", 0, lambda d: (d.get("status") or {}).get("updatedReplicas", 0)),
                    ("Available", "integer", 0, lambda d: (d.get("status") or {}).get("availableReplicas", 0)),
                    AGE, ("Selector", "string", 1, _selector)],
    "replicasets": [NAME, ("Desired", "integer", 0, lambda r: (r.get("spec") or {}).get("replicas", 0)),
                    ("Current", "integer", 0, lambda r: (r.get("status") or {}).get("replicas", 0)),
                    ("Ready", "integer", 0, lambda r: (r.get("status") or {}).get("readyReplicas", 0)), AGE],
    "namespaces": [NAME, ("Status", "string", 0, _g("status.phase")), AGE],
    "endpoints": [NAME, ("Endpoints", "string", 0, _endpoints), AGE],
    "events": [("Last Seen", "string", 0, lambda e: e.get("lastTimestamp") or e.get("eventTime") or "<unknown>"),
               ("Type", "string", 0, _g("type", "")), ("Reason", "string", 0, _g("reason", "")),
               ("Object", "string", 0, lambda e: f"{((e.get('involvedObject') or {}).get('kind') or '').lower()}/"
                                                  f"{(e.get('involvedObject') or {}).get('name', '')}"),
               ("Message", "string", 0, _g("message", ""))],
    "configmaps": [NAME, ("Data", "integer", 0, lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})),
                   AGE],
    "secrets": [NAME, ("Type", "string", 0, _g("type", "")), ("Data", "integer", 0, lambda s: len(s.get("data") or {})),
                AGE],
    "leases": [NAME, ("Holder", "string", 0, _g("spec.holderIdentity", "")), AGE],
}


def _row(resource: str, obj: dict, include_object: str) -> dict:
    cells = [col[3](obj) for col in COLUMNS.get(resource, [NAME, AGE])]
    if include_object == "Object":
        embedded = obj
    elif include_object == "None":
        embedded = None
    else:
        embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    row = {"cells": cells}
    if embedded is not None:
        row["object"] = embedded
    return row


def table(resource: str, objs: list[dict], *, resource_version: str = "", include_object: str = "Metadata",
          headers: bool = True, list_meta: dict | None = None) -> dict:
    """A meta.k8s.io/v1 Table of ``objs`` (``headers=False`` omits columnDefinitions, as in later watch events)."""
    out: dict = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                 "metadata": dict(list_meta or {"resourceVersion": resource_version})}
    if headers:
        out["columnDefinitions"] = [
            {"name": name, "type": typ, "format": "name" if name == "Name" else "", "description": "",
             "priority": prio} for name, typ, prio, _ in COLUMNS.get(resource, [NAME, AGE])]
    out["rows"] = [_row(resource, o, include_object) for o in objs]
    return out
