"""The default RBAC policy: ClusterRoles and ClusterRoleBindings every cluster starts with.

Mirrors plugin/pkg/auth/authorizer/rbac/bootstrappolicy (``ClusterRoles``,
``ClusterRoleBindings``, ``NodeRules``) and the ``rbac/bootstrap-roles``
post-start hook that writes them: missing objects are created, and existing
ones annotated ``rbac.authorization.kubernetes.io/autoupdate: "true"`` get
their rules / subjects reconciled back to the defaults; an object whose
annotation a cluster admin set to "false" is left as it is.

Subset kept: cluster-admin, admin, edit, view (written flat: role
aggregation is not resolved by our RBAC), system:basic-user,
system:discovery, system:public-info-viewer, system:monitoring (/metrics),
system:service-account-issuer-discovery, system:auth-delegator,
system:node (bound to nobody: nodes get it through the Node authorizer, as
upstream), system:node-proxier, system:node-bootstrapper and the
certificatesigningrequests:nodeclient / :selfnodeclient roles (bound by
``kubeling token create`` as kubeadm binds them),
system:kube-scheduler, system:kube-controller-manager (one identity: the
union of what upstream's per-controller roles grant, since kubeling's
controller-manager does not use service-account credentials), system:kube-dns.
"""
from __future__ import annotations

import logging

from apiserver import errors

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def rule(verbs, groups=None, resources=None, *, names=None, urls=None) -> dict:
    """A PolicyRule dict (rbacv1helpers.NewRule(...).Groups(...).Resources(...))."""
    out: dict = {"verbs": list(verbs)}
    if urls is not None:
        out["nonResourceURLs"] = list(urls)
        return out
    out["apiGroups"] = list(groups)
    out["resources"] = list(resources)
    if names:
        out["resourceNames"] = list(names)
    return out


