"""The pages ``kubeling describe`` prints, one describer per kind.

Mirrors k8s.io/kubectl/pkg/describe (describe.go): the same sections in the
same order for pods, deployments, services and nodes, written through a
prefix writer into Go-tabwriter-aligned blocks, and the object's Events at
the end; other kinds get the generic describer (metadata, then the object's
fields with their names spelled out). Each describer is
``async (client, obj, now) -> str``.
"""
from __future__ import annotations

import base64
import datetime
import re
from typing import Awaitable, Callable

import yaml

from kubeling.api import resources as res
from kubeling.cli import printers
from kubeling.cli.printers import LAST_APPLIED, age, format_label_selector, parse_time
from kubeling.api.quantity import canonical_quantity, format_quantity, parse_or_zero
from kubeling.cli.tabwriter import DESCRIBE_MINWIDTH, DESCRIBE_PADDING, align
from kubeling.client import ApiError, Client

EVENTS = res.for_name("events")


class PrefixWriter:
    """Collects ``describe`` lines at indentation levels (two spaces each) and
    aligns their tab-separated cells as kubectl's prefix writer does; ``flush``
    ends an alignment block."""

    def __init__(self) -> None:
        self._done: list[str] = []
        self._pending: list[str] = []

    def write(self, level: int, text: str) -> None:
        """Append ``text`` (may hold several ``\\n``-ended lines) at ``level``."""
        self._pending.append("  " * level + text)

    def flush(self) -> None:
        """Align what was written since the last flush as one block."""
        if self._pending:
            self._done.append(align("".join(self._pending), minwidth=DESCRIBE_MINWIDTH,
                                    padding=DESCRIBE_PADDING))
            self._pending = []

    def text(self) -> str:
        """Everything written, aligned."""
        self.flush()
        return "".join(self._done)


def timestamp(value: str | None) -> str:
    """``Mon, 02 Jan 2006 15:04:05 -0700`` in local time (time.RFC1123Z), ``<unset>`` if empty."""
    t = parse_time(value)
    if t is None:
        return "<unset>"
    return datetime.datetime.fromtimestamp(t).astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


def write_map(w: PrefixWriter, title: str, values: dict | None, *, sep: str = "=", skip=(),
              level: int = 0) -> None:
    """``Labels:  a=b`` then one ``k=v`` per line (printLabelsMultiline), ``<none>`` when empty."""
    write_list(w, title, [f"{k}{sep}{v}" for k, v in sorted((values or {}).items()) if k not in skip],
               level=level)


def write_annotations(w: PrefixWriter, annotations: dict | None) -> None:
    """Annotations as kubectl shows them: ``key: value``, without last-applied-configuration."""
    write_map(w, "Annotations", annotations, sep=": ", skip=(LAST_APPLIED,))


