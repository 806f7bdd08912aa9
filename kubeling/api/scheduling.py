"""Scheduling helpers shared by the scheduler and the controllers: does a pod tolerate a taint,
does a node match a pod's nodeSelector and required node affinity.

Mirrors k8s.io/component-helpers/scheduling/corev1 (helpers.go
TolerationsTolerateTaint, v1 Toleration.ToleratesTaint, and
nodeaffinity.RequiredNodeAffinity / NodeSelectorTerm matching), which
kube-scheduler's plugins and kube-controller-manager's DaemonSet and taint
eviction controllers use alike.
"""
from __future__ import annotations

from kubeling.api import selectors


def toleration_tolerates(toleration: dict, taint: dict) -> bool:
    """Whether one toleration matches one taint: effect (empty = any), key
    (empty with Exists = any), operator Equal (default) compares values, Exists does not."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates(tolerations: list | None, taint: dict) -> bool:
    """Whether any of ``tolerations`` matches ``taint``."""
    return any(toleration_tolerates(t, taint) for t in tolerations or [])


_OPS = {"In": selectors.IN, "NotIn": selectors.NOT_IN, "Exists": selectors.EXISTS,
        "DoesNotExist": selectors.DOES_NOT_EXIST, "Gt": selectors.GREATER_THAN, "Lt": selectors.LESS_THAN}


def _requirement_matches(expr: dict, labels: dict) -> bool:
    op = _OPS.get(expr.get("operator", ""))
    if op is None:
        return False
    values = tuple(str(v) for v in expr.get("values") or [])
    if op in (selectors.GREATER_THAN, selectors.LESS_THAN):
        if len(values) != 1:
            return False
        try:
            int(values[0])
        except ValueError:
            return False
    return selectors.Requirement(expr.get("key", ""), op, values).matches(labels)


def term_matches(term: dict, node: dict) -> bool:
    """Whether one NodeSelectorTerm matches ``node`` (matchFields knows metadata.name)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = {"metadata.name": (node.get("metadata") or {}).get("name", "")}
    return (all(_requirement_matches(e, labels) for e in exprs)
            and all(_requirement_matches(f, node_fields) for f in fields))


def required_node_affinity_matches(pod: dict, node: dict) -> bool:
    """nodeSelector and required node affinity of ``pod`` both accept ``node``."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t or {}, node) for t in required.get("nodeSelectorTerms") or [])
