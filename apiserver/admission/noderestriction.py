"""The NodeRestriction admission plugin: a kubelet may modify only its own Node and the pods bound to it.

Mirrors plugin/pkg/admission/noderestriction for the requests a kubelet
makes, identified by the user ``system:node:<name>`` in group
``system:nodes``:

- pods: create only mirror pods bound to itself, delete only pods with
  ``spec.nodeName`` set to itself, no other update; pods/status and
  pods/eviction only for pods bound to itself;
- nodes (and nodes/status): only its own Node object, and no change of its
  taints on update (the node lifecycle controller owns them).

Not done: upstream's restricted ``node-restriction.kubernetes.io/`` labels,
and the checks on leases, CSINodes, ResourceSlices and service-account
tokens requested by a node.

Requests of other users pass untouched. Messages are upstream's.
"""
from __future__ import annotations

from apiserver.authn import UserInfo
from apiserver.admission import Attributes, forbidden, resource_name

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


def node_name_of(user: UserInfo) -> str | None:
    """The node a user acts for (``system:node:NAME`` in ``system:nodes``), or None (NodeIdentifier)."""
    name = user.name
    if NODES_GROUP not in user.groups or not name.startswith(NODE_USER_PREFIX):
        return None
    return name[len(NODE_USER_PREFIX):] or None


def _node_name_of_pod(pod: dict | None) -> str:
    return ((pod or {}).get("spec") or {}).get("nodeName") or ""


class NodeRestriction:
    """Admission plugin limiting what node identities may write."""

    name = "NodeRestriction"

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Refuse a node's writes to pods and nodes that are not its own."""
        node = node_name_of(attrs.user)
        if node is None:
            return
        resource = resource_name(attrs)
        if resource == "pods":
            self._admit_pod(attrs, node, obj, old)
        elif resource == "nodes":
            self._admit_node(attrs, node, obj, old)

    def _admit_pod(self, attrs: Attributes, node: str, obj: dict | None, old: dict | None) -> None:
        sub, op = attrs.subresource, attrs.operation
        if sub == "status":
            if op != "update":
                raise forbidden(attrs, f'unexpected operation "{op.upper()}"')
            if _node_name_of_pod(old) != node:
                raise forbidden(attrs, f'node "{node}" can only update pod status for pods with spec.nodeName '
                                       f"set to itself")
            return
        if sub == "eviction":
            if _node_name_of_pod(old or obj) != node:
                raise forbidden(attrs, f'node "{node}" can only evict pods with spec.nodeName set to itself')
            return
        if sub:
            return
        if op == "create":
            annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
            if MIRROR_POD_ANNOTATION not in annotations:
                raise forbidden(attrs, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" '
                                       f"can only create mirror pods")
            if _node_name_of_pod(obj) != node:
                raise forbidden(attrs, f'node "{node}" can only create pods with spec.nodeName set to itself')
        elif op == "delete":
            if _node_name_of_pod(old) != node:
                raise forbidden(attrs, f'node "{node}" can only delete pods with spec.nodeName set to itself')
        else:
            raise forbidden(attrs, f'unexpected operation "{op.upper()}", node "{node}" can only create and delete '
                                   f"mirror pods")

    def _admit_node(self, attrs: Attributes, node: str, obj: dict | None, old: dict | None) -> None:
        if attrs.name != node:
            raise forbidden(attrs, f'node "{node}" is not allowed to modify node "{attrs.name}"')
        if attrs.operation == "update" and obj is not None and old is not None and not attrs.subresource:
            if ((obj.get("spec") or {}).get("taints") or []) != ((old.get("spec") or {}).get("taints") or []):
                raise forbidden(attrs, f'node "{node}" is not allowed to modify taints')

