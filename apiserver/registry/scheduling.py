"""scheduling.k8s.io/v1 PriorityClasses: the names pods give in spec.priorityClassName.

Mirrors kube-apiserver's pkg/registry/scheduling/priorityclass and
pkg/apis/scheduling/validation: cluster-scoped; ``value`` required and
immutable, at most 1,000,000,000 unless the name is one of the two system
classes; names starting with ``system-`` are reserved for those;
``preemptionPolicy`` defaults to PreemptLowerPriority and is immutable. The
system classes are created at start (upstream's scheduling post-start hook);
the Priority admission plugin (apiserver/admission/priority.py) turns a
pod's class into spec.priority and allows one globalDefault class.
"""
from __future__ import annotations

from apiserver import errors
from apiserver.registry.rest import ResourceInfo, Strategy, forbidden_field, invalid_value, required
from kubeling.api import resources

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
# upstream's SystemPriorityClasses: system-node-critical ranks above system-cluster-critical
SYSTEM_PRIORITY_CLASSES = {
    "system-cluster-critical": (SYSTEM_CRITICAL_PRIORITY,
                                "Used for system critical pods that must run in the cluster, but can be moved "
                                "to another node if necessary."),
    "system-node-critical": (SYSTEM_CRITICAL_PRIORITY + 1000,
                             "Used for system critical pods that must not be moved from their current node."),
}
PREEMPTION_POLICIES = ("PreemptLowerPriority", "Never")


def system_priority_classes() -> list[dict]:
    """The PriorityClass objects the apiserver creates at start."""
    return [{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
             "value": value, "description": desc, "preemptionPolicy": "PreemptLowerPriority"}
            for name, (value, desc) in SYSTEM_PRIORITY_CLASSES.items()]


class PriorityClassStrategy(Strategy):
    """PriorityClasses: value bounds and reserved names, immutable value and preemptionPolicy."""

    info = ResourceInfo(resources.for_name("priorityclasses"), "priorityclasses")
    has_status = False

    def default(self, obj: dict) -> None:
        """preemptionPolicy PreemptLowerPriority when absent (SetDefaults_PriorityClass)."""
        if not obj.get("preemptionPolicy"):
            obj["preemptionPolicy"] = "PreemptLowerPriority"

    def validate(self, obj: dict) -> list:
        """Causes against value, the reserved ``system-`` names, globalDefault and preemptionPolicy
        (ValidatePriorityClass)."""
        out = []
        name = (obj.get("metadata") or {}).get("name") or ""
        value = obj.get("value")
        if value is None:
            out.append(required("value"))
        elif not isinstance(value, int) or isinstance(value, bool) or not -(2 ** 31) <= value < 2 ** 31:
            out.append(invalid_value("value", value, "must be a 32-bit integer"))
        elif name in SYSTEM_PRIORITY_CLASSES:
            if value != SYSTEM_PRIORITY_CLASSES[name][0]:
                out.append(invalid_value("value", value, f"value of {name} must be "
                                                         f"{SYSTEM_PRIORITY_CLASSES[name][0]}"))
        elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
            out.append(invalid_value("value", value, "maximum allowed value of a user defined priority is "
                                                     f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
        if name.startswith("system-") and name not in SYSTEM_PRIORITY_CLASSES:
            out.append(invalid_value("metadata.name", name, "priority class names with 'system-' prefix are "
                                                            "reserved"))
        if not isinstance(obj.get("globalDefault", False), bool):
            out.append(invalid_value("globalDefault", obj.get("globalDefault"), "must be a boolean"))
        if obj.get("preemptionPolicy") not in PREEMPTION_POLICIES:
            out.append(errors.Cause("FieldValueNotSupported", f'Unsupported value: "{obj.get("preemptionPolicy")}": '
                                    f'supported values: "{PREEMPTION_POLICIES[0]}", "{PREEMPTION_POLICIES[1]}"',
                                    "preemptionPolicy"))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus: value and preemptionPolicy may not change (ValidatePriorityClassUpdate)."""
        out = self.validate(new)
        if new.get("value") != old.get("value"):
            out.append(forbidden_field("value", "may not be changed in an update."))
        if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
            out.append(forbidden_field("preemptionPolicy", "may not be changed in an update."))
        return out
