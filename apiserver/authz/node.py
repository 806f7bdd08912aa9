"""The Node authorizer: a kubelet may read only what the pods bound to its node use.

Mirrors plugin/pkg/auth/authorizer/node (``NodeAuthorizer`` over the
``Graph`` of pod -> secret / configmap / PVC / serviceaccount -> node edges):
a user ``system:node:NAME`` in group ``system:nodes`` may get a Secret,
ConfigMap or PersistentVolumeClaim only when a pod bound to NAME
(``spec.nodeName``) references it, may create a token for a ServiceAccount
only when such a pod runs as it, and may read and write its own Lease in
kube-node-lease. Every other request is checked against the rules of the
``system:node`` ClusterRole (bootstrappolicy.node_rules: pods, nodes,
events, services ...), which upstream also applies inside this authorizer
rather than through a binding; which pod and node objects a kubelet may
write is NodeRestriction admission's job.

The graph is derived from the pods watch cache; it is recomputed for the
pods whose cached object changed since the last request (by identity), so a
request costs a dict walk, not a rebuild.
"""
from __future__ import annotations

from typing import Callable, Iterable

from apiserver.authn import UserInfo, node_name
from apiserver.authz import RequestAttributes
from apiserver.authz.rbac import rule_allows
from apiserver.bootstrappolicy import node_rules

LEASE_NAMESPACE = "kube-node-lease"



