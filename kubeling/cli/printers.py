"""The human-readable tables of ``kubeling get``: columns and cells per kind.

Mirrors kubernetes/pkg/printers/internalversion/printers.go (the server-side
table printers kubectl shows): the same columns, the same ``-o wide`` extras,
the same cell formatting (pod STATUS as printPod computes it, AGE as
apimachinery's duration.HumanDuration, endpoints as formatEndpoints). Each
printer takes the object as a JSON dict and ``now`` (seconds since the
epoch) so that tests are deterministic.
"""
from __future__ import annotations

import datetime
import time
from typing import Callable, NamedTuple

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Columns(NamedTuple):
    """Header cells of one kind's table (``wide`` ones are appended for ``-o wide``)."""

    normal: tuple[str, ...]
    wide: tuple[str, ...] = ()


# ---------------------------------------------------------------- time


def parse_time(value: str | None) -> float | None:
    """RFC 3339 timestamp (``2024-01-02T03:04:05Z``, fractions allowed) -> epoch seconds, or None."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """A duration as kubectl's AGE column shows it: ``5s``, ``3m2s``, ``15m``, ``5h3m``, ``2d``, ``3y``.

    Mirrors k8s.io/apimachinery/pkg/util/duration.HumanDuration (a clock skew
    of one second counts as now; more is ``<invalid>``).
    """
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: float) -> str:
    """Time since ``timestamp`` as human_duration, ``<unknown>`` when unset (translateTimestampSince)."""
    t = parse_time(timestamp)
    return "<unknown>" if t is None else human_duration(now - t)


# ---------------------------------------------------------------- selectors & small formatters


def format_labels(labels: dict | None) -> str:
    """``a=b,c=d`` sorted by key, ``<none>`` when empty (labels.FormatLabels)."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_label_selector(selector: dict | None) -> str:
    """A metav1.LabelSelector as text (metav1.FormatLabelSelector): ``app=web,tier in (a,b)``."""
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr['key']} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({values})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    text = ",".join(parts)
    return text if text else "<none>"


def _str(value) -> str:
    return "" if value is None else str(value)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- pods


