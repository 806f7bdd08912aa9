"""Strategies of the core/v1 resources: namespaces, pods, nodes, services, endpoints, events, configmaps, secrets,
serviceaccounts, resourcequotas, limitranges.

Mirrors kube-apiserver's ``pkg/registry/core/<resource>/strategy.go`` together
with the defaulting of ``pkg/apis/core/v1/defaults.go`` and the parts of
``pkg/apis/core/validation`` that catch real mistakes (required fields,
names, ports, immutable fields), reporting causes with field paths.
"""
from __future__ import annotations

import base64
import binascii
import copy

from apiserver import errors
from apiserver.registry import ipallocator, portallocator
from apiserver.registry.rest import (STATUS_VERBS, ResourceInfo, Strategy, duplicate, forbidden_field,
                                     invalid_value, not_supported, required, validate_labels,
                                     validate_name)
from apiserver.storage import etcd3
from kubeling.api import quantity, resources

# ---------------------------------------------------------------- pod spec (shared with pod templates)


def default_pod_spec(spec: dict) -> None:
    """Defaults of a PodSpec (SetDefaults_PodSpec, SetDefaults_Container), in place."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for field in ("containers", "initContainers"):
        for c in spec.get(field) or []:
            if not isinstance(c, dict):
                continue
            image = c.get("image") or ""
            tagless = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
            c.setdefault("imagePullPolicy", "Always" if tagless or image.endswith(":latest") else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def qos_class(spec: dict) -> str:
    """BestEffort / Burstable / Guaranteed, as pkg/apis/core/helper/qos.GetPodQOS."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = (c or {}).get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(req.get(r, lim[r])) != str(lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def validate_pod_spec(spec, path: str, *, restart_policies=("Always", "OnFailure", "Never")) -> list:
    """Causes for a PodSpec at ``path`` (``spec`` or ``spec.template.spec``)."""
    if not isinstance(spec, dict):
        return [required(path)]
    out = []
    containers = spec.get("containers")
    if not containers:
        out.append(required(f"{path}.containers"))
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        items = spec.get(field) or []
        if not isinstance(items, list):
            out.append(invalid_value(f"{path}.{field}", str(items), "must be a list"))
            continue
        for i, c in enumerate(items):
            cp = f"{path}.{field}[{i}]"
            if not isinstance(c, dict):
                out.append(invalid_value(cp, str(c), "must be an object"))
                continue
            name = c.get("name")
            if not name:
                out.append(required(f"{cp}.name"))
            else:
                out += validate_name(f"{cp}.name", name, "label")
                if name in names:
                    out.append(duplicate(f"{cp}.name", name))
                names.add(name)
            if not c.get("image"):
                out.append(required(f"{cp}.image"))
            for j, p in enumerate(c.get("ports") or []):
                port = (p or {}).get("containerPort")
                if not isinstance(port, int) or not 0 < port < 65536:
                    out.append(invalid_value(f"{cp}.ports[{j}].containerPort", port,
                                             "must be between 1 and 65535, inclusive"))
                proto = (p or {}).get("protocol", "TCP")
                if proto not in ("TCP", "UDP", "SCTP"):
                    out.append(not_supported(f"{cp}.ports[{j}].protocol", proto, ["SCTP", "TCP", "UDP"]))
    rp = spec.get("restartPolicy", "Always")
    if rp not in restart_policies:
        out.append(not_supported(f"{path}.restartPolicy", rp, list(restart_policies)))
    dp = spec.get("dnsPolicy", "ClusterFirst")
    if dp not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        out.append(not_supported(f"{path}.dnsPolicy", dp, ["ClusterFirst", "ClusterFirstWithHostNet",
                                                           "Default", "None"]))
    return out


def core(resource: str, storage: str, *, categories=(), subresources=None) -> ResourceInfo:
    """ResourceInfo of a core/v1 resource (names from kubeling.api.resources)."""
    return ResourceInfo(resources.for_name(resource), storage, tuple(categories), subresources or {})


