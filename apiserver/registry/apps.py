"""Strategies of apps/v1 Deployments, ReplicaSets, DaemonSets, StatefulSets (and their autoscaling/v1 Scale),
and coordination.k8s.io/v1 Leases.

Mirrors kube-apiserver's ``pkg/registry/apps/{deployment,replicaset,daemonset,
statefulset}`` and the defaulting of ``pkg/apis/apps/v1/defaults.go``:
replicas 1, RollingUpdate 25%/25% (DaemonSets maxUnavailable 1 / maxSurge 0,
StatefulSets partition 0 and OrderedReady), revisionHistoryLimit 10,
progressDeadlineSeconds 600; the selector must match the template's labels
and may not change; a spec change bumps metadata.generation (what
``kubectl rollout status`` compares with status.observedGeneration).
"""
from __future__ import annotations

import copy

from apiserver.registry.core import default_pod_spec, validate_pod_spec
from apiserver.registry.rest import (STATUS_VERBS, ResourceInfo, Strategy, forbidden_field, immutable,
                                     invalid_value, not_supported, required, validate_labels)
from kubeling.api import resources, selectors

SCALE_SUB = ("Scale", "autoscaling", "v1", STATUS_VERBS)


def _go_selector(sel: dict) -> str:
    ml = ", ".join(f'"{k}":"{v}"' for k, v in sorted((sel.get("matchLabels") or {}).items()))
    return "v1.LabelSelector{MatchLabels:map[string]string{" + ml + "}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"


