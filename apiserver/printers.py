"""Server-side printing: meta.k8s.io/v1 Table answers for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``
and prints whatever columns the server describes, so the columns and cells
here are exactly what users see. They mirror kube-apiserver's
``pkg/printers/internalversion/printers.go`` (1.32) kind by kind: the
server always fills every cell (as its TableConvertor does with
``Wide: true``) and marks the ``-o wide`` columns with priority 1; kubectl
drops those unless asked. A kind without a printer gets the default
convertor's NAME + ``Created At``. Rows carry the object as
PartialObjectMetadata, the whole object with ``includeObject=Object``
(--sort-by, -o custom-columns) or nothing with ``includeObject=None``.

The cell helpers shared with the ``kubeling`` CLI (pod STATUS, durations,
service EXTERNAL-IP and PORT(S)) come from kubeling.cli.printers.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

from kubeling.cli.printers import csr_condition, human_duration, node_roles, parse_time, pod_summary, \
    service_external_ip, service_ports


class Column(NamedTuple):
    """A metav1.TableColumnDefinition: name, type (string, integer, boolean, date), priority 1 = wide only."""

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict:
        """The JSON of the column definition."""
        return {"name": self.name, "type": self.type, "format": self.format, "description": self.description,
                "priority": self.priority}


Cells = Callable[[dict, float], list]  # (object, now in epoch seconds) -> cells in column order

NAME = Column("Name", format="name", description="Name must be unique within a namespace. Is required when "
              "creating resources, although some resources may allow a client to request the generation of an "
              "appropriate name automatically.")
AGE = Column("Age", description="CreationTimestamp is a timestamp representing the server time when this object "
             "was created.")
CREATED_AT = Column("Created At", "date", AGE.description)
CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")
SELECTOR = Column("Selector", priority=1, description="A label query over the objects this resource manages.")


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header asks for a meta.k8s.io Table."""
    return bool(accept) and "as=Table" in accept


# ---------------------------------------------------------------- formatting helpers