# ---------------------------------------------------------------- namespaces


class NamespaceStrategy(Strategy):
    """Namespaces: DNS-1123 label names, phase Active, ``kubernetes.io/metadata.name`` label."""

    info = core("namespaces", "namespaces",
                subresources={"status": ("Namespace", "", "v1", STATUS_VERBS),
                              "finalize": ("Namespace", "", "v1", ("update",))})
    name_kind = "label"
    return_deleted_object = True
    extra_fields = ("status.phase",)

    def default(self, obj: dict) -> None:
        """Set the ``kubernetes.io/metadata.name`` label and the ``kubernetes`` spec finalizer; mutates ``obj``."""
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])

    def prepare_for_create(self, obj: dict) -> None:
        """A new namespace starts with ``status.phase`` Active, whatever the client sent."""
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: dict, old: dict) -> None:
        """Keep the old status and ``spec`` (finalizers change only through ``/finalize``)."""
        super().prepare_for_update(new, old)
        new["spec"] = copy.deepcopy(old.get("spec") or {})  # spec.finalizers change only through /finalize


# ---------------------------------------------------------------- pods


POD_UPDATE_FORBIDDEN = ("pod updates may not change fields other than `spec.containers[*].image`,"
                        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                        "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                        "(allow it to be set to 1 if it was previously negative)")


# What an ephemeral container may not have (validateEphemeralContainers): it is never part of the
# pod's resources, readiness or ports.
EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources",
                       "resizePolicy", "restartPolicy")


def _keep_ephemeral(target: dict, source: dict) -> None:
    """Set ``target``'s spec.ephemeralContainers to ``source``'s (absent stays absent)."""
    eph = (source.get("spec") or {}).get("ephemeralContainers")
    spec = target.setdefault("spec", {})
    if eph is None:
        spec.pop("ephemeralContainers", None)
    else:
        spec["ephemeralContainers"] = copy.deepcopy(eph)


def validate_ephemeral_containers(spec: dict, old_spec: dict) -> list:
    """Causes against spec.ephemeralContainers: names and images required, names unique across
    all the pod's containers, no ports/probes/lifecycle/resources, targetContainerName naming a
    container, and existing ones never changed or removed (mirrors validateEphemeralContainers
    and ValidatePodEphemeralContainersUpdate)."""
    eph = spec.get("ephemeralContainers") or []
    if not isinstance(eph, list):
        return [errors.Cause("FieldValueTypeInvalid", "must be a list", "spec.ephemeralContainers")]
    out = []
    taken = {c.get("name") for f in ("containers", "initContainers") for c in spec.get(f) or [] if isinstance(c, dict)}
    regular = {c.get("name") for f in ("containers", "initContainers") for c in spec.get(f) or [] if isinstance(c, dict)}
    for i, c in enumerate(eph):
        path = f"spec.ephemeralContainers[{i}]"
        if not isinstance(c, dict):
            out.append(errors.Cause("FieldValueTypeInvalid", "must be an object", path))
            continue
        if not c.get("name"):
            out.append(errors.Cause("FieldValueRequired", "Required value", f"{path}.name"))
        elif c["name"] in taken:
            out.append(errors.Cause("FieldValueDuplicate", f'Duplicate value: "{c["name"]}"', f"{path}.name"))
        taken.add(c.get("name"))
        if not c.get("image"):
            out.append(errors.Cause("FieldValueRequired", "Required value", f"{path}.image"))
        for f in EPHEMERAL_FORBIDDEN:
            if c.get(f):
                out.append(errors.Cause("FieldValueForbidden", "Forbidden: cannot be set for an Ephemeral Container",
                                        f"{path}.{f}"))
        target = c.get("targetContainerName")
        if target and target not in regular:
            out.append(errors.Cause("FieldValueNotFound", f'Not found: "{target}"', f"{path}.targetContainerName"))
    old = {c.get("name"): c for c in old_spec.get("ephemeralContainers") or [] if isinstance(c, dict)}
    new = {c.get("name"): c for c in eph if isinstance(c, dict)}
    for name, c in old.items():
        if new.get(name) != c:
            out.append(errors.Cause("FieldValueForbidden", "Forbidden: existing ephemeral containers "
                                    f'"{name}" may not be changed', "spec.ephemeralContainers"))
    return out


