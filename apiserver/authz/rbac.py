"""The RBAC authorizer: Roles, ClusterRoles and their bindings decide what a user may do.

Mirrors plugin/pkg/auth/authorizer/rbac (``RBACAuthorizer``, ``RuleAllows``,
``VerbMatches`` / ``APIGroupMatches`` / ``ResourceMatches`` /
``ResourceNameMatches`` / ``NonResourceURLMatches``) and
pkg/registry/rbac/validation's ``DefaultRuleResolver`` (ClusterRoleBindings
first, then the RoleBindings of the request's namespace; a binding's subject
applies by User name, Group membership or ServiceAccount identity).

The policy comes from the apiserver's watch caches (``CachedPolicy``), so a
new RoleBinding is enforced as soon as the cache has seen it. Bindings are
indexed by subject (user, group, ServiceAccount) and the index is rebuilt
only when a binding cache's revision moves, so a request looks at the few
bindings naming its user instead of all of them. A ClusterRole with an
aggregationRule gets the rules of the ClusterRoles its selectors match, as
upstream's aggregation controller would have written them.
RBAC never denies: a request no rule allows gets "no opinion", and the next
authorizer (or the 403) decides.
"""
from __future__ import annotations

from typing import Iterable, Protocol

from apiserver.authn import UserInfo
from apiserver.authn.serviceaccount import SA_PREFIX
from apiserver.authz import RequestAttributes
from kubeling.api.selectors import label_selector_from_object

GROUP = "rbac.authorization.k8s.io"


# ---------------------------------------------------------------- rule matching (rbac/validation)


def verb_matches(rule: dict, verb: str) -> bool:
    """A rule's verbs hold ``verb`` or ``*``."""
    verbs = rule.get("verbs") or ()
    return "*" in verbs or verb in verbs


def api_group_matches(rule: dict, group: str) -> bool:
    """A rule's apiGroups hold ``group`` (``""`` is the core group) or ``*``."""
    groups = rule.get("apiGroups") or ()
    return "*" in groups or group in groups


def resource_matches(rule: dict, combined: str, subresource: str | None) -> bool:
    """A rule's resources hold ``*``, the combined ``pods/log`` form, or ``*/log`` for any resource's subresource."""
    for r in rule.get("resources") or ():
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: dict, name: str | None) -> bool:
    """No resourceNames means every name; otherwise the request must name one of them (so list/create,
    which carry no name, never match a rule with resourceNames)."""
    names = rule.get("resourceNames") or ()
    return not names or (bool(name) and name in names)


def non_resource_url_matches(rule: dict, path: str) -> bool:
    """A rule's nonResourceURLs hold ``*``, ``path`` itself, or a ``prefix*`` that ``path`` starts with."""
    for u in rule.get("nonResourceURLs") or ():
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(attrs: RequestAttributes, rule: dict) -> bool:
    """Whether one PolicyRule allows ``attrs`` (resource or non-resource request)."""
    if not isinstance(rule, dict) or not verb_matches(rule, attrs.verb):
        return False
    if attrs.resource_request:
        combined = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        return api_group_matches(rule, attrs.group) and resource_matches(rule, combined, attrs.subresource) \
            and resource_name_matches(rule, attrs.name)
    return non_resource_url_matches(rule, attrs.path)


def applies_to(subject: dict, user: UserInfo, binding_namespace: str) -> bool:
    """Whether one binding subject names ``user`` (appliesToUser): User by name, Group by membership,
    ServiceAccount as ``system:serviceaccount:NS:NAME`` (NS defaults to the binding's namespace)."""
    if not isinstance(subject, dict):
        return False
    kind = subject.get("kind")
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return bool(ns) and user.name == f"{SA_PREFIX}{ns}:{subject.get('name')}"
    return False


def _subject_key(subject, binding_namespace: str) -> tuple[str, str] | None:
    """The index key of a binding subject: ("User", name) or ("Group", name); a ServiceAccount is the
    User ``system:serviceaccount:NS:NAME`` (as applies_to decides); None for a subject that names nobody."""
    if not isinstance(subject, dict) or not isinstance(subject.get("name"), str):
        return None
    kind, name = subject.get("kind"), subject["name"]
    if kind in ("User", "Group"):
        return kind, name
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return ("User", f"{SA_PREFIX}{ns}:{name}") if ns else None
    return None