def since(timestamp: str | None, now: float) -> str:
    """translateTimestampSince: ``5m`` since ``timestamp``, ``<unknown>`` when unset or unparsable."""
    t = parse_time(timestamp)
    return "<unknown>" if t is None else human_duration(now - t)


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _age(obj: dict, now: float) -> str:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _created(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("creationTimestamp")


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: ``a=b,c=d`` sorted by key, ``<none>`` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def selector_string(selector: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(sel).String(): requirements sorted by key ('' for an empty selector)."""
    reqs: list[tuple[str, str]] = []
    for k, v in (selector or {}).get("matchLabels", {}).items() if isinstance(selector, dict) else []:
        reqs.append((k, f"{k}={v}"))
    for e in (selector or {}).get("matchExpressions") or [] if isinstance(selector, dict) else []:
        key, op, values = e.get("key", ""), e.get("operator"), ",".join(sorted(e.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                "DoesNotExist": f"!{key}"}.get(op, f"{key} {op}")
        reqs.append((key, text))
    return ",".join(t for _, t in sorted(reqs, key=lambda r: r[0]))


def format_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: like selector_string, ``<none>`` when empty."""
    return selector_string(selector) or "<none>"


def _template_cells(template: dict | None) -> list[str]:
    """layoutContainerCells: container names and images of a pod template, comma separated."""
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _more(items: list[str], count: int, limit: int = 3, empty: str = "<unset>") -> str:
    """listWithMoreString: the first ``limit`` items and ``+ N more...``."""
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


# ---------------------------------------------------------------- core/v1


def pod_cells(pod: dict, now: float) -> list:
    """printPod: NAME READY STATUS RESTARTS AGE | IP NODE NOMINATED NODE READINESS GATES."""
    ready, total, reason, restarts, last_restart = pod_summary(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_text = f"{sum(1 for g in gates if g.get('conditionType') in true_types)}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_text, _age(pod, now), ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_text]


def _pod_conditions(pod: dict) -> list[dict] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


def replication_controller_cells(rc: dict, now: float) -> list:
    """printReplicationController: NAME DESIRED CURRENT READY AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = rc.get("spec") or {}, rc.get("status") or {}
    return [_name(rc), _int(spec.get("replicas")), _int(status.get("replicas")), _int(status.get("readyReplicas")),
            _age(rc, now), *_template_cells(spec.get("template")), format_labels(spec.get("selector"))]


def service_cells(svc: dict, now: float) -> list:
    """printService: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE | SELECTOR."""
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(svc), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
            service_external_ip(spec, status), service_ports(spec), _age(svc, now), format_labels(spec.get("selector"))]


def format_endpoints(ep: dict) -> str:
    """formatEndpoints: ``ip:port`` of ready addresses, three at most, then ``+ N more...``."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    listed: list[str] = []
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        count += len(addresses) * max(1, len(ports))
        for port in ports or [None]:
            for a in addresses:
                ip = a.get("ip", "")
                if port is None:
                    listed.append(ip)
                else:
                    listed.append(f"[{ip}]:{port.get('port')}" if ":" in ip else f"{ip}:{port.get('port')}")
    return _more(listed, count, empty="")


def endpoints_cells(ep: dict, now: float) -> list:
    """printEndpoints: NAME ENDPOINTS AGE."""
    return [_name(ep), format_endpoints(ep), _age(ep, now)]


def node_cells(node: dict, now: float) -> list:
    """printNode: NAME STATUS ROLES AGE VERSION | INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME."""
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    parts = [] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    parts = parts or ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        parts.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        return next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == kind), "<none>")
    return [_name(node), ",".join(parts), node_roles(node), _age(node, now), info.get("kubeletVersion") or "",
            address("InternalIP"), address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


# events.k8s.io/v1 field -> core/v1 Event field: upstream converts an events.k8s.io Event to the
# internal (core) Event before printing, so both APIs print the same columns.
_EVENTS_V1_TO_CORE = {"regarding": "involvedObject", "note": "message", "deprecatedSource": "source",
                      "deprecatedFirstTimestamp": "firstTimestamp", "deprecatedLastTimestamp": "lastTimestamp",
                      "deprecatedCount": "count", "reportingController": "reportingComponent"}


def core_event(ev: dict) -> dict:
    """``ev`` with events.k8s.io/v1 fields under their core/v1 names (a core Event is returned as is)."""
    if not str(ev.get("apiVersion") or "").startswith("events.k8s.io/") and "involvedObject" in ev:
        return ev
    out = dict(ev)
    for new, old in _EVENTS_V1_TO_CORE.items():
        if new in ev:
            out[old] = ev[new]
    return out


def event_cells(ev: dict, now: float) -> list:
    """printEvent: LAST SEEN TYPE REASON OBJECT | SUBOBJECT SOURCE | MESSAGE | FIRST SEEN COUNT NAME.

    LAST SEEN and FIRST SEEN are ages: lastTimestamp, else firstTimestamp,
    else eventTime; an event series shows its lastObservedTime and count.
    An events.k8s.io/v1 Event prints through its core/v1 form (``core_event``).
    """
    ev = core_event(ev)
    first = since(ev.get("firstTimestamp"), now) if parse_time(ev.get("firstTimestamp")) is not None \
        else since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now) if parse_time(ev.get("lastTimestamp")) is not None else first
    count = _int(ev.get("count"))
    if ev.get("series"):
        last = since(ev["series"].get("lastObservedTime"), now)
        count = _int(ev["series"].get("count"))
    elif count == 0:
        count = 1
    inv = ev.get("involvedObject") or {}
    kind = (inv.get("kind") or "").lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    return [last, ev.get("type") or "", ev.get("reason") or "", target, inv.get("fieldPath") or "",
            f"{component}, {host}" if host else component, (ev.get("message") or "").strip(), first, count,
            _name(ev)]


def namespace_cells(ns: dict, now: float) -> list:
    """printNamespace: NAME STATUS AGE."""
    return [_name(ns), (ns.get("status") or {}).get("phase") or "", _age(ns, now)]


def resource_quota_cells(rq: dict, now: float) -> list:
    """printResourceQuota: NAME AGE REQUEST LIMIT (``cpu: 100m/1``, limits.* in LIMIT)."""
    status = rq.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    request, limit = [], []
    for res in sorted(hard):
        (limit if res.split(".", 1)[0] == "limits" and "." in res else request).append(
            f"{res}: {used.get(res, '0')}/{hard[res]}")
    return [_name(rq), _age(rq, now), ", ".join(request), ", ".join(limit)]


# ---------------------------------------------------------------- apps/v1, batch/v1


def deployment_cells(d: dict, now: float) -> list:
    """printDeployment: NAME READY UP-TO-DATE AVAILABLE AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = d.get("spec") or {}, d.get("status") or {}
    return [_name(d), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")), _age(d, now),
            *_template_cells(spec.get("template")), selector_string(spec.get("selector"))]


def replica_set_cells(rs: dict, now: float) -> list:
    """printReplicaSet: NAME DESIRED CURRENT READY AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    return [_name(rs), _int(spec.get("replicas")), _int(status.get("replicas")), _int(status.get("readyReplicas")),
            _age(rs, now), *_template_cells(spec.get("template")), format_selector(spec.get("selector"))]


def daemon_set_cells(ds: dict, now: float) -> list:
    """printDaemonSet: NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = ds.get("spec") or {}, ds.get("status") or {}
    node_selector = (((spec.get("template") or {}).get("spec")) or {}).get("nodeSelector")
    return [_name(ds), _int(status.get("desiredNumberScheduled")), _int(status.get("currentNumberScheduled")),
            _int(status.get("numberReady")), _int(status.get("updatedNumberScheduled")),
            _int(status.get("numberAvailable")), format_labels(node_selector), _age(ds, now),
            *_template_cells(spec.get("template")), format_selector(spec.get("selector"))]


def stateful_set_cells(ss: dict, now: float) -> list:
    """printStatefulSet: NAME READY AGE | CONTAINERS IMAGES."""
    spec, status = ss.get("spec") or {}, ss.get("status") or {}
    return [_name(ss), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}", _age(ss, now),
            *_template_cells(spec.get("template"))]


def _has_condition(status: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def job_cells(job: dict, now: float) -> list:
    """printJob: NAME STATUS COMPLETIONS DURATION AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec['completions'])}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec['parallelism'])}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end if end is not None else now) - start)
    if _has_condition(status, "Complete"):
        state = "Complete"
    elif _has_condition(status, "Failed"):
        state = "Failed"
    elif (job.get("metadata") or {}).get("deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(status, "Suspended"):
        state = "Suspended"
    elif _has_condition(status, "FailureTarget"):
        state = "FailureTarget"
    elif _has_condition(status, "SuccessCriteriaMet"):
        state = "SuccessCriteriaMet"
    else:
        state = "Running"
    return [_name(job), state, completions, duration, _age(job, now), *_template_cells(spec.get("template")),
            format_selector(spec.get("selector"))]


def cron_job_cells(cj: dict, now: float) -> list:
    """printCronJob: NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE | CONTAINERS IMAGES SELECTOR."""
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    suspend = spec.get("suspend")
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    last = status.get("lastScheduleTime")
    return [_name(cj), spec.get("schedule") or "", spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"), len(status.get("active") or []),
            since(last, now) if last else "<none>", _age(cj, now), *_template_cells(job_spec.get("template")),
            format_selector(job_spec.get("selector"))]


# ---------------------------------------------------------------- other groups


def endpoint_slice_cells(es: dict, now: float) -> list:
    """printEndpointSlice: NAME ADDRESSTYPE PORTS ENDPOINTS AGE."""
    ports = es.get("ports") or []
    port_texts = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in ports]
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(es), es.get("addressType") or "", _more(port_texts, len(port_texts)),
            _more(addresses, len(addresses)), _age(es, now)]