class PodStrategy(Strategy):
    """Pods: defaulting, phase Pending, QoS class, graceful deletion, immutable spec but images."""

    info = core("pods", "pods", categories=("all",),
                subresources={"status": ("Pod", "", "v1", STATUS_VERBS),
                              "binding": ("Binding", "", "v1", ("create",)),
                              "ephemeralcontainers": ("Pod", "", "v1", ("get", "patch", "update")),
                              "log": ("Pod", "", "v1", ("get",))})
    return_deleted_object = True
    extra_fields = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                    "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")

    def default(self, obj: dict) -> None:
        """Fill pod spec defaults (restartPolicy, dnsPolicy, grace period, ...); mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            default_pod_spec(spec)

    def prepare_for_create(self, obj: dict) -> None:
        """A new pod starts with ``status.phase`` Pending and its computed ``qosClass``, whatever the client sent."""
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}

    def validate(self, obj: dict) -> list:
        """Causes why the pod spec is invalid (validate_pod_spec under path ``spec``)."""
        return validate_pod_spec(obj.get("spec"), "spec")

    def prepare_for_update(self, new: dict, old: dict) -> None:
        """Keep the status and spec.ephemeralContainers: only their subresources change them."""
        super().prepare_for_update(new, old)
        _keep_ephemeral(new, old)

    def prepare_for_ephemeral_containers_update(self, new: dict, old: dict) -> dict:
        """The pod a ``/ephemeralcontainers`` write yields: ``old`` with only
        spec.ephemeralContainers taken from ``new`` (upstream's EphemeralContainersStrategy)."""
        out = copy.deepcopy(old)
        _keep_ephemeral(out, new)
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus pod spec immutability: only container images, activeDeadlineSeconds,
        tolerations and terminationGracePeriodSeconds may change (as ValidatePodUpdate), and
        ephemeral containers may only be added (ValidatePodEphemeralContainersUpdate).
        """
        out = self.validate(new)
        out += validate_ephemeral_containers(new.get("spec") or {}, old.get("spec") or {})

        def mutable_masked(spec: dict) -> dict:
            spec = copy.deepcopy(spec or {})
            spec.pop("ephemeralContainers", None)
            for f in ("containers", "initContainers"):
                for c in spec.get(f) or []:
                    if isinstance(c, dict):
                        c.pop("image", None)
            for f in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
                spec.pop(f, None)
            return spec

        if mutable_masked(new.get("spec")) != mutable_masked(old.get("spec")):
            out.append(forbidden_field("spec", POD_UPDATE_FORBIDDEN))
        return out

    def grace_period(self, obj: dict, requested: int | None) -> int:
        """Seconds of graceful deletion: the requested value (negative -> 1) else spec's (default 30);
        0 for unscheduled or finished pods, which are deleted at once.
        """
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        grace = spec.get("terminationGracePeriodSeconds")
        grace = 30 if grace is None else grace
        if requested is not None:
            grace = requested if requested >= 0 else 1
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        return int(grace)

    def fields(self, obj: dict) -> dict[str, str]:
        """Generic field-selector attributes plus ``spec.hostNetwork`` ("true"/"false")."""
        out = super().fields(obj)
        out["spec.hostNetwork"] = "true" if (obj.get("spec") or {}).get("hostNetwork") else "false"
        return out


# ---------------------------------------------------------------- nodes


class NodeStrategy(Strategy):
    """Nodes: cluster-scoped, status written by the kubelet at registration and through /status."""

    info = core("nodes", "minions",
                subresources={"status": ("Node", "", "v1", STATUS_VERBS)})
    reset_status_on_create = False
    extra_fields = ("spec.unschedulable",)

    def fields(self, obj: dict) -> dict[str, str]:
        """Generic field-selector attributes plus ``spec.unschedulable`` ("true"/"false")."""
        out = super().fields(obj)
        out["spec.unschedulable"] = "true" if (obj.get("spec") or {}).get("unschedulable") else "false"
        return out


# ---------------------------------------------------------------- services


class ServiceStrategy(Strategy):
    """Services: defaulting, port validation, ClusterIP and NodePort allocation/release through reservation keys."""

    info = core("services", "services/specs", categories=("all",),
                subresources={"status": ("Service", "", "v1", STATUS_VERBS)})
    name_kind = "dns1035"
    return_deleted_object = True

    def __init__(self, ip_range: ipallocator.Range, port_range: portallocator.PortRange | None = None):
        self.ip_range = ip_range
        self.port_range = port_range or portallocator.PortRange()

    def default(self, obj: dict) -> None:
        """Default type ClusterIP, sessionAffinity, IP families, traffic policies and port fields;
        mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIPs") and not spec.get("clusterIP"):
            spec["clusterIP"] = spec["clusterIPs"][0]

    def prepare_for_create(self, obj: dict) -> None:
        """A new service starts with an empty ``status.loadBalancer``, whatever the client sent."""
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: dict, old: dict) -> None:
        """Keep the old status, and the allocated clusterIP(s) and nodePorts when the update leaves them empty
        (upstream's patchAllocatedValues: a nodePort is kept for the same port number and protocol)."""
        super().prepare_for_update(new, old)
        ns, os_ = new.setdefault("spec", {}), old.get("spec") or {}
        if isinstance(ns, dict) and not ns.get("clusterIP") and not ns.get("clusterIPs") and os_.get("clusterIP"):
            ns["clusterIP"], ns["clusterIPs"] = os_["clusterIP"], list(os_.get("clusterIPs") or [os_["clusterIP"]])
        if isinstance(ns, dict) and ns.get("type") in ("NodePort", "LoadBalancer"):
            had = {(p.get("port"), p.get("protocol", "TCP")): p["nodePort"]
                   for p in os_.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
            for p in ns.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    kept = had.get((p.get("port"), p.get("protocol", "TCP")))
                    if kept:
                        p["nodePort"] = kept

    def validate(self, obj: dict) -> list:
        """Causes why the service is invalid: type, ports (names, numbers, protocols), clusterIP(s), selector."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        out = []
        stype = spec.get("type", "ClusterIP")
        if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            out.append(not_supported("spec.type", stype, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]))
        ports = spec.get("ports") or []
        if not ports and spec.get("clusterIP") != "None" and stype != "ExternalName":
            out.append(required("spec.ports"))
        names: set = set()
        for i, p in enumerate(ports):
            pp = f"spec.ports[{i}]"
            if not isinstance(p, dict):
                out.append(invalid_value(pp, str(p), "must be an object"))
                continue
            port = p.get("port")
            if not isinstance(port, int) or not 0 < port < 65536:
                out.append(invalid_value(f"{pp}.port", port, "must be between 1 and 65535, inclusive"))
            if len(ports) > 1 and not p.get("name"):
                out.append(required(f"{pp}.name"))
            if p.get("name"):
                if p["name"] in names:
                    out.append(duplicate(f"{pp}.name", p["name"]))
                names.add(p["name"])
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                out.append(not_supported(f"{pp}.protocol", p.get("protocol"), ["SCTP", "TCP", "UDP"]))
            tp = p.get("targetPort")
            if isinstance(tp, int) and not 0 < tp < 65536:
                out.append(invalid_value(f"{pp}.targetPort", tp, "must be between 1 and 65535, inclusive"))
        out += validate_labels("spec.selector", spec.get("selector"))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus: ``spec.clusterIPs[0]`` may not change once set."""
        out = self.validate(new)
        old_ips = (old.get("spec") or {}).get("clusterIPs") or []
        new_ips = (new.get("spec") or {}).get("clusterIPs") or []
        if old_ips and new_ips[:1] != old_ips[:1]:
            out.append(invalid_value("spec.clusterIPs[0]", new_ips[0] if new_ips else "",
                                     "may not change once set"))
        return out

    async def before_create(self, store, obj: dict, ctx: dict):
        """Allocate the clusterIP (requested or next free in the range) and, for NodePort and
        LoadBalancer services, each port's nodePort; returns the etcd3.ExtraOps reserving them
        atomically with the create (None when nothing is allocated). Raises StatusError 422 for a
        bad requested IP or port, 500 when a range is full (mirrors the service REST allocators).
        """
        extra = await self._allocate_ip(store, obj, ctx)
        ports = await self._allocate_node_ports(store, obj, ctx)
        if ports is None:
            return extra
        if extra is None:
            return ports
        return etcd3.ExtraOps(absent=extra.absent + ports.absent, puts={**extra.puts, **ports.puts})

    async def _allocate_ip(self, store, obj: dict, ctx: dict):
        spec = obj["spec"]
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return None
        requested = spec.get("clusterIP") or ""
        if requested:
            ctx["requested"] = True
            try:
                self.ip_range.check(requested)
            except ipallocator.AllocationError as e:
                raise errors.invalid("Service", obj["metadata"]["name"],
                                     [invalid_value("spec.clusterIPs", [requested], str(e))]) from None
            ip = requested
        else:
            taken = ipallocator.taken_from_keys(await store.etcd.keys(ipallocator.RESERVATION_PREFIX))
            taken |= ctx.setdefault("tried", set())
            try:
                ip = self.ip_range.pick(taken)
            except ipallocator.AllocationError as e:
                raise errors.StatusError(500, "InternalError", f"Internal error occurred: {e}") from None
            ctx["tried"].add(ip)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        meta = obj["metadata"]
        key = ipallocator.reservation_key(ip)
        return etcd3.ExtraOps(absent=[key], puts={key: f"{meta['namespace']}/{meta['name']}".encode()})

    async def _allocate_node_ports(self, store, obj: dict, ctx: dict):
        spec = obj["spec"]
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            return None
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        requested = ctx.setdefault("requested_ports", {})
        picked = ctx.setdefault("picked", set())
        causes = []
        for i, p in enumerate(ports):
            np = p.get("nodePort")
            if np and i not in picked:
                try:
                    if not isinstance(np, int):
                        raise portallocator.AllocationError("must be an integer")
                    self.port_range.check(np)
                except portallocator.AllocationError as e:
                    causes.append(invalid_value(f"spec.ports[{i}].nodePort", np, str(e)))
                requested[np] = i
        if causes:
            raise errors.invalid("Service", obj["metadata"]["name"], causes)
        if any(not p.get("nodePort") for p in ports):
            taken = portallocator.taken_from_keys(await store.etcd.keys(portallocator.RESERVATION_PREFIX))
            taken |= ctx.setdefault("tried_ports", set()) | {p["nodePort"] for p in ports if p.get("nodePort")}
            for i, p in enumerate(ports):
                if not p.get("nodePort"):
                    try:
                        p["nodePort"] = self.port_range.pick(taken)
                    except portallocator.AllocationError as e:
                        raise errors.StatusError(500, "InternalError",
                                                 f"Internal error occurred: failed to allocate a nodePort: {e}") from None
                    taken.add(p["nodePort"])
                    ctx["tried_ports"].add(p["nodePort"])
                    picked.add(i)
        meta = obj["metadata"]
        keys = sorted({portallocator.reservation_key(p["nodePort"]) for p in ports})
        return etcd3.ExtraOps(absent=keys, puts={k: f"{meta['namespace']}/{meta['name']}".encode() for k in keys})

    def on_create_compare_failed(self, obj: dict, key: str, ctx: dict) -> None:
        """A reservation was taken meanwhile: 422 for a requested IP or node port, else clear the
        picked value so the retry picks another."""
        if key.startswith(portallocator.RESERVATION_PREFIX):
            port = int(key[len(portallocator.RESERVATION_PREFIX):])
            if port in ctx.get("requested_ports", {}):
                i = ctx["requested_ports"][port]
                raise errors.invalid("Service", obj["metadata"]["name"], [invalid_value(
                    f"spec.ports[{i}].nodePort", port, "provided port is already allocated")])
            for i, p in enumerate(obj["spec"].get("ports") or []):
                if i in ctx.get("picked", set()):
                    p.pop("nodePort", None)
            ctx["picked"].clear()
            return
        ip = obj["spec"]["clusterIP"]
        if ctx.get("requested"):
            raise errors.invalid("Service", obj["metadata"]["name"], [invalid_value(
                "spec.clusterIPs", [ip], f"failed to allocate IP {ip}: provided IP is already allocated")])
        obj["spec"].pop("clusterIP", None)
        obj["spec"].pop("clusterIPs", None)

    def delete_extras(self, obj: dict):
        """etcd3.ExtraOps releasing the service's clusterIP and nodePort reservations on delete, or None."""
        spec = obj.get("spec") or {}
        keys = [ipallocator.reservation_key(ip) for ip in (spec.get("clusterIPs") or []) if ip and ip != "None"]
        keys += sorted({portallocator.reservation_key(p["nodePort"]) for p in spec.get("ports") or []
                        if isinstance(p, dict) and isinstance(p.get("nodePort"), int)})
        return etcd3.ExtraOps(deletes=keys) if keys else None


# ---------------------------------------------------------------- endpoints, events, configmaps, secrets


class EndpointsStrategy(Strategy):
    """Endpoints: written by the endpoints controller; PUT may create."""

    info = core("endpoints", "services/endpoints")
    has_status = False
    allow_create_on_update = True


class EventStrategy(Strategy):
    """Events: selectable by involvedObject.* for kubectl describe."""

    info = core("events", "events")
    has_status = False
    allow_create_on_update = True
    extra_fields = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")

    def fields(self, obj: dict) -> dict[str, str]:
        """Generic field-selector attributes plus ``source`` (the reporting component)."""
        out = super().fields(obj)
        src = obj.get("source") or {}
        out["source"] = src.get("component", "") if isinstance(src, dict) else ""
        return out

    def validate(self, obj: dict) -> list:
        """An event must have an ``involvedObject`` map."""
        if not isinstance(obj.get("involvedObject"), dict):
            return [required("involvedObject")]
        return []


class ConfigMapStrategy(Strategy):
    """ConfigMaps: string data only."""

    info = core("configmaps", "configmaps")
    has_status = False

    def validate(self, obj: dict) -> list:
        """Every ``data`` value must be a string."""
        out = []
        for k, v in (obj.get("data") or {}).items():
            if not isinstance(v, str):
                out.append(invalid_value(f"data[{k}]", str(v), "must be a string"))
        return out


class SecretStrategy(Strategy):
    """Secrets: type Opaque by default, stringData folded into base64 data as upstream's conversion."""

    info = core("secrets", "secrets")
    has_status = False
    extra_fields = ("type",)

    def default(self, obj: dict) -> None:
        """Default ``type`` Opaque and fold ``stringData`` into base64 ``data`` (as the v1 Secret conversion)."""
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def validate(self, obj: dict) -> list:
        """Every ``data`` value must be valid base64 (contents redacted from the error)."""
        out = []
        for k, v in (obj.get("data") or {}).items():
            try:
                base64.b64decode(v if isinstance(v, str) else "", validate=True)
                if not isinstance(v, str):
                    raise binascii.Error
            except (binascii.Error, ValueError):
                out.append(invalid_value(f"data[{k}]", "<secret contents redacted>",
                                         "illegal base64 data"))
        return out


# ---------------------------------------------------------------- serviceaccounts, resourcequotas, limitranges


class ServiceAccountStrategy(Strategy):
    """ServiceAccounts (pkg/registry/core/serviceaccount): no status; secrets refs by name."""

    info = core("serviceaccounts", "serviceaccounts")
    has_status = False

    def validate(self, obj: dict) -> list:
        """Every ``secrets[*]`` / ``imagePullSecrets[*]`` entry must be an object."""
        out = []
        for field in ("secrets", "imagePullSecrets"):
            items = obj.get(field)
            if items is None:
                continue
            if not isinstance(items, list):
                out.append(invalid_value(field, str(items), "must be a list"))
                continue
            for i, ref in enumerate(items):
                if not isinstance(ref, dict):
                    out.append(invalid_value(f"{field}[{i}]", str(ref), "must be an object"))
        return out


QUOTA_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
                "CrossNamespacePodAffinity")


