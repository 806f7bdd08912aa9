"""The DefaultTolerationSeconds admission plugin.

Mirrors plugin/pkg/admission/defaulttolerationseconds: every pod created
without its own NoExecute toleration for ``node.kubernetes.io/not-ready`` or
``node.kubernetes.io/unreachable`` gets one with ``tolerationSeconds`` (300 s
by default, kube-apiserver's ``--default-not-ready-toleration-seconds`` and
``--default-unreachable-toleration-seconds``), so that the node lifecycle
controller evicts pods from a dead node five minutes after it was tainted.
"""
from __future__ import annotations

from apiserver.admission import Attributes

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def _tolerates_no_execute(tolerations: list, key: str) -> bool:
    """Some toleration already covers ``key``'s NoExecute taint (by key, or an empty key with Exists)."""
    for t in tolerations:
        if not isinstance(t, dict) or t.get("effect") not in (None, "", "NoExecute"):
            continue
        if t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"):
            return True
    return False


class DefaultTolerationSeconds:
    """Admission plugin adding the default not-ready / unreachable NoExecute tolerations to new pods."""

    name = "DefaultTolerationSeconds"

    def __init__(self, *, not_ready_seconds: int = 300, unreachable_seconds: int = 300):
        self.defaults = ((NOT_READY, not_ready_seconds), (UNREACHABLE, unreachable_seconds))

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """On pod create (not subresources), append the missing default tolerations to ``obj`` in place."""
        if attrs.operation != "create" or attrs.subresource or obj is None \
                or getattr(attrs.resource, "resource", None) != "pods":
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        tolerations = spec.get("tolerations")
        if not isinstance(tolerations, list):
            tolerations = []
        for key, seconds in self.defaults:
            if not _tolerates_no_execute(tolerations, key):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": seconds})
        spec["tolerations"] = tolerations