def role_binding_cells(rb: dict, now: float) -> list:
    """printRoleBinding: NAME ROLE AGE | USERS GROUPS SERVICEACCOUNTS."""
    ref = rb.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in rb.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [_name(rb), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(rb, now), ", ".join(users),
            ", ".join(groups), ", ".join(sas)]


def default_cells(obj: dict, now: float) -> list:
    """The default table convertor: NAME and the creationTimestamp as ``Created At``."""
    return [_name(obj), _created(obj)]


def _simple(*extra: Callable[[dict], object]) -> Cells:
    """NAME, the ``extra`` cells, AGE."""
    return lambda o, now: [_name(o), *(f(o) for f in extra), _age(o, now)]


_ROLE_BINDING = ([NAME, Column("Role", description="Role of the binding."), AGE,
                  Column("Users", priority=1, description="Users in the binding."),
                  Column("Groups", priority=1, description="Groups in the binding."),
                  Column("ServiceAccounts", priority=1, description="ServiceAccounts in the binding.")],
                 role_binding_cells)
_REPLICAS = [NAME, Column("Desired", "integer", "Number of desired replicas."),
             Column("Current", "integer", "Number of actual replicas."),
             Column("Ready", "integer", "Number of ready replicas."), AGE, CONTAINERS, IMAGES, SELECTOR]

# kind -> (column definitions, cells); cells has one value per column, wide ones included.

def csr_cells(csr: dict, now: float) -> list:
    """printCertificateSigningRequest: NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION."""
    spec = csr.get("spec") or {}
    exp = spec.get("expirationSeconds")
    return [_name(csr), _age(csr, now), spec.get("signerName") or "<none>", spec.get("username") or "",
            human_duration(exp) if isinstance(exp, int) else "<none>", csr_condition(csr)]