def _validate_resource_list(path: str, rl) -> list:
    """Causes for a ResourceList (name -> quantity) at ``path``: quantities must parse and not be negative."""
    if rl is None:
        return []
    if not isinstance(rl, dict):
        return [invalid_value(path, str(rl), "must be a map of resource names to quantities")]
    out = []
    for name, q in rl.items():
        try:
            v = quantity.parse_quantity(q)
        except ValueError:
            out.append(invalid_value(f"{path}[{name}]", str(q), "quantities must match the regular expression "
                                     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
            continue
        if v < 0:
            out.append(invalid_value(f"{path}[{name}]", str(q), "must be greater than or equal to 0"))
    return out


class ResourceQuotaStrategy(Strategy):
    """ResourceQuotas (pkg/registry/core/resourcequota): spec.hard quantities; status.hard/used via /status."""

    info = core("resourcequotas", "resourcequotas",
                subresources={"status": ("ResourceQuota", "", "v1", STATUS_VERBS)})

    def validate(self, obj: dict) -> list:
        """Quantities of ``spec.hard`` (and of status when present) must parse; scopes must be known."""
        spec = obj.get("spec") or {}
        if not isinstance(spec, dict):
            return [invalid_value("spec", str(spec), "must be an object")]
        out = _validate_resource_list("spec.hard", spec.get("hard"))
        for i, scope in enumerate(spec.get("scopes") or []):
            if scope not in QUOTA_SCOPES:
                out.append(not_supported(f"spec.scopes[{i}]", scope, list(QUOTA_SCOPES)))
        status = obj.get("status") or {}
        if isinstance(status, dict):
            out += _validate_resource_list("status.hard", status.get("hard"))
            out += _validate_resource_list("status.used", status.get("used"))
        return out


LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")


class LimitRangeStrategy(Strategy):
    """LimitRanges (pkg/registry/core/limitrange) with SetDefaults_LimitRangeItem for Container items."""

    info = core("limitranges", "limitranges")
    has_status = False

    def default(self, obj: dict) -> None:
        """Container items: ``default`` from ``max``, ``defaultRequest`` from ``default`` then ``min``;
        mutates ``obj``."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        for item in spec.get("limits") or []:
            if not isinstance(item, dict) or item.get("type") != "Container":
                continue
            for src, dst in (("max", "default"), ("default", "defaultRequest"), ("min", "defaultRequest")):
                values = item.get(src)
                if isinstance(values, dict) and values and isinstance(item.setdefault(dst, {}), dict):
                    for name, q in values.items():
                        item[dst].setdefault(name, q)

    def validate(self, obj: dict) -> list:
        """``spec.limits`` items need a known ``type`` and parseable quantities."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        limits = spec.get("limits")
        if not isinstance(limits, list):
            return [required("spec.limits")]
        out = []
        for i, item in enumerate(limits):
            ip = f"spec.limits[{i}]"
            if not isinstance(item, dict):
                out.append(invalid_value(ip, str(item), "must be an object"))
                continue
            t = item.get("type")
            if not t:
                out.append(required(f"{ip}.type"))
            elif t not in LIMIT_TYPES:
                out.append(not_supported(f"{ip}.type", t, list(LIMIT_TYPES)))
            for f in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                out += _validate_resource_list(f"{ip}.{f}", item.get(f))
        return out
