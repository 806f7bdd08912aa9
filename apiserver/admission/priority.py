"""The Priority admission plugin: a pod's spec.priorityClassName becomes its spec.priority.

Mirrors plugin/pkg/admission/priority: on pod create the class named in
spec.priorityClassName (else the cluster's globalDefault class, else none:
priority 0) gives spec.priority and spec.preemptionPolicy; a pod naming an
unknown class, or setting a priority that differs from its class's, is
Forbidden. On PriorityClass create/update, at most one class may be
globalDefault.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from apiserver import errors
from apiserver.admission import Attributes

PriorityClassLister = Callable[[], Awaitable[list[dict]]]


class Priority:
    """Admission plugin resolving pod priorities; ``classes()`` lists the PriorityClasses."""

    name = "Priority"

    def __init__(self, classes: PriorityClassLister):
        self.classes = classes

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Mutate a new pod's priority from its class; validate PriorityClass defaults. Raises
        StatusError 403 Forbidden."""
        resource = getattr(attrs.resource, "resource", None)
        if attrs.subresource or obj is None:
            return
        if resource == "pods" and attrs.operation == "create":
            await self._admit_pod(attrs, obj)
        elif resource == "priorityclasses" and attrs.operation in ("create", "update") and obj.get("globalDefault"):
            name = (obj.get("metadata") or {}).get("name", "")
            for pc in await self.classes():
                other = pc["metadata"]["name"]
                if pc.get("globalDefault") and other != name:
                    raise errors.forbidden("priorityclasses", name,
                                           f"PriorityClass {other} is already marked as default. Only one "
                                           "default can exist", group="scheduling.k8s.io")

    async def _admit_pod(self, attrs: Attributes, pod: dict) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        pod_name = (pod.get("metadata") or {}).get("name") or attrs.name
        name = spec.get("priorityClassName") or ""
        classes = await self.classes()
        if name:
            found = next((pc for pc in classes if pc["metadata"]["name"] == name), None)
            if found is None:
                raise errors.forbidden("pods", pod_name,
                                       f"no PriorityClass with name {name} was found")
        else:
            found = next((pc for pc in sorted(classes, key=lambda c: c["metadata"].get("creationTimestamp", ""))
                          if pc.get("globalDefault")), None)
        value = int(found.get("value", 0)) if found is not None else 0
        policy = (found.get("preemptionPolicy") if found is not None else None) or "PreemptLowerPriority"
        if spec.get("priority") is not None and spec["priority"] != value:
            raise errors.forbidden("pods", pod_name,
                                   f"the integer value of priority ({spec['priority']}) must not be provided in "
                                   f"pod spec; priority admission controller computed {value} from the given "
                                   "PriorityClass name")
        spec["priority"] = value
        if found is not None:
            spec["priorityClassName"] = found["metadata"]["name"]
            spec["preemptionPolicy"] = policy