PRINTERS: dict[str, tuple[list[Column], Cells]] = {
    "Pod": ([NAME, Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
             Column("Status", description="The aggregate status of the containers in this pod."),
             Column("Restarts", description="The number of times the containers in this pod have been restarted "
                    "and when the last container in this pod has restarted."), AGE,
             Column("IP", priority=1, description="podIP address allocated to the pod."),
             Column("Node", priority=1, description="NodeName is the name of the node the pod is scheduled to."),
             Column("Nominated Node", priority=1, description="nominatedNodeName is set when this pod preempts "
                    "other pods on the node."),
             Column("Readiness Gates", priority=1, description="If specified, all readiness gates will be "
                    "evaluated for pod readiness.")], pod_cells),
    "ReplicationController": (_REPLICAS, replication_controller_cells),
    "ReplicaSet": (_REPLICAS, replica_set_cells),
    "Deployment": ([NAME, Column("Ready", description="Number of the pod with ready state"),
                    Column("Up-to-date", "integer", "Total number of non-terminated pods targeted by this "
                           "deployment that have the desired template spec."),
                    Column("Available", "integer", "Total number of available pods (ready for at least "
                           "minReadySeconds) targeted by this deployment."), AGE, CONTAINERS, IMAGES, SELECTOR],
                   deployment_cells),
    "DaemonSet": ([NAME, Column("Desired", "integer", "The total number of nodes that should be running the "
                                "daemon pod."),
                   Column("Current", "integer", "The number of nodes running at least one daemon pod."),
                   Column("Ready", "integer", "The number of nodes running the daemon pod and ready."),
                   Column("Up-to-date", "integer", "The number of nodes running the updated daemon pod."),
                   Column("Available", "integer", "The number of nodes running the daemon pod and available."),
                   Column("Node Selector", description="NodeSelector of the pod template."), AGE, CONTAINERS,
                   IMAGES, SELECTOR], daemon_set_cells),
    "StatefulSet": ([NAME, Column("Ready", description="Number of the pod with ready state"), AGE, CONTAINERS,
                     IMAGES], stateful_set_cells),
    "Job": ([NAME, Column("Status", description="Status of the job."),
             Column("Completions", description="The completion status of the job."),
             Column("Duration", description="Time required to complete the job."), AGE, CONTAINERS, IMAGES,
             SELECTOR], job_cells),
    "CronJob": ([NAME, Column("Schedule", description="The schedule in Cron format."),
                 Column("Timezone", description="The time zone name for the given schedule."),
                 Column("Suspend", "boolean", "Whether later executions are suspended."),
                 Column("Active", "integer", "A list of pointers to currently running jobs."),
                 Column("Last Schedule", description="Information when was the last time the job was "
                        "successfully scheduled."), AGE, CONTAINERS, IMAGES, SELECTOR], cron_job_cells),
    "Service": ([NAME, Column("Type", description="type determines how the Service is exposed."),
                 Column("Cluster-IP", description="clusterIP is the IP address of the service."),
                 Column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the "
                        "cluster will also accept traffic for this service."),
                 Column("Port(s)", description="The list of ports that are exposed by this service."), AGE,
                 Column("Selector", priority=1, description="Route service traffic to pods with label keys and "
                        "values matching this selector.")], service_cells),
    "Endpoints": ([NAME, Column("Endpoints", description="The set of all endpoints is the union of all subsets."),
                   AGE], endpoints_cells),
    "Node": ([NAME, Column("Status", description="The status of the node"),
              Column("Roles", description="The roles of the node"), AGE,
              Column("Version", description="Kubelet Version reported by the node."),
              Column("Internal-IP", priority=1, description="List of addresses reachable to the node."),
              Column("External-IP", priority=1, description="List of addresses reachable to the node."),
              Column("OS-Image", priority=1, description="OS Image reported by the node."),
              Column("Kernel-Version", priority=1, description="Kernel Version reported by the node."),
              Column("Container-Runtime", priority=1, description="ContainerRuntime Version reported by the "
                     "node.")], node_cells),
    "Event": ([Column("Last Seen", description="The time at which the most recent occurrence of this event was "
                      "recorded."),
               Column("Type", description="Type of this event (Normal, Warning)."),
               Column("Reason", description="This should be a short, machine understandable string that gives "
                      "the reason for the transition into the object's current status."),
               Column("Object", description="The object that this event is about."),
               Column("Subobject", priority=1, description="The field path of the object in the event."),
               Column("Source", priority=1, description="The component reporting this event."),
               Column("Message", description="A human-readable description of the status of this operation."),
               Column("First Seen", priority=1, description="The time at which the event was first recorded."),
               Column("Count", priority=1, description="The number of times this event has occurred."),
               Column("Name", priority=1, format="name", description=NAME.description)], event_cells),
    "Namespace": ([NAME, Column("Status", description="The status of the namespace"), AGE], namespace_cells),
    "Secret": ([NAME, Column("Type", description="Used to facilitate programmatic handling of secret data."),
                Column("Data", description="Data contains the secret data."), AGE],
               _simple(lambda s: s.get("type") or "", lambda s: len(s.get("data") or {}))),
    "ConfigMap": ([NAME, Column("Data", description="Data contains the configuration data."), AGE],
                  _simple(lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {}))),
    "ServiceAccount": ([NAME, Column("Secrets", description="Secrets is a list of the secrets in the same "
                                     "namespace that pods running using this ServiceAccount are allowed to use."),
                        AGE], _simple(lambda sa: len(sa.get("secrets") or []))),
    "ResourceQuota": ([NAME, AGE, Column("Request", description="Request represents a minimum amount of "
                                         "cpu/memory that a container may consume."),
                       Column("Limit", description="Limits control the maximum amount of cpu/memory that a "
                              "container may use independent of contention on the node.")], resource_quota_cells),
    "LimitRange": ([NAME, CREATED_AT], default_cells),
    "Lease": ([NAME, Column("Holder", description="HolderIdentity contains the identity of the holder of a "
                            "current lease."), AGE],
              _simple(lambda le: (le.get("spec") or {}).get("holderIdentity") or "")),
    "EndpointSlice": ([NAME, Column("AddressType", description="addressType specifies the type of address "
                                    "carried by this EndpointSlice."),
                       Column("Ports", description="ports specifies the list of network ports exposed by each "
                              "endpoint in this slice."),
                       Column("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
                       AGE], endpoint_slice_cells),
    "Role": ([NAME, CREATED_AT], default_cells),
    "ClusterRole": ([NAME, CREATED_AT], default_cells),
    "RoleBinding": _ROLE_BINDING,
    "ClusterRoleBinding": _ROLE_BINDING,
    "CertificateSigningRequest": ([NAME, AGE, Column("SignerName", description="Only include a signerName "
                                                     "if you request a specific signer."),
                                   Column("Requestor", description="Name of the user which submitted the "
                                          "request."),
                                   Column("RequestedDuration", description="expirationSeconds is the requested "
                                          "duration of validity of the issued certificate."),
                                   Column("Condition", description="Conditions applied to the request.")],
                                  csr_cells),
}
DEFAULT: tuple[list[Column], Cells] = ([NAME, CREATED_AT], default_cells)


