"""Strategies of rbac.authorization.k8s.io/v1 Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.

Mirrors kube-apiserver's ``pkg/registry/rbac/{role,clusterrole,rolebinding,
clusterrolebinding}`` with ``pkg/apis/rbac/validation`` and the v1 defaults
(roleRef.apiGroup and User/Group subjects' apiGroup default to
rbac.authorization.k8s.io). Objects are stored and served; enforcement by
an RBAC authorizer comes later. Names are path segments (``system:node``
is valid), as ValidateRBACName.
"""
from __future__ import annotations

from apiserver.errors import Cause
from apiserver.registry.rest import ResourceInfo, Strategy, invalid_value, not_supported, required, validate_name
from kubeling.api import resources

GROUP = "rbac.authorization.k8s.io"


def _required(path: str, detail: str) -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}", path)


def validate_rules(rules, path: str, *, namespaced: bool) -> list:
    """Causes for PolicyRules at ``path`` (as ValidatePolicyRule)."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [invalid_value(path, str(rules), "must be a list")]
    out = []
    for i, rule in enumerate(rules):
        rp = f"{path}[{i}]"
        if not isinstance(rule, dict):
            out.append(invalid_value(rp, str(rule), "must be an object"))
            continue
        if not rule.get("verbs"):
            out.append(_required(f"{rp}.verbs", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                out.append(invalid_value(f"{rp}.nonResourceURLs", urls,
                                         "namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                out.append(invalid_value(f"{rp}.nonResourceURLs", urls,
                                         "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            out.append(_required(f"{rp}.apiGroups", "resource rules must supply at least one api group"))
        if not rule.get("resources"):
            out.append(_required(f"{rp}.resources", "resource rules must supply at least one resource"))
    return out


class RoleStrategy(Strategy):
    """Roles: namespaced PolicyRules."""

    info = ResourceInfo(resources.for_kind(f"{GROUP}/v1", "Role"), "roles")
    has_status = False
    name_kind = "path"

    def validate(self, obj: dict) -> list:
        """Causes of invalid ``rules``."""
        return validate_rules(obj.get("rules"), "rules", namespaced=self.info.namespaced)


class ClusterRoleStrategy(RoleStrategy):
    """ClusterRoles: cluster-wide rules (nonResourceURLs allowed), optional aggregationRule."""

    info = ResourceInfo(resources.for_kind(f"{GROUP}/v1", "ClusterRole"), "clusterroles")

    def validate(self, obj: dict) -> list:
        """Rules as Roles plus: an aggregationRule needs at least one clusterRoleSelector."""
        out = super().validate(obj)
        agg = obj.get("aggregationRule")
        if agg is not None and not (isinstance(agg, dict) and agg.get("clusterRoleSelectors")):
            out.append(_required("aggregationRule.clusterRoleSelectors",
                                 "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        return out


class RoleBindingStrategy(Strategy):
    """RoleBindings: roleRef (immutable) to a Role or ClusterRole, subjects ServiceAccount/User/Group."""

    info = ResourceInfo(resources.for_kind(f"{GROUP}/v1", "RoleBinding"), "rolebindings")
    has_status = False
    name_kind = "path"
    role_kinds = ("Role", "ClusterRole")

    def default(self, obj: dict) -> None:
        """Default roleRef.apiGroup and User/Group subjects' apiGroup to rbac.authorization.k8s.io."""
        ref = obj.get("roleRef")
        if isinstance(ref, dict) and not ref.get("apiGroup"):
            ref["apiGroup"] = GROUP
        for s in obj.get("subjects") or []:
            if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
                s["apiGroup"] = GROUP

    def validate(self, obj: dict) -> list:
        """Causes for roleRef (apiGroup, kind, name) and each subject (as ValidateRoleBindingSubject)."""
        out = []
        ref = obj.get("roleRef")
        if not isinstance(ref, dict):
            return [required("roleRef")]
        if ref.get("apiGroup") and ref["apiGroup"] != GROUP:
            out.append(not_supported("roleRef.apiGroup", ref["apiGroup"], [GROUP]))
        if ref.get("kind") not in self.role_kinds:
            out.append(not_supported("roleRef.kind", ref.get("kind", ""), list(self.role_kinds)))
        if not ref.get("name"):
            out.append(required("roleRef.name"))
        else:
            out += validate_name("roleRef.name", ref["name"], "path")
        subjects = obj.get("subjects") or []
        if not isinstance(subjects, list):
            return out + [invalid_value("subjects", str(subjects), "must be a list")]
        for i, s in enumerate(subjects):
            sp = f"subjects[{i}]"
            if not isinstance(s, dict):
                out.append(invalid_value(sp, str(s), "must be an object"))
                continue
            if not s.get("name"):
                out.append(required(f"{sp}.name"))
            kind = s.get("kind")
            if kind == "ServiceAccount":
                if s.get("name"):
                    out += validate_name(f"{sp}.name", s["name"])
                if s.get("apiGroup"):
                    out.append(not_supported(f"{sp}.apiGroup", s["apiGroup"], [""]))
                if not self.info.namespaced and not s.get("namespace"):
                    out.append(required(f"{sp}.namespace"))
            elif kind in ("User", "Group"):
                if s.get("apiGroup") != GROUP:
                    out.append(not_supported(f"{sp}.apiGroup", s.get("apiGroup", ""), [GROUP]))
            else:
                out.append(not_supported(f"{sp}.kind", kind or "", ["ServiceAccount", "User", "Group"]))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus: roleRef may not change ("cannot change roleRef")."""
        out = self.validate(new)
        if new.get("roleRef") != old.get("roleRef"):
            out.append(invalid_value("roleRef", str(new.get("roleRef")), "cannot change roleRef"))
        return out


class ClusterRoleBindingStrategy(RoleBindingStrategy):
    """ClusterRoleBindings: roleRef to a ClusterRole only; ServiceAccount subjects need a namespace."""

    info = ResourceInfo(resources.for_kind(f"{GROUP}/v1", "ClusterRoleBinding"), "clusterrolebindings")
    role_kinds = ("ClusterRole",)