# ---------------------------------------------------------------- where the policy comes from


class Policy(Protocol):
    """The RBAC objects the resolver reads (the watch caches, or a fixed list in tests)."""

    def cluster_role_bindings(self) -> Iterable[dict]:
        """Every ClusterRoleBinding."""

    def all_role_bindings(self) -> Iterable[dict]:
        """Every RoleBinding (of all namespaces)."""

    def cluster_role(self, name: str) -> dict | None:
        """One ClusterRole by name, None if absent."""

    def all_cluster_roles(self) -> Iterable[dict]:
        """Every ClusterRole (aggregation selects among them)."""

    def role(self, namespace: str, name: str) -> dict | None:
        """One Role, None if absent."""

    def version(self) -> object:
        """Changes whenever a binding may have changed (the authorizer's subject index is rebuilt then)."""


class StaticPolicy:
    """A Policy over a fixed list of RBAC objects (each with ``kind`` and ``metadata``); for tests and the
    bootstrap policy's own checks."""

    def __init__(self, objects: Iterable[dict]):
        self.by_kind: dict[str, list[dict]] = {}
        for o in objects:
            self.by_kind.setdefault(o.get("kind", ""), []).append(o)

    def _named(self, kind: str, namespace: str | None, name: str) -> dict | None:
        for o in self.by_kind.get(kind, ()):
            m = o.get("metadata") or {}
            if m.get("name") == name and (namespace is None or m.get("namespace") == namespace):
                return o
        return None

    def cluster_role_bindings(self) -> Iterable[dict]:
        """Every ClusterRoleBinding of the list."""
        return self.by_kind.get("ClusterRoleBinding", [])

    def cluster_role(self, name: str) -> dict | None:
        """The list's ClusterRole ``name``."""
        return self._named("ClusterRole", None, name)

    def role(self, namespace: str, name: str) -> dict | None:
        """The list's Role ``namespace/name``."""
        return self._named("Role", namespace, name)

    def version(self) -> object:
        """Always 0: the list never changes."""
        return 0

    def all_role_bindings(self) -> Iterable[dict]:
        """Every RoleBinding of the list."""
        return self.by_kind.get("RoleBinding", [])

    def all_cluster_roles(self) -> Iterable[dict]:
        """Every ClusterRole of the list."""
        return self.by_kind.get("ClusterRole", [])


class CachedPolicy:
    """A Policy over the apiserver's four RBAC Stores (their watch caches' current items).

    ``stores`` maps resource name (roles, rolebindings, clusterroles,
    clusterrolebindings) to the apiserver Store serving it.
    """

    def __init__(self, stores: dict):
        self.stores = stores

    def _items(self, resource: str) -> dict:
        return self.stores[resource].cacher.items

    def cluster_role_bindings(self) -> Iterable[dict]:
        """Every ClusterRoleBinding the cache holds."""
        return list(self._items("clusterrolebindings").values())

    def cluster_role(self, name: str) -> dict | None:
        """The cached ClusterRole ``name``."""
        return self._items("clusterroles").get(self.stores["clusterroles"].info.key(None, name))

    def role(self, namespace: str, name: str) -> dict | None:
        """The cached Role ``namespace/name``."""
        return self._items("roles").get(self.stores["roles"].info.key(namespace, name))

    def version(self) -> object:
        """The two binding caches' revisions (and item maps, which a relist replaces)."""
        crb, rb = self.stores["clusterrolebindings"].cacher, self.stores["rolebindings"].cacher
        return (crb.revision, id(crb.items), rb.revision, id(rb.items))

    def all_role_bindings(self) -> Iterable[dict]:
        """Every cached RoleBinding."""
        return list(self._items("rolebindings").values())

    def all_cluster_roles(self) -> Iterable[dict]:
        """Every cached ClusterRole."""
        return list(self._items("clusterroles").values())


# ---------------------------------------------------------------- the authorizer