def columns(kind: str) -> list[Column]:
    """The column definitions of ``kind`` (NAME + Created At for kinds without a printer)."""
    return PRINTERS.get(kind, DEFAULT)[0]


def row(kind: str, obj: dict, *, include_object: str = "Metadata", now: float | None = None) -> dict:
    """One metav1.TableRow: cells, the embedded object as asked, and row conditions for finished pods."""
    cells = PRINTERS.get(kind, DEFAULT)[1](obj, time.time() if now is None else now)
    out: dict = {"cells": cells}
    if kind == "Pod" and (conds := _pod_conditions(obj)):
        out["conditions"] = conds
    if include_object == "Object":
        out["object"] = obj
    elif include_object != "None":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj.get("metadata") or {}}
    return out


def table(kind: str, objs: list[dict], *, resource_version: str = "", include_object: str = "Metadata",
          headers: bool = True, list_meta: dict | None = None, now: float | None = None) -> dict:
    """A meta.k8s.io/v1 Table of ``objs`` of ``kind`` (mirrors the apiserver's TableConvertor).

    ``include_object`` is the ``includeObject`` query parameter (Metadata,
    Object or None); ``headers=False`` omits columnDefinitions, as in the
    watch events after the first; ``list_meta`` is the list's metadata
    (resourceVersion, continue, remainingItemCount); ``now`` in epoch seconds.
    """
    now = time.time() if now is None else now
    out: dict = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                 "metadata": dict(list_meta or {"resourceVersion": resource_version})}
    if headers:
        out["columnDefinitions"] = [c.definition() for c in columns(kind)]
    out["rows"] = [row(kind, o, include_object=include_object, now=now) for o in objs]
    return out