def pod_references(pod: dict) -> set[tuple[str, str]]:
    """``(resource, name)`` of what a pod uses: secrets, configmaps, persistentvolumeclaims (volumes,
    projected sources, env and envFrom of every container, imagePullSecrets) and its serviceaccount."""
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(spec, dict):
        return set()
    refs: set[tuple[str, str]] = set()

    def add(resource: str, name) -> None:
        if isinstance(name, str) and name:
            refs.add((resource, name))

    add("serviceaccounts", spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    for s in spec.get("imagePullSecrets") or ():
        if isinstance(s, dict):
            add("secrets", s.get("name"))
    for v in spec.get("volumes") or ():
        if not isinstance(v, dict):
            continue
        if isinstance(v.get("secret"), dict):
            add("secrets", v["secret"].get("secretName"))
        if isinstance(v.get("configMap"), dict):
            add("configmaps", v["configMap"].get("name"))
        if isinstance(v.get("persistentVolumeClaim"), dict):
            add("persistentvolumeclaims", v["persistentVolumeClaim"].get("claimName"))
        for src in (v.get("projected") or {}).get("sources") or () if isinstance(v.get("projected"), dict) else ():
            if isinstance(src, dict):
                if isinstance(src.get("secret"), dict):
                    add("secrets", src["secret"].get("name"))
                if isinstance(src.get("configMap"), dict):
                    add("configmaps", src["configMap"].get("name"))
        for key in ("cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos", "azureFile"):
            if isinstance(v.get(key), dict) and isinstance(v[key].get("secretRef"), dict):
                add("secrets", v[key]["secretRef"].get("name"))
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or ():
            if not isinstance(c, dict):
                continue
            for ef in c.get("envFrom") or ():
                if isinstance(ef, dict):
                    if isinstance(ef.get("secretRef"), dict):
                        add("secrets", ef["secretRef"].get("name"))
                    if isinstance(ef.get("configMapRef"), dict):
                        add("configmaps", ef["configMapRef"].get("name"))
            for e in c.get("env") or ():
                vf = e.get("valueFrom") if isinstance(e, dict) else None
                if isinstance(vf, dict):
                    if isinstance(vf.get("secretKeyRef"), dict):
                        add("secrets", vf["secretKeyRef"].get("name"))
                    if isinstance(vf.get("configMapKeyRef"), dict):
                        add("configmaps", vf["configMapKeyRef"].get("name"))
    return refs


class Graph:
    """(namespace, resource, name) -> the nodes whose bound pods reference it (the node authorizer's graph).

    ``pods`` returns the current ``{key: pod}`` mapping (the pods watch
    cache's items); ``refresh()`` folds in what changed since the last call,
    and does nothing while ``revision()`` (the cache's revision) is unchanged.
    """

    def __init__(self, pods: Callable[[], dict], *, revision: Callable[[], int] | None = None):
        self.pods = pods
        self.revision = revision  # the pods cache's revision: unchanged -> nothing to fold in
        self._revision: int | None = None
        # key -> (the pod object itself, not its id: ids are reused; node; namespace; references)
        self._seen: dict[str, tuple[dict, str | None, str, frozenset]] = {}
        self.edges: dict[tuple[str, str, str], dict[str, int]] = {}

    def _link(self, node: str, ns: str, refs: Iterable, delta: int) -> None:
        for resource, name in refs:
            k = (ns, resource, name)
            counts = self.edges.setdefault(k, {})
            counts[node] = counts.get(node, 0) + delta
            if counts[node] <= 0:
                del counts[node]
                if not counts:
                    del self.edges[k]

    def refresh(self) -> None:
        """Bring the edges up to date with the pods (only changed or removed pods are recomputed)."""
        if self.revision is not None:
            rev = self.revision()
            if rev == self._revision:
                return
            self._revision = rev
        current = self.pods()
        for key in [k for k in self._seen if k not in current]:
            _, node, ns, refs = self._seen.pop(key)
            if node:
                self._link(node, ns, refs, -1)
        for key, pod in list(current.items()):
            seen = self._seen.get(key)
            if seen is not None and seen[0] is pod:
                continue
            if seen is not None and seen[1]:
                self._link(seen[1], seen[2], seen[3], -1)
            spec = pod.get("spec") if isinstance(pod, dict) else None
            node = spec.get("nodeName") if isinstance(spec, dict) else None
            ns = (pod.get("metadata") or {}).get("namespace", "")
            refs = frozenset(pod_references(pod)) if node else frozenset()
            self._seen[key] = (pod, node or None, ns, refs)
            if node:
                self._link(node, ns, refs, +1)

    def has_edge(self, node: str, namespace: str, resource: str, name: str) -> bool:
        """Whether a pod bound to ``node`` references ``namespace/resource/name``."""
        self.refresh()
        return node in self.edges.get((namespace, resource, name), {})


class NodeAuthorizer:
    """``--authorization-mode=Node``: the graph-limited reads of kubelets (see module docstring)."""

    READ_VERBS = ("get", "list", "watch")

    def __init__(self, graph: Graph, *, rules: list[dict] | None = None):
        self.graph = graph
        self.rules = node_rules() if rules is None else rules

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """Allow a node's graph-connected reads, token creation and own Lease; no opinion otherwise."""
        node = node_name(user)
        if node is None:
            return False, ""
        if not attrs.resource_request:
            return any(rule_allows(attrs, r) for r in self.rules), ""
        r, g = attrs.resource, attrs.group
        if g == "" and r in ("secrets", "configmaps", "persistentvolumeclaims"):
            if attrs.verb not in self.READ_VERBS:
                return False, "can only read resources of this type"
            if attrs.subresource:
                return False, "cannot read subresource"
            if not attrs.namespace:
                return False, "can only read namespaced object of this type"
            return self._related(node, attrs)
        if g == "" and r == "serviceaccounts" and attrs.subresource == "token":
            if attrs.verb != "create":
                return False, "can only create tokens for individual service accounts"
            return self._related(node, attrs)
        if g == "coordination.k8s.io" and r == "leases":
            if attrs.verb not in ("get", "create", "update", "patch", "delete"):
                return False, "can only get, create, update, patch, or delete a node lease"
            if attrs.namespace != LEASE_NAMESPACE:
                return False, f"can only access leases in the {LEASE_NAMESPACE} system namespace"
            if attrs.verb != "create" and attrs.name != node:
                return False, "can only access node lease with the same name as the requesting node"
            return True, ""
        if any(rule_allows(attrs, r) for r in self.rules):
            return True, ""
        return False, ""

    def _related(self, node: str, attrs: RequestAttributes) -> tuple[bool, str]:
        if not attrs.name:
            return False, "No Object name found"
        if self.graph.has_edge(node, attrs.namespace or "", attrs.resource, attrs.name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"