class RBACAuthorizer:
    """``--authorization-mode=RBAC``: allowed when a rule of a role bound to the user (or one of its
    groups, or its ServiceAccount) matches; otherwise no opinion with upstream's ``RBAC: ...`` reason
    when a referenced role is missing."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._version: object = None
        # subject key -> [(binding, namespace "" for ClusterRoleBindings)]; keys ("User", name) / ("Group", name)
        # cluster-wide, (namespace, "User" | "Group", name) for RoleBindings. ServiceAccounts are User keys.
        self._index: dict[tuple, list[tuple[dict, str]]] = {}

    def _rebuild(self) -> None:
        version = self.policy.version()
        if version == self._version:
            return
        index: dict[tuple, list[tuple[dict, str]]] = {}
        entries = [(b, "") for b in self.policy.cluster_role_bindings()]
        entries += [(b, (b.get("metadata") or {}).get("namespace") or "") for b in self.policy.all_role_bindings()]
        for b, ns in entries:
            subjects = b.get("subjects")
            if not isinstance(subjects, list):
                continue
            keys = set()
            for sub in subjects:
                key = _subject_key(sub, ns)
                if key is not None:
                    keys.add((ns, *key) if ns else key)
            for key in keys:
                index.setdefault(key, []).append((b, ns))
        self._index, self._version = index, version

    def _role_rules(self, ref: dict, namespace: str) -> tuple[list, str]:
        """(rules, error) of a binding's roleRef (error names a missing role, as GetRoleReferenceRules)."""
        if not isinstance(ref, dict):
            return [], ""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.policy.cluster_role(name)
            if role is None:
                return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        elif kind == "Role" and namespace:
            role = self.policy.role(namespace, name)
            if role is None:
                return [], f'role.rbac.authorization.k8s.io "{name}" not found'
        else:
            return [], ""
        if kind == "ClusterRole" and isinstance(role.get("aggregationRule"), dict):
            return self._aggregated_rules(role), ""
        rules = role.get("rules")
        return (rules if isinstance(rules, list) else []), ""

    def _aggregated_rules(self, role: dict) -> list:
        """The rules of the ClusterRoles an aggregationRule selects, in name order, without repeats: what
        upstream's clusterrole-aggregation controller writes into the role (resolved here at lookup)."""
        selectors = []
        for sel in role["aggregationRule"].get("clusterRoleSelectors") or ():
            try:
                selectors.append(label_selector_from_object(sel))
            except ValueError:
                continue
        me = (role.get("metadata") or {}).get("name")
        out: list = []
        others = sorted(self.policy.all_cluster_roles(), key=lambda r: (r.get("metadata") or {}).get("name", ""))
        for other in others:
            meta = other.get("metadata") or {}
            if meta.get("name") == me or not any(sel.matches(meta.get("labels") or {}) for sel in selectors):
                continue
            for r in other.get("rules") or ():
                if isinstance(r, dict) and r not in out:
                    out.append(r)
        return out

    def _bindings(self, user: UserInfo, namespace: str | None) -> list[tuple[dict, str]]:
        """The ClusterRoleBindings, then the RoleBindings of ``namespace``, with a subject naming ``user``."""
        self._rebuild()
        keys = [("User", user.name)] + [("Group", g) for g in user.groups]
        out, seen = [], set()
        for scoped in ([()] + ([(namespace,)] if namespace else [])):
            for key in keys:
                for b, ns in self._index.get((*scoped, *key), ()):
                    if id(b) not in seen:
                        seen.add(id(b))
                        out.append((b, ns))
        return out

    def rules_for(self, user: UserInfo, namespace: str | None) -> tuple[list[dict], list[str]]:
        """Every rule that applies to ``user`` in ``namespace`` (cluster-wide ones included) and the errors
        met (missing roles): the RulesFor of upstream's resolver, used by SelfSubjectRulesReview."""
        rules, errs = [], []
        for b, ns in self._bindings(user, namespace):
            rs, err = self._role_rules(b.get("roleRef"), ns)
            rules.extend(r for r in rs if isinstance(r, dict))
            if err:
                errs.append(err)
        return rules, errs

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """``(True, "")`` when some bound rule allows ``attrs``; else ``(False, "RBAC: <missing roles>")``
        or ``(False, "")`` (upstream's VisitRulesFor stops at the first allowing rule)."""
        errs = []
        for b, ns in self._bindings(user, attrs.namespace):
            rules, err = self._role_rules(b.get("roleRef"), ns)
            if err:
                errs.append(err)
            for r in rules:
                if rule_allows(attrs, r):
                    return True, ""
        return False, ("RBAC: [" + ", ".join(errs) + "]" if len(errs) > 1 else f"RBAC: {errs[0]}") if errs else ""