class _WorkloadStrategy(Strategy):
    """What Deployments and ReplicaSets share: template defaulting, selector checks, generation, Scale."""

    tracks_generation = True
    has_replicas = True

    def default(self, obj: dict) -> None:
        """Default ``spec.replicas`` to 1 and the pod template's spec as for pods; mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if self.has_replicas:
            spec.setdefault("replicas", 1)
        tmpl = spec.get("template")
        if isinstance(tmpl, dict):
            if isinstance(tmpl.get("spec"), dict):
                default_pod_spec(tmpl["spec"])
            # an omitted selector is not defaulted from the template in apps/v1 (validation rejects it)

    def validate(self, obj: dict) -> list:
        """Causes why the workload is invalid: replicas < 0, missing/empty selector,
        template labels the selector does not match, bad pod spec."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        out = []
        replicas = spec.get("replicas", 1)
        if self.has_replicas and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0):
            out.append(invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
        sel = spec.get("selector")
        tmpl = spec.get("template")
        if not isinstance(sel, dict):
            out.append(required("spec.selector"))
        elif not sel.get("matchLabels") and not sel.get("matchExpressions"):
            out.append(invalid_value("spec.selector", _go_selector(sel),
                                     f"empty selector is invalid for {self.info.resource[:-1]}"))
        if not isinstance(tmpl, dict):
            out.append(required("spec.template"))
            return out
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        out += validate_labels("spec.template.metadata.labels", labels)
        if isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions")):
            try:
                matches = selectors.label_selector_from_object(sel).matches(labels)
            except ValueError as e:
                out.append(invalid_value("spec.selector", _go_selector(sel), str(e)))
            else:
                if not matches:
                    out.append(invalid_value("spec.template.metadata.labels", labels,
                                             "`selector` does not match template `labels`"))
        out += validate_pod_spec(tmpl.get("spec"), "spec.template.spec", restart_policies=("Always",))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus ``spec.selector`` immutability (as apps/v1 ValidateDeploymentUpdate)."""
        out = self.validate(new)
        ns, os_ = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
        if os_ is not None and ns != os_:
            out.append(immutable("spec.selector", _go_selector(ns if isinstance(ns, dict) else {})))
        return out

    def to_scale(self, obj: dict) -> dict:
        """autoscaling/v1 Scale of ``obj`` (spec.replicas, status.replicas and the selector string)."""
        meta = obj["metadata"]
        sel = (obj.get("spec") or {}).get("selector")
        try:
            sel_str = str(selectors.label_selector_from_object(sel)) if isinstance(sel, dict) else ""
        except ValueError:
            sel_str = ""
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp") if k in meta},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": sel_str}}

    def from_scale(self, obj: dict, scale: dict) -> dict:
        """``obj`` with spec.replicas taken from ``scale`` (the update of a /scale write)."""
        out = copy.deepcopy(obj)
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        out.setdefault("spec", {})["replicas"] = replicas
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            out["metadata"]["resourceVersion"] = rv
        return out


def apps(resource: str) -> ResourceInfo:
    """ResourceInfo of an apps/v1 resource with status and scale subresources."""
    names = resources.for_name(resource)
    return ResourceInfo(names, resource, ("all",),
                        {"status": (names.kind, "apps", "v1", STATUS_VERBS), "scale": SCALE_SUB})


class DeploymentStrategy(_WorkloadStrategy):
    """Deployments: rolling-update strategy defaults, revisionHistoryLimit, progressDeadlineSeconds."""

    info = apps("deployments")

    def default(self, obj: dict) -> None:
        """Workload defaults plus RollingUpdate 25%/25%, revisionHistoryLimit 10, progressDeadlineSeconds 600."""
        super().default(obj)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)


class ReplicaSetStrategy(_WorkloadStrategy):
    """ReplicaSets: selectable by status.replicas, as upstream."""

    info = apps("replicasets")
    extra_fields = ("status.replicas",)


class DaemonSetStrategy(_WorkloadStrategy):
    """DaemonSets: no replicas; RollingUpdate maxUnavailable 1 / maxSurge 0, revisionHistoryLimit 10
    (pkg/registry/apps/daemonset, SetDefaults_DaemonSet)."""

    info = ResourceInfo(resources.for_name("daemonsets"), "daemonsets", ("all",),
                        {"status": ("DaemonSet", "apps", "v1", STATUS_VERBS)})
    has_replicas = False

    def default(self, obj: dict) -> None:
        """Template defaults plus updateStrategy RollingUpdate (maxUnavailable 1, maxSurge 0) and
        revisionHistoryLimit 10; mutates ``obj``."""
        super().default(obj)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        us = spec.setdefault("updateStrategy", {})
        if isinstance(us, dict):
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                ru = us.setdefault("rollingUpdate", {})
                ru.setdefault("maxUnavailable", 1)
                ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)

    def validate(self, obj: dict) -> list:
        """Workload checks plus the updateStrategy type (RollingUpdate or OnDelete)."""
        out = super().validate(obj)
        us = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
        if us not in ("RollingUpdate", "OnDelete"):
            out.append(not_supported("spec.updateStrategy.type", us, ["OnDelete", "RollingUpdate"]))
        return out


STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
STS_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                 "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                 "'minReadySeconds' are forbidden")


class StatefulSetStrategy(_WorkloadStrategy):
    """StatefulSets: OrderedReady, RollingUpdate partition 0, PVC retention Retain; most of the spec is
    immutable (pkg/registry/apps/statefulset, ValidateStatefulSetUpdate)."""

    info = apps("statefulsets")

    def default(self, obj: dict) -> None:
        """Workload defaults plus podManagementPolicy OrderedReady, updateStrategy RollingUpdate partition 0,
        revisionHistoryLimit 10, persistentVolumeClaimRetentionPolicy Retain/Retain; mutates ``obj``."""
        super().default(obj)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {})
        if isinstance(us, dict):
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})

    def validate(self, obj: dict) -> list:
        """Workload checks plus podManagementPolicy and updateStrategy type."""
        out = super().validate(obj)
        spec = obj.get("spec") or {}
        pmp = spec.get("podManagementPolicy", "OrderedReady")
        if pmp not in ("OrderedReady", "Parallel"):
            out.append(not_supported("spec.podManagementPolicy", pmp, ["OrderedReady", "Parallel"]))
        us = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if us not in ("RollingUpdate", "OnDelete"):
            out.append(not_supported("spec.updateStrategy.type", us, ["OnDelete", "RollingUpdate"]))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus: only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
        persistentVolumeClaimRetentionPolicy and minReadySeconds may change."""
        out = self.validate(new)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        if {k: v for k, v in ns.items() if k not in STS_MUTABLE} != \
                {k: v for k, v in os_.items() if k not in STS_MUTABLE}:
            out.append(forbidden_field("spec", STS_FORBIDDEN))
        return out


class LeaseStrategy(Strategy):
    """coordination.k8s.io/v1 Leases (leader election, node heartbeats); PUT may create."""

    info = ResourceInfo(resources.for_name("leases"), "leases")
    has_status = False
    allow_create_on_update = True