def controlled_by(meta: dict) -> str | None:
    """``ReplicaSet/web-5d9c`` for the controller ownerReference, else None."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def _ports(container: dict) -> list[tuple[str, str]]:
    return [(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}",
             f"{p.get('hostPort') or 0}/{p.get('protocol') or 'TCP'}") for p in container.get("ports") or []]


def _state(w: PrefixWriter, title: str, state: dict | None) -> None:
    state = state or {}
    if "running" in state:
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{timestamp((state['running'] or {}).get('startedAt'))}\n")
    elif "waiting" in state:
        w.write(2, f"{title}:\tWaiting\n")
        w.write(3, f"Reason:\t{(state['waiting'] or {}).get('reason', '')}\n")
    elif "terminated" in state:
        t = state["terminated"] or {}
        w.write(2, f"{title}:\tTerminated\n")
        w.write(3, f"Reason:\t{t.get('reason', '')}\n")
        if t.get("message"):
            w.write(3, f"Message:\t{t['message']}\n")
        w.write(3, f"Exit Code:\t{t.get('exitCode', 0)}\n")
        if t.get("signal"):
            w.write(3, f"Signal:\t{t['signal']}\n")
        w.write(3, f"Started:\t{timestamp(t.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{timestamp(t.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")


def write_containers(w: PrefixWriter, title: str, containers: list, statuses: list | None, *,
                     template: bool = False) -> None:
    """The Containers section of a pod (``template``: of a pod template, no runtime state)."""
    level = 1 if template else 0
    w.write(level, f"{title}:\n")
    by_name = {s.get("name"): s for s in statuses or []}
    for c in containers:
        # kubectl indents template container names by one extra space (" web:").
        w.write(1, f"{' ' if template else ''}{c.get('name')}:\n")
        lvl = 2
        status = by_name.get(c.get("name"))
        if status is not None:
            w.write(lvl, f"Container ID:\t{status.get('containerID', '')}\n")
        w.write(lvl, f"Image:\t{c.get('image', '')}\n")
        if status is not None:
            w.write(lvl, f"Image ID:\t{status.get('imageID', '')}\n")
        ports = _ports(c)
        if len(ports) <= 1:
            w.write(lvl, f"Port:\t{ports[0][0] if ports else '<none>'}\n")
            w.write(lvl, f"Host Port:\t{ports[0][1] if ports else '<none>'}\n")
        else:
            w.write(lvl, f"Ports:\t{', '.join(p for p, _ in ports)}\n")
            w.write(lvl, f"Host Ports:\t{', '.join(h for _, h in ports)}\n")
        for key, label in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                w.write(lvl, f"{label}:\n")
                for part in c[key]:
                    for line in str(part).split("\n"):
                        w.write(lvl + 1, f"{line}\n")
        if status is not None:
            _state(w, "State", status.get("state"))
            if status.get("lastState"):
                _state(w, "Last State", status.get("lastState"))
            w.write(lvl, f"Ready:\t{'True' if status.get('ready') else 'False'}\n")
            w.write(lvl, f"Restart Count:\t{status.get('restartCount', 0)}\n")
        resources = c.get("resources") or {}
        for key, label in (("limits", "Limits"), ("requests", "Requests")):
            if resources.get(key):
                w.write(lvl, f"{label}:\n")
                for rname, qty in sorted(resources[key].items()):
                    w.write(lvl + 1, f"{rname}:\t{qty}\n")
        env = c.get("env") or []
        if not env:
            w.write(lvl, "Environment:\t<none>\n")
        else:
            w.write(lvl, "Environment:\n")
            for e in env:
                value = e.get("value")
                if value is None and e.get("valueFrom"):
                    value = "<set from " + ",".join(e["valueFrom"]) + ">"
                w.write(lvl + 1, f"{e.get('name')}:\t{value or ''}\n")
        mounts = c.get("volumeMounts") or []
        if not mounts:
            w.write(lvl, "Mounts:\t<none>\n")
        else:
            w.write(lvl, "Mounts:\n")
            for m in mounts:
                mode = "ro" if m.get("readOnly") else "rw"
                w.write(lvl + 1, f"{m.get('mountPath')} from {m.get('name')} ({mode})\n")


def qos_class(pod: dict) -> str:
    """status.qosClass, or computed as pkg/apis/core/helper/qos does."""
    given = (pod.get("status") or {}).get("qosClass")
    if given:
        return given
    containers = (pod.get("spec") or {}).get("containers") or []
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(l.get("cpu") and l.get("memory") and r.get("cpu", l["cpu"]) == l["cpu"]
                     and r.get("memory", l["memory"]) == l["memory"] for r, l in zip(requests, limits))
    return "Guaranteed" if guaranteed else "Burstable"


async def describe_pod(c: Client, pod: dict, now: float) -> str:
    """describePod: identity, status, containers, conditions, volumes, QoS, events."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace')}\n")
    if spec.get("priority") is not None:
        w.write(0, f"Priority:\t{spec['priority']}\n")
    if spec.get("priorityClassName"):
        w.write(0, f"Priority Class Name:\t{spec['priorityClassName']}\n")
    if spec.get("serviceAccountName"):
        w.write(0, f"Service Account:\t{spec['serviceAccountName']}\n")
    node = spec.get("nodeName")
    w.write(0, f"Node:\t{node + '/' + (status.get('hostIP') or '') if node else '<none>'}\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{timestamp(status['startTime'])}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    if meta.get("deletionTimestamp"):
        since = age(meta["deletionTimestamp"], now)
        w.write(0, f"Status:\tTerminating (lasts {since})\n")
        w.write(0, f"Termination Grace Period:\t{meta.get('deletionGracePeriodSeconds', 0)}s\n")
    else:
        w.write(0, f"Status:\t{status.get('phase', '')}\n")
    if status.get("reason"):
        w.write(0, f"Reason:\t{status['reason']}\n")
    if status.get("message"):
        w.write(0, f"Message:\t{status['message']}\n")
    w.write(0, f"IP:\t{status.get('podIP') or ''}\n")
    ips = [i.get("ip") for i in status.get("podIPs") or []] or ([status["podIP"]] if status.get("podIP") else [])
    if not ips:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in ips:
            w.write(1, f"IP:\t{ip}\n")
    owner = controlled_by(meta)
    if owner:
        w.write(0, f"Controlled By:\t{owner}\n")
    if spec.get("initContainers"):
        write_containers(w, "Init Containers", spec["initContainers"], status.get("initContainerStatuses"))
    write_containers(w, "Containers", spec.get("containers") or [], status.get("containerStatuses") or [])
    conditions = status.get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for cond in conditions:
            w.write(1, f"{cond.get('type')} \t{cond.get('status')} \n")
    volumes = spec.get("volumes") or []
    if not volumes:
        w.write(0, "Volumes:\t<none>\n")
    else:
        w.write(0, "Volumes:\n")
        for v in volumes:
            w.write(1, f"{v.get('name')}:\n")
            kinds = [k for k in v if k != "name"]
            w.write(2, f"Type:\t{kinds[0] if kinds else '<unknown>'}\n")
    w.write(0, f"QoS Class:\t{qos_class(pod)}\n")
    write_map(w, "Node-Selectors", spec.get("nodeSelector"))
    tolerations = [_toleration(t) for t in spec.get("tolerations") or []]
    write_list(w, "Tolerations", tolerations)
    await write_events(w, c, pod, now)
    return w.text()


def _toleration(t: dict) -> str:
    text = t.get("key", "")
    if t.get("value"):
        text += "=" + t["value"]
    if t.get("effect"):
        text += ":" + t["effect"]
    if t.get("operator") == "Exists" and not text:
        text = "op=Exists"
    elif t.get("operator") == "Exists":
        text += " op=Exists"
    if t.get("tolerationSeconds") is not None:
        text += f" for {t['tolerationSeconds']}s"
    return text


def write_list(w: PrefixWriter, title: str, items: list[str], *, level: int = 0) -> None:
    """``Title:  first`` then one item per line, ``<none>`` when empty."""
    if not items:
        w.write(level, f"{title}:\t<none>\n")
        return
    for i, item in enumerate(items):
        w.write(level, f"{title + ':' if i == 0 else ''}\t{item}\n")


async def object_events(c: Client, obj: dict) -> list[dict]:
    """Events whose involvedObject is ``obj``, oldest last-seen first.

    Asks the server with an ``involvedObject.*`` fieldSelector as kubectl
    does; if the server refuses that selector, filters all of the
    namespace's events here instead.
    """
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    fields = {"involvedObject.name": meta.get("name"), "involvedObject.namespace": meta.get("namespace"),
              "involvedObject.kind": obj.get("kind"), "involvedObject.uid": meta.get("uid")}
    selector = ",".join(f"{k}={v}" for k, v in fields.items() if v)
    try:
        items = (await c.list(EVENTS, namespace=ns, field_selector=selector)).get("items") or []
    except ApiError as e:
        if e.code not in (400, 422):
            raise
        items = (await c.list(EVENTS, namespace=ns)).get("items") or []

    def matches(ev: dict) -> bool:
        inv = ev.get("involvedObject") or {}
        return all(not v or inv.get(k.split(".", 1)[1]) == v for k, v in fields.items())

    events = [e for e in items if matches(e)]
    events.sort(key=lambda e: parse_time(e.get("lastTimestamp") or e.get("eventTime")
                                         or e.get("firstTimestamp")) or 0)
    return events


async def write_events(w: PrefixWriter, c: Client, obj: dict, now: float) -> None:
    """The Events section (DescribeEvents): Type Reason Age From Message, or ``<none>``."""
    try:
        events = await object_events(c, obj)
    except ApiError:
        events = []
    if not events:
        w.write(0, "Events:\t<none>\n")
        return
    w.flush()
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in events:
        first = age(e.get("eventTime"), now) if e.get("eventTime") else age(e.get("firstTimestamp"), now)
        series = e.get("series")
        if series:
            interval = f"{age(series.get('lastObservedTime'), now)} (x{series.get('count')} over {first})"
        elif int(e.get("count") or 0) > 1:
            interval = f"{age(e.get('lastTimestamp'), now)} (x{e['count']} over {first})"
        else:
            interval = first
        source = (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
        w.write(1, f"{e.get('type', '')}\t{e.get('reason', '')}\t{interval}\t{source}\t"
                   f"{(e.get('message') or '').strip()}\n")


def write_template(w: PrefixWriter, template: dict) -> None:
    """The ``Pod Template:`` section of a workload."""
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    w.write(0, "Pod Template:\n")
    write_map(w, "Labels", meta.get("labels"), level=1)
    if meta.get("annotations"):
        write_map(w, "Annotations", meta["annotations"], sep=": ", level=1)
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec['serviceAccountName']}\n")
    if spec.get("initContainers"):
        write_containers(w, "Init Containers", spec["initContainers"], None, template=True)
    write_containers(w, "Containers", spec.get("containers") or [], None, template=True)
    volumes = spec.get("volumes") or []
    w.write(1, "Volumes:\t" + (", ".join(v.get("name", "") for v in volumes) if volumes else "<none>") + "\n")
    write_map(w, "Node-Selectors", spec.get("nodeSelector"), level=1)
    write_list(w, "Tolerations", [_toleration(t) for t in spec.get("tolerations") or []], level=1)


async def describe_deployment(c: Client, d: dict, now: float) -> str:
    """describeDeployment: replicas summary, strategy, template, conditions, replica sets, events."""
    meta, spec, status = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace')}\n")
    w.write(0, f"CreationTimestamp:\t{timestamp(meta.get('creationTimestamp'))}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}\n")
    replicas = spec.get("replicas", 1)
    w.write(0, f"Replicas:\t{replicas} desired | {status.get('updatedReplicas', 0)} updated | "
               f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
               f"{status.get('unavailableReplicas', 0)} unavailable\n")
    strategy = spec.get("strategy") or {}
    w.write(0, f"StrategyType:\t{strategy.get('type', 'RollingUpdate')}\n")
    w.write(0, f"MinReadySeconds:\t{spec.get('minReadySeconds', 0)}\n")
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = rolling or {}
        w.write(0, f"RollingUpdateStrategy:\t{rolling.get('maxUnavailable', '25%')} max unavailable, "
                   f"{rolling.get('maxSurge', '25%')} max surge\n")
    write_template(w, spec.get("template") or {})
    conditions = status.get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for cond in conditions:
            w.write(1, f"{cond.get('type')} \t{cond.get('status')}\t{cond.get('reason', '')}\n")
    old, new = await _replica_sets(c, d)
    # kubectl 1.32 leaves both lines out until the deployment owns a replica set.
    if old or new:
        w.write(0, "OldReplicaSets:\t" + (", ".join(_rs_summary(r) for r in old) if old else "<none>") + "\n")
        w.write(0, "NewReplicaSet:\t" + (_rs_summary(new) if new else "<none>") + "\n")
    await write_events(w, c, d, now)
    return w.text()


def _rs_summary(rs: dict) -> str:
    return (f"{rs['metadata']['name']} ({(rs.get('status') or {}).get('replicas', 0)}/"
            f"{(rs.get('spec') or {}).get('replicas', 0)} replicas created)")


async def _replica_sets(c: Client, d: dict) -> tuple[list[dict], dict | None]:
    meta = d.get("metadata") or {}
    selector = format_label_selector((d.get("spec") or {}).get("selector"))
    try:
        items = (await c.list("replicasets", namespace=meta.get("namespace"),
                              label_selector=None if selector == "<none>" else selector)).get("items") or []
    except ApiError:
        return [], None
    owned = [rs for rs in items if any(ref.get("uid") == meta.get("uid")
                                       for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    revision = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
    new = next((rs for rs in owned if ((rs["metadata"].get("annotations") or {})
                                       .get("deployment.kubernetes.io/revision")) == revision and revision), None)
    if new is None and owned:
        new = max(owned, key=lambda rs: rs["metadata"].get("creationTimestamp") or "")
    return [rs for rs in owned if rs is not new], new


async def describe_service(c: Client, svc: dict, now: float) -> str:
    """describeService: type, IPs, ports with target ports and endpoints, affinity, events."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    try:
        endpoints = await c.get("endpoints", meta.get("name"), namespace=meta.get("namespace"))
    except ApiError:
        endpoints = {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace')}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    w.write(0, f"Selector:\t{printers.format_labels(spec.get('selector'))}\n")
    w.write(0, f"Type:\t{spec.get('type', 'ClusterIP')}\n")
    if spec.get("ipFamilyPolicy"):
        w.write(0, f"IP Family Policy:\t{spec['ipFamilyPolicy']}\n")
    if spec.get("ipFamilies"):
        w.write(0, f"IP Families:\t{','.join(spec['ipFamilies'])}\n")
    w.write(0, f"IP:\t{spec.get('clusterIP') or '<none>'}\n")
    w.write(0, f"IPs:\t{','.join(spec.get('clusterIPs') or ([spec['clusterIP']] if spec.get('clusterIP') else [])) or '<none>'}\n")
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        w.write(0, f"Port:\t{p.get('name') or '<unset>'}  {p.get('port')}/{proto}\n")
        target = p.get("targetPort", p.get("port"))
        w.write(0, f"TargetPort:\t{target}/{proto}\n")
        if p.get("nodePort"):
            w.write(0, f"NodePort:\t{p.get('name') or '<unset>'}  {p['nodePort']}/{proto}\n")
        w.write(0, f"Endpoints:\t{_service_endpoints(endpoints, p)}\n")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity', 'None')}\n")
    if spec.get("internalTrafficPolicy"):
        w.write(0, f"Internal Traffic Policy:\t{spec['internalTrafficPolicy']}\n")
    await write_events(w, c, svc, now)
    return w.text()


def _service_endpoints(endpoints: dict, port: dict) -> str:
    # formatEndpoints restricted to the subset ports of this service port (matched by name).
    wanted = port.get("name") or ""
    filtered = {"subsets": [{"addresses": s.get("addresses"),
                             "ports": [p for p in s.get("ports") or [] if (p.get("name") or "") == wanted]}
                            for s in endpoints.get("subsets") or []]}
    filtered["subsets"] = [s for s in filtered["subsets"] if s["ports"]]
    return printers.format_endpoints(filtered)


async def describe_node(c: Client, node: dict, now: float) -> str:
    """describeNode: roles, taints, conditions, addresses, capacity, system info, pods, allocated, events."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Roles:\t{printers.node_roles(node)}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    w.write(0, f"CreationTimestamp:\t{timestamp(meta.get('creationTimestamp'))}\n")
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
              for t in spec.get("taints") or []]
    write_list(w, "Taints", taints)
    w.write(0, f"Unschedulable:\t{'true' if spec.get('unschedulable') else 'false'}\n")
    try:
        lease = await c.get("leases", meta.get("name"), namespace="kube-node-lease")
        lspec = lease.get("spec") or {}
        w.write(0, "Lease:\n")
        w.write(1, f"HolderIdentity:\t{lspec.get('holderIdentity') or '<unset>'}\n")
        w.write(1, f"AcquireTime:\t{timestamp(lspec.get('acquireTime'))}\n")
        w.write(1, f"RenewTime:\t{timestamp(lspec.get('renewTime'))}\n")
    except ApiError as e:
        w.write(0, f"Lease:\tFailed to get lease: {e.message}\n")
    conditions = status.get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for cond in conditions:
            w.write(1, f"{cond.get('type')} \t{cond.get('status')} \t{timestamp(cond.get('lastHeartbeatTime'))} \t"
                       f"{timestamp(cond.get('lastTransitionTime'))} \t{cond.get('reason', '')} \t"
                       f"{cond.get('message', '')}\n")
    addresses = status.get("addresses") or []
    w.write(0, "Addresses:\n" if addresses else "Addresses:\t<none>\n")
    for a in addresses:
        w.write(1, f"{a.get('type')}:\t{a.get('address')}\n")
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        if status.get(key):
            w.write(0, f"{title}:\n")
            for rname, qty in sorted(status[key].items()):
                w.write(1, f"{rname}:\t{canonical_quantity(qty)}\n")
    info = status.get("nodeInfo") or {}
    if info:
        w.write(0, "System Info:\n")
        for key, label in (("machineID", "Machine ID"), ("systemUUID", "System UUID"), ("bootID", "Boot ID"),
                           ("kernelVersion", "Kernel Version"), ("osImage", "OS Image"),
                           ("operatingSystem", "Operating System"), ("architecture", "Architecture"),
                           ("containerRuntimeVersion", "Container Runtime Version"),
                           ("kubeletVersion", "Kubelet Version"), ("kubeProxyVersion", "Kube-Proxy Version")):
            w.write(1, f"{label}:\t{info.get(key, '')}\n")
    if spec.get("podCIDR"):
        w.write(0, f"PodCIDR:\t{spec['podCIDR']}\n")
        w.write(0, f"PodCIDRs:\t{','.join(spec.get('podCIDRs') or [spec['podCIDR']])}\n")
    pods = await _node_pods(c, meta.get("name"))
    allocatable = status.get("allocatable") or {}
    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
    totals = {(rname, kind): 0.0 for rname in ("cpu", "memory", "ephemeral-storage")
              for kind in ("requests", "limits")}

    def pct(value: float, rname: str) -> str:
        cap = parse_or_zero(allocatable.get(rname))
        return f"{format_quantity(value, rname)} ({int(value / cap * 100) if cap else 0}%)"

    for p in pods:
        sums = dict.fromkeys(totals, 0.0)
        for cont in (p.get("spec") or {}).get("containers") or []:
            resources = cont.get("resources") or {}
            for (rname, kind) in sums:
                sums[(rname, kind)] += parse_or_zero((resources.get(kind) or {}).get(rname))
        for k, v in sums.items():
            totals[k] += v
        pm = p.get("metadata") or {}
        w.write(1, f"{pm.get('namespace')}\t{pm.get('name')}\t\t{pct(sums[('cpu', 'requests')], 'cpu')}\t"
                   f"{pct(sums[('cpu', 'limits')], 'cpu')}\t{pct(sums[('memory', 'requests')], 'memory')}\t"
                   f"{pct(sums[('memory', 'limits')], 'memory')}\t{age(pm.get('creationTimestamp'), now)}\n")
    w.write(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n")
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    for rname in ("cpu", "memory", "ephemeral-storage"):
        w.write(1, f"{rname}\t{pct(totals[(rname, 'requests')], rname)}\t{pct(totals[(rname, 'limits')], rname)}\n")
    await write_events(w, c, node, now)
    return w.text()


async def _node_pods(c: Client, node: str) -> list[dict]:
    selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
    try:
        items = (await c.list("pods", field_selector=selector)).get("items") or []
    except ApiError as e:
        if e.code not in (400, 422):
            return []
        items = (await c.list("pods")).get("items") or []
    return [p for p in items if (p.get("spec") or {}).get("nodeName") == node
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


def _label(key: str) -> str:
    # smartLabelFor: "creationTimestamp" -> "Creation Timestamp".
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).split(" ")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _write_value(w: PrefixWriter, level: int, value) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            v = value[k]
            if isinstance(v, (dict, list)) and v:
                w.write(level, f"{_label(k)}:\n")
                _write_value(w, level + 1, v)
            else:
                w.write(level, f"{_label(k)}:\t{_scalar(v)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _write_value(w, level, item)
            else:
                w.write(level, f"{_scalar(item)}\n")
    else:
        w.write(level, f"{_scalar(value)}\n")


def _scalar(v) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    return str(v)


async def describe_generic(c: Client, obj: dict, now: float) -> str:
    """GenericDescriberFor: identity and labels, then every other field, then events."""
    meta = obj.get("metadata") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace') or ''}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    rest = {k: v for k, v in obj.items() if k != "metadata"}
    rest["metadata"] = {k: v for k, v in meta.items()
                        if k not in ("name", "namespace", "labels", "annotations", "managedFields")}
    _write_value(w, 0, rest)
    await write_events(w, c, obj, now)
    return w.text()


async def describe_configmap(c: Client, cm: dict, now: float) -> str:
    """describeConfigMap: each key, a rule of dashes, its value; then BinaryData sizes."""
    meta = cm.get("metadata") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace')}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    w.flush()
    # Values are printed verbatim, outside the aligned blocks.
    text = w.text() + "\nData\n====\n"
    for k, v in sorted((cm.get("data") or {}).items()):
        text += f"{k}:\n----\n{v}\n\n"
    text += "\nBinaryData\n====\n"
    for k, v in sorted((cm.get("binaryData") or {}).items()):
        text += f"{k}: {len(base64.b64decode(v))} bytes\n"
    w2 = PrefixWriter()
    await write_events(w2, c, cm, now)
    return text + "\n" + w2.text()


async def describe_secret(c: Client, secret: dict, now: float) -> str:
    """describeSecret: type and the size of each value, never the values."""
    meta = secret.get("metadata") or {}
    w = PrefixWriter()
    w.write(0, f"Name:\t{meta.get('name')}\n")
    w.write(0, f"Namespace:\t{meta.get('namespace')}\n")
    write_map(w, "Labels", meta.get("labels"))
    write_annotations(w, meta.get("annotations"))
    w.write(0, f"\nType:\t{secret.get('type', 'Opaque')}\n\nData\n====\n")
    for k, v in sorted((secret.get("data") or {}).items()):
        w.write(0, f"{k}:\t{len(base64.b64decode(v))} bytes\n")
    return w.text()


Describer = Callable[[Client, dict, float], Awaitable[str]]

DESCRIBERS: dict[str, Describer] = {
    "Pod": describe_pod,
    "Deployment": describe_deployment,
    "Service": describe_service,
    "Node": describe_node,
    "ConfigMap": describe_configmap,
    "Secret": describe_secret,
}


def describer_for(kind: str) -> Describer:
    """The describer of ``kind`` (the generic one for kinds without their own)."""
    return DESCRIBERS.get(kind, describe_generic)
