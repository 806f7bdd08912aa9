"""Strategy of core/v1 ReplicationControllers (and their autoscaling/v1 Scale).

Mirrors kube-apiserver's ``pkg/registry/core/replicationcontroller`` and
SetDefaults_ReplicationController: the selector (a plain label map, unlike
apps/v1's LabelSelector) and the object's labels default to the template's
labels, replicas to 1; the selector must be non-empty and match the
template; a spec change bumps metadata.generation.
"""
from __future__ import annotations

import copy

from apiserver.registry.core import core, default_pod_spec, validate_pod_spec
from apiserver.registry.rest import STATUS_VERBS, Strategy, invalid_value, required, validate_labels
from kubeling.api import selectors

SCALE_SUB = ("Scale", "autoscaling", "v1", STATUS_VERBS)


def _selector_string(sel) -> str:
    try:
        return str(selectors.selector_from_set(sel)) if isinstance(sel, dict) else ""
    except ValueError:
        return ""


def _matches(sel: dict, labels: dict) -> bool:
    try:
        return selectors.selector_from_set(sel).matches(labels)
    except ValueError:
        return False  # a bad selector key was already reported by validate_labels


class ReplicationControllerStrategy(Strategy):
    """ReplicationControllers: map selectors defaulted from the template, status and scale subresources."""

    info = core("replicationcontrollers", "controllers", categories=("all",),
                subresources={"status": ("ReplicationController", "", "v1", STATUS_VERBS), "scale": SCALE_SUB})
    tracks_generation = True
    default_propagation_policy = "Orphan"

    def default(self, obj: dict) -> None:
        """replicas 1; empty selector and empty object labels take the template's labels; pod template defaults."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        tmpl = spec.get("template")
        if not isinstance(tmpl, dict):
            return
        labels = (tmpl.get("metadata") or {}).get("labels")
        if isinstance(labels, dict) and labels:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            if not obj["metadata"].get("labels"):
                obj["metadata"]["labels"] = dict(labels)
        if isinstance(tmpl.get("spec"), dict):
            default_pod_spec(tmpl["spec"])

    def validate(self, obj: dict) -> list:
        """Causes: replicas < 0, empty selector, missing template, template labels not matching, bad pod spec."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        out = []
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            out.append(invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
        sel = spec.get("selector")
        if not sel:
            out.append(required("spec.selector"))
        elif not isinstance(sel, dict):
            out.append(invalid_value("spec.selector", str(sel), "must be a map of labels"))
            sel = None
        else:
            out += validate_labels("spec.selector", sel)
        tmpl = spec.get("template")
        if not isinstance(tmpl, dict):
            out.append(required("spec.template"))
            return out
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        out += validate_labels("spec.template.metadata.labels", labels)
        if sel and isinstance(labels, dict) and not _matches(sel, labels):
            out.append(invalid_value("spec.template.metadata.labels", labels,
                                     "`selector` does not match template `labels`"))
        out += validate_pod_spec(tmpl.get("spec"), "spec.template.spec", restart_policies=("Always",))
        return out

    def to_scale(self, obj: dict) -> dict:
        """autoscaling/v1 Scale of the controller (selector rendered as ``k=v,...``)."""
        meta = obj["metadata"]
        sel = (obj.get("spec") or {}).get("selector") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp") if k in meta},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": _selector_string(sel)}}

    def from_scale(self, obj: dict, scale: dict) -> dict:
        """``obj`` with spec.replicas taken from ``scale``."""
        out = copy.deepcopy(obj)
        out.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            out["metadata"]["resourceVersion"] = rv
        return out
