"""The NodeRestriction admission plugin: a kubelet may modify only its own Node and the pods bound to it.

Mirrors plugin/pkg/admission/noderestriction for the requests a kubelet
makes, identified by the user ``system:node:<name>`` in group
``system:nodes``:

- pods: create only mirror pods bound to itself, delete only pods with
  ``spec.nodeName`` set to itself, no other update; pods/status and
  pods/eviction only for pods bound to itself;
- nodes (and nodes/status): only its own Node object, and no change of its
  taints on update (the node lifecycle controller owns them);
- serviceaccounts/token (TokenRequest): only tokens bound to a pod (by uid)
  scheduled on itself.

Not done: upstream's restricted ``node-restriction.kubernetes.io/`` labels,
and the checks on leases, CSINodes and ResourceSlices.

Requests of other users pass untouched. Messages are upstream's.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from apiserver import errors
from apiserver.authn import node_name
from apiserver.admission import Attributes, forbidden, resource_name

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"



def _node_name_of_pod(pod: dict | None) -> str:
    return ((pod or {}).get("spec") or {}).get("nodeName") or ""


class NodeRestriction:
    """Admission plugin limiting what node identities may write; ``get_pod(namespace, name)`` returns a pod
    or None (for the pods that node-requested tokens are bound to)."""

    name = "NodeRestriction"

    def __init__(self, get_pod: Callable[[str, str], Awaitable[dict | None]]):
        self.get_pod = get_pod

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """Refuse a node's writes to pods and nodes that are not its own."""
        node = node_name(attrs.user)
        if node is None:
            return
        resource = resource_name(attrs)
        if resource == "pods":
            self._admit_pod(attrs, node, obj, old)
        elif resource == "nodes":
            self._admit_node(attrs, node, obj, old)
        elif resource == "serviceaccounts" and attrs.subresource == "token" and attrs.operation == "create":
            await self._admit_token_request(attrs, node, obj or {})

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

    async def _admit_token_request(self, attrs: Attributes, node: str, req: dict) -> None:
        """A node's TokenRequest must be bound, by uid, to a pod scheduled on that node (admitServiceAccount)."""
        ref = (req.get("spec") or {}).get("boundObjectRef")
        if not isinstance(ref, dict):
            raise forbidden(attrs, "node requested token not bound to a pod")
        if not ref.get("uid"):
            raise forbidden(attrs, "node requested token with a pod binding without a uid")
        if ref.get("kind") != "Pod":
            raise forbidden(attrs, f"node requested token bound to a {ref.get('kind')}")
        pod = await self.get_pod(attrs.namespace or "", ref.get("name", ""))
        if pod is None:
            raise errors.not_found("pods", ref.get("name", ""))
        if ref["uid"] != (pod.get("metadata") or {}).get("uid"):
            raise forbidden(attrs, f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                                   f"in record. The object might have been deleted and then recreated")
        if _node_name_of_pod(pod) != node:
            raise forbidden(attrs, "node requested token bound to a pod scheduled on a different node")