def _meta(name: str) -> dict:
    return {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"}}


def cluster_role(name: str, rules: list[dict]) -> dict:
    """A ClusterRole object with the bootstrapping label and autoupdate annotation."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(name), "rules": rules}


def binding(name: str, role: str, *subjects: tuple[str, str] | tuple[str, str, str]) -> dict:
    """A ClusterRoleBinding of ClusterRole ``role`` to ``(kind, name[, namespace])`` subjects."""
    subs = []
    for s in subjects:
        d = {"kind": s[0], "name": s[1]}
        if s[0] == "ServiceAccount":
            d["namespace"] = s[2]
        else:
            d["apiGroup"] = GROUP
        subs.append(d)
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subs}


def node_rules() -> list[dict]:
    """The rules of ``system:node`` (upstream's NodeRules): what every kubelet may do, before the Node
    authorizer narrows secrets, configmaps, PVCs and tokens to its own pods' and NodeRestriction
    admission narrows writes to its own node and pods."""
    return [
        rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews", "localsubjectaccessreviews"]),
        rule(READ, [""], ["services"]),
        rule(["create", "get", "list", "watch"], [""], ["nodes"]),
        rule(["update", "patch"], [""], ["nodes/status"]),
        rule(["update", "patch"], [""], ["nodes"]),
        rule(["create", "update", "patch"], [""], ["events"]),
        rule(["create", "update", "patch"], ["events.k8s.io"], ["events"]),
        rule(READ, [""], ["pods"]),
        rule(["create", "delete"], [""], ["pods"]),
        rule(["update", "patch"], [""], ["pods/status"]),
        rule(["create"], [""], ["pods/eviction"]),
        rule(READ, [""], ["secrets", "configmaps"]),
        rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
        rule(["get", "update", "patch"], [""], ["persistentvolumeclaims/status"]),
        rule(["get"], [""], ["endpoints"]),
        rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
        rule(["get", "create", "update", "patch", "delete"], ["coordination.k8s.io"], ["leases"]),
        rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
        rule(["create"], [""], ["serviceaccounts/token"]),
        rule(READ, ["node.k8s.io"], ["runtimeclasses"]),
    ]


def _view_rules() -> list[dict]:
    return [
        rule(READ, [""], ["pods", "pods/status", "pods/log", "configmaps", "endpoints", "persistentvolumeclaims",
                          "persistentvolumeclaims/status", "replicationcontrollers", "replicationcontrollers/scale",
                          "replicationcontrollers/status", "serviceaccounts", "services", "services/status",
                          "bindings", "events", "limitranges", "namespaces/status", "resourcequotas",
                          "resourcequotas/status"]),
        rule(READ, [""], ["namespaces"]),
        rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
        rule(READ, ["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                              "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                              "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"]),
        rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
        rule(READ, ["events.k8s.io"], ["events"]),
        rule(["get", "list"], ["metrics.k8s.io"], ["pods", "nodes"]),
    ]


def _edit_rules() -> list[dict]:
    return _view_rules() + [
        rule(["impersonate"], [""], ["serviceaccounts"]),
        rule(["create", "delete", "deletecollection", "patch", "update", "get", "list", "watch"], [""],
             ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        rule(["create"], [""], ["pods/eviction"]),
        rule(WRITE + READ, [""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                                  "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                                  "services/proxy"]),
        rule(["create"], [""], ["serviceaccounts/token"]),
        rule(WRITE, ["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                               "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"]),
        rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
        rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
        rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
        rule(WRITE, ["coordination.k8s.io"], ["leases"]),
        rule(READ, ["coordination.k8s.io"], ["leases"]),
    ]


def _admin_rules() -> list[dict]:
    return _edit_rules() + [
        rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        rule(WRITE + READ, [GROUP], ["rolebindings", "roles"]),
    ]


def _scheduler_rules() -> list[dict]:
    return [
        rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        rule(["create"], ["coordination.k8s.io"], ["leases"]),
        rule(["get", "update"], ["coordination.k8s.io"], ["leases"], names=["kube-scheduler"]),
        rule(["create"], [""], ["endpoints"]),
        rule(["get", "update"], [""], ["endpoints"], names=["kube-scheduler"]),
        rule(READ, [""], ["nodes"]),
        rule(["delete", "get", "list", "watch"], [""], ["pods"]),
        rule(["create"], [""], ["bindings", "pods/binding"]),
        rule(["patch", "update"], [""], ["pods/status"]),
        rule(READ, [""], ["replicationcontrollers", "services"]),
        rule(READ, ["apps"], ["replicasets", "statefulsets"]),
        rule(READ, ["policy"], ["poddisruptionbudgets"]),
        rule(READ, [""], ["persistentvolumeclaims", "persistentvolumes"]),
        rule(READ, ["storage.k8s.io"], ["csinodes", "csidrivers", "csistoragecapacities", "storageclasses"]),
        rule(READ, [""], ["namespaces"]),
    ]


def _controller_manager_rules() -> list[dict]:
    # Upstream's system:kube-controller-manager plus the union of its per-controller roles
    # (namespace-controller and garbage-collector read, update and delete everything).
    return [
        rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        rule(["create"], ["coordination.k8s.io"], ["leases"]),
        rule(["get", "update"], ["coordination.k8s.io"], ["leases"], names=["kube-controller-manager"]),
        rule(["get", "list", "watch", "update", "patch", "delete", "deletecollection"], ["*"], ["*"]),
        rule(["create"], [""], ["pods", "endpoints", "serviceaccounts", "secrets", "configmaps", "events",
                                "replicationcontrollers", "pods/eviction", "serviceaccounts/token",
                                "resourcequotas", "limitranges"]),
        rule(["create"], ["apps"], ["replicasets", "controllerrevisions"]),
        rule(["create"], ["batch"], ["jobs"]),
        rule(["create"], ["discovery.k8s.io"], ["endpointslices"]),
        rule(["create", "get", "list", "watch", "update", "patch", "delete"], ["coordination.k8s.io"], ["leases"]),
        # upstream's system:controller:certificate-controller: what csrapproving and csrsigning do
        rule(["approve"], ["certificates.k8s.io"], ["signers"], names=["kubernetes.io/kube-apiserver-client-kubelet"]),
        rule(["sign"], ["certificates.k8s.io"], ["signers"], names=[
            "kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving"]),
    ]


def cluster_roles() -> list[dict]:
    """The default ClusterRoles (bootstrappolicy.ClusterRoles subset)."""
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), rule(["*"], urls=["*"])]),
        cluster_role("admin", _admin_rules()),
        cluster_role("edit", _edit_rules()),
        cluster_role("view", _view_rules()),
        cluster_role("system:discovery", [rule(["get"], urls=[
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
            "/version", "/version/"])]),
        cluster_role("system:monitoring", [rule(["get"], urls=[
            "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"])]),
        cluster_role("system:public-info-viewer", [rule(["get"], urls=[
            "/healthz", "/livez", "/readyz", "/version", "/version/"])]),
        cluster_role("system:basic-user", [
            rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"])]),
        cluster_role("system:service-account-issuer-discovery", [rule(["get"], urls=[
            "/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks",
            "/openid/v1/jwks/"])]),
        cluster_role("system:auth-delegator", [
            rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"])]),
        cluster_role("system:node", node_rules()),
        cluster_role("system:node-proxier", [
            rule(READ, [""], ["endpoints", "services"]),
            rule(READ, [""], ["nodes"]),
            rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
            rule(READ, ["discovery.k8s.io"], ["endpointslices"])]),
        cluster_role("system:node-bootstrapper", [
            rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"])]),
        # What the csrapproving controller's SubjectAccessReview asks for: the requester may have a
        # node client certificate auto-approved for a new node (bootstrap) or for itself (renewal).
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", [
            rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"])]),
        cluster_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", [
            rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"])]),
        cluster_role("system:kube-scheduler", _scheduler_rules()),
        cluster_role("system:kube-controller-manager", _controller_manager_rules()),
        # Upstream's system:kube-dns reads services and endpoints; kubeling's DNS also reads
        # EndpointSlices (as CoreDNS does) and registers its own kube-dns Service and endpoints.
        cluster_role("system:kube-dns", [
            rule(["list", "watch"], [""], ["endpoints", "services"]),
            rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
            rule(["create"], [""], ["services", "endpoints"]),
            rule(["create"], ["discovery.k8s.io"], ["endpointslices"]),
            rule(["get", "update", "patch"], [""], ["services", "endpoints"], names=["kube-dns"]),
            rule(["get", "update", "patch"], ["discovery.k8s.io"], ["endpointslices"],
                 names=["kube-dns-kubeling"])]),
    ]


def cluster_role_bindings() -> list[dict]:
    """The default ClusterRoleBindings (bootstrappolicy.ClusterRoleBindings subset)."""
    return [
        binding("cluster-admin", "cluster-admin", ("Group", "system:masters")),
        binding("system:discovery", "system:discovery", ("Group", "system:authenticated")),
        binding("system:basic-user", "system:basic-user", ("Group", "system:authenticated")),
        binding("system:monitoring", "system:monitoring", ("Group", "system:monitoring")),
        binding("system:public-info-viewer", "system:public-info-viewer", ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated")),
        binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
                ("Group", "system:serviceaccounts")),
        binding("system:node-proxier", "system:node-proxier", ("User", "system:kube-proxy")),
        binding("system:kube-controller-manager", "system:kube-controller-manager",
                ("User", "system:kube-controller-manager")),
        binding("system:kube-scheduler", "system:kube-scheduler", ("User", "system:kube-scheduler")),
        binding("system:kube-dns", "system:kube-dns", ("ServiceAccount", "kube-dns", "kube-system")),
        binding("system:node", "system:node"),  # no subjects: the Node authorizer grants node rules
    ]


def _reconciled(existing: dict, want: dict) -> dict | None:
    """The updated object when ``existing`` is autoupdated and differs from ``want``, else None."""
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if annotations.get(AUTOUPDATE, "true") != "true":
        return None
    fields = ("rules",) if want["kind"] == "ClusterRole" else ("subjects",)
    if all(existing.get(f) == want.get(f) for f in fields):
        return None
    out = {**existing}
    for f in fields:
        out[f] = want.get(f)
    return out


async def ensure(stores: dict, *, user) -> None:
    """The post-start hook: create the default ClusterRoles then ClusterRoleBindings, reconcile autoupdated
    ones. ``stores`` maps "clusterroles" / "clusterrolebindings" to the apiserver Stores; ``user`` is the
    UserInfo the writes are admitted as. Raises what the stores raise except AlreadyExists."""
    for resource, objects in (("clusterroles", cluster_roles()), ("clusterrolebindings", cluster_role_bindings())):
        store = stores[resource]
        for want in objects:
            name = want["metadata"]["name"]
            try:
                await store.create(None, want, user=user)
                continue
            except errors.StatusError as e:
                if e.code != 409:
                    raise
            existing = await store.get(None, name)
            updated = _reconciled(existing, want)
            if updated is not None:
                log.info("reconciling %s %s to the default policy", resource, name)
                await store.update(None, name, updated, user=user)
