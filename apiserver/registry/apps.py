"""Strategies of apps/v1 Deployments and ReplicaSets (and their autoscaling/v1 Scale), and coordination.k8s.io/v1 Leases.

Mirrors kube-apiserver's ``pkg/registry/apps/{deployment,replicaset}`` and
the defaulting of ``pkg/apis/apps/v1/defaults.go``: replicas 1, RollingUpdate
25%/25%, revisionHistoryLimit 10, progressDeadlineSeconds 600; the selector
must match the template's labels and may not change; a spec change bumps
metadata.generation (what ``kubectl rollout status`` compares with
status.observedGeneration).
"""
from __future__ import annotations

import copy

from apiserver.registry.core import default_pod_spec, validate_pod_spec
from apiserver.registry.rest import (STATUS_VERBS, ResourceInfo, Strategy, immutable, invalid_value,
                                     required, validate_labels)
from kubeling.api import resources, selectors

SCALE_SUB = ("Scale", "autoscaling", "v1", STATUS_VERBS)


def _go_selector(sel: dict) -> str:
    ml = ", ".join(f'"{k}":"{v}"' for k, v in sorted((sel.get("matchLabels") or {}).items()))
    return "v1.LabelSelector{MatchLabels:map[string]string{" + ml + "}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"


class _WorkloadStrategy(Strategy):
    """What Deployments and ReplicaSets share: template defaulting, selector checks, generation, Scale."""

    tracks_generation = True

    def default(self, obj: dict) -> None:
        """Default ``spec.replicas`` to 1 and the pod template's spec as for pods; mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
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
        if not isinstance(replicas, int) or replicas < 0:
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


class LeaseStrategy(Strategy):
    """coordination.k8s.io/v1 Leases (leader election, node heartbeats); PUT may create."""

    info = ResourceInfo(resources.for_name("leases"), "leases")
    has_status = False
    allow_create_on_update = True