def _condition_true(status: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _is_restartable_init(container: dict | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _later(current: float | None, candidate: str | None) -> float | None:
    t = parse_time(candidate)
    if t is None:
        return current
    return t if current is None or t > current else current


def pod_summary(pod: dict) -> tuple[int, int, str, int, float | None]:
    """(ready containers, total containers, STATUS reason, restarts, last restart time).

    Mirrors printPod in pkg/printers/internalversion/printers.go: init
    container progress (``Init:0/1``, ``Init:CrashLoopBackOff``), waiting and
    terminated reasons (``ContainerCreating``, ``CrashLoopBackOff``,
    ``Completed``, ``ExitCode:1``), ``Terminating`` once deletionTimestamp is set.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(1 for c in init_specs.values() if _is_restartable_init(c))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: float | None = None
    sidecar_last_restart: float | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    n_init = len(spec.get("initContainers") or [])
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += _int(cs.get("restartCount"))
        last_term = (cs.get("lastState") or {}).get("terminated")
        if last_term:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        sidecar = _is_restartable_init(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += _int(cs.get("restartCount"))
            if last_term:
                sidecar_last_restart = _later(sidecar_last_restart, last_term.get("finishedAt"))
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated and _int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated:
            if not terminated.get("reason"):
                if _int(terminated.get("signal")):
                    reason = f"Init:Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
            else:
                reason = "Init:" + terminated["reason"]
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = sidecar_last_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                if _int(terminated.get("signal")):
                    reason = f"Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return ready, total, reason, restarts, last_restart


def pod_row(pod: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME READY STATUS RESTARTS AGE (+ IP NODE NOMINATED NODE READINESS GATES)."""
    ready, total, reason, restarts, last_restart = pod_summary(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    meta = pod.get("metadata") or {}
    cells = [meta.get("name", ""), f"{ready}/{total}", reason, restarts_text,
             age(meta.get("creationTimestamp"), now)]
    if wide:
        status = pod.get("status") or {}
        ips = status.get("podIPs") or []
        ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
        gates = (pod.get("spec") or {}).get("readinessGates") or []
        gates_text = "<none>"
        if gates:
            true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
            n_true = sum(1 for g in gates if g.get("conditionType") in true_types)
            gates_text = f"{n_true}/{len(gates)}"
        cells += [ip, (pod.get("spec") or {}).get("nodeName") or "<none>",
                  status.get("nominatedNodeName") or "<none>", gates_text]
    return cells


# ---------------------------------------------------------------- workloads


def _containers_images(template: dict) -> tuple[str, str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def deployment_row(d: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME READY UP-TO-DATE AVAILABLE AGE (+ CONTAINERS IMAGES SELECTOR)."""
    spec, status, meta = d.get("spec") or {}, d.get("status") or {}, d.get("metadata") or {}
    cells = [meta.get("name", ""), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
             str(_int(status.get("updatedReplicas"))), str(_int(status.get("availableReplicas"))),
             age(meta.get("creationTimestamp"), now)]
    if wide:
        cells += [*_containers_images(spec.get("template")), format_label_selector(spec.get("selector"))]
    return cells


def replicaset_row(rs: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME DESIRED CURRENT READY AGE (+ CONTAINERS IMAGES SELECTOR)."""
    spec, status, meta = rs.get("spec") or {}, rs.get("status") or {}, rs.get("metadata") or {}
    cells = [meta.get("name", ""), str(_int(spec.get("replicas"))), str(_int(status.get("replicas"))),
             str(_int(status.get("readyReplicas"))), age(meta.get("creationTimestamp"), now)]
    if wide:
        cells += [*_containers_images(spec.get("template")), format_label_selector(spec.get("selector"))]
    return cells


# ---------------------------------------------------------------- networking


def service_external_ip(spec: dict, status: dict) -> str:
    """EXTERNAL-IP cell (getServiceExternalIP): ``<none>``, ``<pending>``, the LB ingress or externalName."""
    stype = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        ips = [i for i in ingress if i] + external
        return ",".join(ips) if ips else "<pending>"
    if stype == "ExternalName":
        return spec.get("externalName") or "<none>"
    return "<unknown>"


def service_ports(spec: dict) -> str:
    """PORT(S) cell: ``80/TCP``, ``80:30080/TCP`` (makePortString)."""
    parts = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            parts.append(f"{p.get('port')}/{proto}")
    return ",".join(parts) if parts else "<none>"


def service_row(svc: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE (+ SELECTOR)."""
    spec, status, meta = svc.get("spec") or {}, svc.get("status") or {}, svc.get("metadata") or {}
    cells = [meta.get("name", ""), spec.get("type") or "ClusterIP", spec.get("clusterIP") or "<none>",
             service_external_ip(spec, status), service_ports(spec), age(meta.get("creationTimestamp"), now)]
    if wide:
        cells.append(format_labels(spec.get("selector")))
    return cells


def format_endpoints(endpoints: dict, *, limit: int = 3) -> str:
    """ENDPOINTS cell: ``10.244.0.5:8080,10.244.0.6:8080 + 1 more...`` (formatEndpoints; ready addresses only)."""
    listed: list[str] = []
    count = 0
    for subset in endpoints.get("subsets") or []:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or [None]
        for port in ports:
            count += len(addresses)
            for addr in addresses:
                if len(listed) == limit:
                    break
                ip = addr.get("ip", "")
                if port is None:
                    listed.append(ip)
                else:
                    host = f"[{ip}]" if ":" in ip else ip
                    listed.append(f"{host}:{port.get('port')}")
    if not listed:
        return "<none>"
    text = ",".join(listed)
    return f"{text} + {count - limit} more..." if count > limit else text


def endpoints_row(ep: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME ENDPOINTS AGE."""
    meta = ep.get("metadata") or {}
    return [meta.get("name", ""), format_endpoints(ep), age(meta.get("creationTimestamp"), now)]


# ---------------------------------------------------------------- cluster


def node_status(node: dict) -> str:
    """STATUS cell: Ready / NotReady / Unknown, ``,SchedulingDisabled`` when cordoned."""
    conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready")
    text = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def node_roles(node: dict) -> str:
    """ROLES cell from ``node-role.kubernetes.io/<role>`` and ``kubernetes.io/role`` labels."""
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.split("/", 1)[1]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) if roles else "<none>"


def node_row(node: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME STATUS ROLES AGE VERSION (+ INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME)."""
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    info = status.get("nodeInfo") or {}
    cells = [meta.get("name", ""), node_status(node), node_roles(node), age(meta.get("creationTimestamp"), now),
             info.get("kubeletVersion") or ""]
    if wide:
        def address(kind: str) -> str:
            found = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == kind]
            return found[0] if found else "<none>"
        cells += [address("InternalIP"), address("ExternalIP"), info.get("osImage") or "<unknown>",
                  info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]
    return cells


def namespace_row(ns: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME STATUS AGE."""
    meta = ns.get("metadata") or {}
    return [meta.get("name", ""), (ns.get("status") or {}).get("phase") or "Active",
            age(meta.get("creationTimestamp"), now)]


def event_object(event: dict) -> str:
    """OBJECT cell: ``pod/web-1`` (lower-case kind / name)."""
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def event_times(event: dict, now: float) -> tuple[str, str, int]:
    """(last seen, first seen, count) of an event as printEvent computes them."""
    first = age(event.get("firstTimestamp"), now)
    if parse_time(event.get("firstTimestamp")) is None:
        first = age(event.get("eventTime"), now)
    last = age(event.get("lastTimestamp"), now)
    if parse_time(event.get("lastTimestamp")) is None:
        last = first
    count = _int(event.get("count"))
    series = event.get("series")
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    return last, first, count


def event_row(event: dict, now: float, wide: bool) -> list[str]:
    """Cells LAST SEEN TYPE REASON OBJECT MESSAGE (wide: + SUBOBJECT SOURCE, FIRST SEEN COUNT NAME)."""
    last, first, count = event_times(event, now)
    message = (event.get("message") or "").strip()
    if not wide:
        return [last, _str(event.get("type")), _str(event.get("reason")), event_object(event), message]
    source = event.get("source") or {}
    src = source.get("component") or event.get("reportingComponent") or ""
    if source.get("host"):
        src += f", {source['host']}"
    return [last, _str(event.get("type")), _str(event.get("reason")), event_object(event),
            _str((event.get("involvedObject") or {}).get("fieldPath")), src, message, first, str(count),
            _str((event.get("metadata") or {}).get("name"))]


def configmap_row(cm: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME DATA AGE."""
    meta = cm.get("metadata") or {}
    n = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [meta.get("name", ""), str(n), age(meta.get("creationTimestamp"), now)]


def secret_row(secret: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME TYPE DATA AGE."""
    meta = secret.get("metadata") or {}
    return [meta.get("name", ""), secret.get("type") or "Opaque", str(len(secret.get("data") or {})),
            age(meta.get("creationTimestamp"), now)]


def lease_row(lease: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME HOLDER AGE."""
    meta = lease.get("metadata") or {}
    return [meta.get("name", ""), (lease.get("spec") or {}).get("holderIdentity") or "",
            age(meta.get("creationTimestamp"), now)]


def csr_condition(csr: dict) -> str:
    """extractCSRStatus: Denied / Approved / Pending, then ``,Failed`` and ``,Issued`` when they apply."""
    types = {c.get("type") for c in (csr.get("status") or {}).get("conditions") or [] if isinstance(c, dict)}
    out = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        out += ",Failed"
    if (csr.get("status") or {}).get("certificate"):
        out += ",Issued"
    return out


def csr_row(csr: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION."""
    meta, spec = csr.get("metadata") or {}, csr.get("spec") or {}
    exp = spec.get("expirationSeconds")
    return [meta.get("name", ""), age(meta.get("creationTimestamp"), now), spec.get("signerName") or "<none>",
            spec.get("username") or "", human_duration(exp) if isinstance(exp, int) else "<none>",
            csr_condition(csr)]


def default_row(obj: dict, now: float, wide: bool) -> list[str]:
    """Cells NAME AGE, for kinds without a dedicated printer."""
    meta = obj.get("metadata") or {}
    return [meta.get("name", ""), age(meta.get("creationTimestamp"), now)]


Row = Callable[[dict, float, bool], list[str]]

PRINTERS: dict[str, tuple[Columns, Row]] = {
    "Pod": (Columns(("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
                    ("IP", "NODE", "NOMINATED NODE", "READINESS GATES")), pod_row),
    "Deployment": (Columns(("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
                           ("CONTAINERS", "IMAGES", "SELECTOR")), deployment_row),
    "ReplicaSet": (Columns(("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
                           ("CONTAINERS", "IMAGES", "SELECTOR")), replicaset_row),
    "Service": (Columns(("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), ("SELECTOR",)),
                service_row),
    "Endpoints": (Columns(("NAME", "ENDPOINTS", "AGE")), endpoints_row),
    "Node": (Columns(("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
                     ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME")), node_row),
    "Namespace": (Columns(("NAME", "STATUS", "AGE")), namespace_row),
    "Event": (Columns(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")), event_row),
    "ConfigMap": (Columns(("NAME", "DATA", "AGE")), configmap_row),
    "Secret": (Columns(("NAME", "TYPE", "DATA", "AGE")), secret_row),
    "Lease": (Columns(("NAME", "HOLDER", "AGE")), lease_row),
    "CertificateSigningRequest": (Columns(("NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                           "CONDITION")), csr_row),
}
_DEFAULT = (Columns(("NAME", "AGE")), default_row)
_EVENT_WIDE = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
               "COUNT", "NAME")


def header(kind: str, *, wide: bool = False, with_namespace: bool = False) -> list[str]:
    """Header cells for ``kind``'s table; NAMESPACE first for ``-A``."""
    columns, _ = PRINTERS.get(kind, _DEFAULT)
    cells = list(_EVENT_WIDE if kind == "Event" and wide else columns.normal + (columns.wide if wide else ()))
    return (["NAMESPACE"] if with_namespace else []) + cells


def row(kind: str, obj: dict, *, wide: bool = False, with_namespace: bool = False,
        name_prefix: str = "", now: float | None = None) -> list[str]:
    """Cells of one object's row; ``name_prefix`` (``pod/``) is put before the
    NAME cell when several kinds are printed together."""
    _, fn = PRINTERS.get(kind, _DEFAULT)
    cells = fn(obj, time.time() if now is None else now, wide)
    if name_prefix and kind != "Event":
        cells[0] = name_prefix + cells[0]
    if with_namespace:
        cells.insert(0, (obj.get("metadata") or {}).get("namespace") or "")
    return cells
