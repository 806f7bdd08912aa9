"""RBAC rule matching, the RBAC authorizer over bindings, the default policy, and upstream's 403 text
(apiserver/authz/rbac.py, apiserver/authz/__init__.py, apiserver/bootstrappolicy.py)."""
from __future__ import annotations

import pytest

from apiserver import bootstrappolicy
from apiserver.authn import UserInfo
from apiserver.authz import RequestAttributes, Union, forbidden, non_resource
from apiserver.authz.rbac import RBACAuthorizer, StaticPolicy, applies_to, rule_allows

G = "rbac.authorization.k8s.io"


def attrs(verb, resource, *, group="", sub=None, ns=None, name=None):
    return RequestAttributes(verb, group, resource, sub, ns, name)


@pytest.mark.parametrize("rule,a,want", [
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, attrs("get", "pods"), True, id="exact"),
    pytest.param({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, attrs("delete", "x", group="g"), True,
                 id="stars"),
    pytest.param({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]}, attrs("get", "pods"), False,
                 id="wrong-group"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, attrs("get", "pods", sub="log"), False,
                 id="subresource-needs-own-entry"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}, attrs("get", "pods", sub="log"),
                 True, id="subresource"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]},
                 attrs("get", "nodes", sub="status"), True, id="star-slash-sub"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]}, attrs("get", "nodes"), False,
                 id="star-slash-sub-not-main"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
                 attrs("get", "pods", name="a"), True, id="name"),
    pytest.param({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
                 attrs("get", "pods", name="b"), False, id="other-name"),
    pytest.param({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
                 attrs("list", "pods"), False, id="names-never-match-list"),
    pytest.param({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, non_resource("get", "/healthz"), True,
                 id="url"),
    pytest.param({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}, non_resource("get", "/apis/apps/v1"), True,
                 id="url-prefix"),
    pytest.param({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}, non_resource("get", "/api"), False,
                 id="url-prefix-miss"),
    pytest.param({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, non_resource("post", "/healthz"), False,
                 id="url-verb"),
    pytest.param({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}, non_resource("get", "/healthz"), False,
                 id="resource-rule-not-url"),
])
def test_rule_allows(rule, a, want):
    """Upstream's VerbMatches / APIGroupMatches / ResourceMatches / ResourceNameMatches / NonResourceURLMatches."""
    assert rule_allows(a, rule) is want


def test_subjects():
    """User by name, Group by membership, ServiceAccount by its user name (namespace defaults to the binding's)."""
    sa = UserInfo("system:serviceaccount:a:bot", ("system:serviceaccounts",))
    assert applies_to({"kind": "User", "name": "jane"}, UserInfo("jane"), "")
    assert applies_to({"kind": "Group", "name": "dev"}, UserInfo("x", ("dev",)), "")
    assert applies_to({"kind": "ServiceAccount", "name": "bot"}, sa, "a")
    assert applies_to({"kind": "ServiceAccount", "name": "bot", "namespace": "a"}, sa, "")
    assert not applies_to({"kind": "ServiceAccount", "name": "bot"}, sa, "b")
    assert not applies_to({"kind": "User", "name": "jane"}, UserInfo("janet"), "")


def rb(ns, name, role_kind, role, *subjects):
    return {"kind": "RoleBinding", "metadata": {"namespace": ns, "name": name},
            "roleRef": {"apiGroup": G, "kind": role_kind, "name": role}, "subjects": list(subjects)}


def policy(*extra):
    return StaticPolicy(bootstrappolicy.cluster_roles() + bootstrappolicy.cluster_role_bindings() + list(extra))


async def test_view_in_one_namespace():
    """jane bound to view in a: lists pods there; cannot create there nor list in b; no secrets."""
    a = RBACAuthorizer(policy(rb("a", "jv", "ClusterRole", "view", {"kind": "User", "name": "jane", "apiGroup": G})))
    jane = UserInfo("jane", ("system:authenticated",))
    assert (await a.authorize(jane, attrs("list", "pods", ns="a")))[0]
    assert (await a.authorize(jane, attrs("get", "pods", ns="a", sub="log", name="p")))[0]
    assert not (await a.authorize(jane, attrs("create", "pods", ns="a")))[0]
    assert not (await a.authorize(jane, attrs("list", "pods", ns="b")))[0]
    assert not (await a.authorize(jane, attrs("get", "secrets", ns="a", name="s")))[0]
    assert (await a.authorize(jane, non_resource("get", "/apis/apps/v1")))[0]  # system:discovery
    assert (await a.authorize(jane, attrs("create", "selfsubjectaccessreviews", group="authorization.k8s.io")))[0]


async def test_namespaced_role_and_missing_role_reason():
    """A Role in the binding's namespace applies; a binding to a missing role gives upstream's RBAC reason."""
    role = {"kind": "Role", "metadata": {"namespace": "a", "name": "cm"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"]}]}
    a = RBACAuthorizer(policy(role, rb("a", "b1", "Role", "cm", {"kind": "Group", "name": "dev"}),
                              rb("a", "b2", "Role", "gone", {"kind": "Group", "name": "dev"})))
    dev = UserInfo("u", ("dev",))
    assert await a.authorize(dev, attrs("get", "configmaps", ns="a", name="x")) == (True, "")
    ok, why = await a.authorize(dev, attrs("get", "configmaps", ns="a", name="y"))
    assert not ok and why == 'RBAC: role.rbac.authorization.k8s.io "gone" not found'


async def test_anonymous_gets_public_info_only():
    """system:unauthenticated: /healthz /livez /readyz /version, nothing else (not even discovery)."""
    a = RBACAuthorizer(policy())
    anon = UserInfo("system:anonymous", ("system:unauthenticated",))
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert (await a.authorize(anon, non_resource("get", path)))[0], path
    for denied in (non_resource("get", "/api"), non_resource("get", "/openapi/v3"), attrs("list", "pods", ns="a"),
                   attrs("create", "selfsubjectaccessreviews", group="authorization.k8s.io")):
        assert not (await a.authorize(anon, denied))[0], denied


async def test_masters_and_cluster_admin():
    """system:masters is allowed before any mode (and by cluster-admin's binding); others are not."""
    u = Union([RBACAuthorizer(policy())])
    assert (await u.authorize(UserInfo("admin", ("system:masters",)), attrs("delete", "nodes", name="n")))[0]
    assert not (await u.authorize(UserInfo("bob", ("system:authenticated",)), attrs("delete", "nodes", name="n")))[0]


# What kubeling's scheduler and controller-manager do (grep of their client calls), per identity.
SCHEDULER = [("list", "pods", ""), ("watch", "nodes", ""), ("list", "namespaces", ""),
             ("create", "pods", "binding"), ("patch", "pods", "status"), ("delete", "pods", ""),
             ("create", "events", ""), ("patch", "events", "")]
CONTROLLER_MANAGER = [("create", "pods", ""), ("delete", "pods", ""), ("patch", "pods", ""),
                      ("create", "endpoints", ""), ("update", "endpoints", ""), ("update", "nodes", "status"),
                      ("update", "nodes", ""), ("update", "namespaces", "finalize"), ("create", "serviceaccounts", ""),
                      ("deletecollection", "configmaps", ""), ("create", "events", ""), ("list", "secrets", "")]


async def test_system_components_can_do_their_work():
    """The default roles cover kubeling's scheduler and controller-manager calls (incl. leader election)."""
    a = RBACAuthorizer(policy())
    sched = UserInfo("system:kube-scheduler", ("system:authenticated",))
    cm = UserInfo("system:kube-controller-manager", ("system:authenticated",))
    for verb, res, sub in SCHEDULER:
        assert (await a.authorize(sched, attrs(verb, res, sub=sub or None, ns="a")))[0], (verb, res, sub)
    for verb, res, sub in CONTROLLER_MANAGER:
        assert (await a.authorize(cm, attrs(verb, res, sub=sub or None, ns="a")))[0], (verb, res, sub)
    for who, lease in ((sched, "kube-scheduler"), (cm, "kube-controller-manager")):
        for verb in ("get", "update"):
            assert (await a.authorize(who, attrs(verb, "leases", group="coordination.k8s.io", ns="kube-system",
                                                 name=lease)))[0]
        assert (await a.authorize(who, attrs("create", "leases", group="coordination.k8s.io", ns="kube-system")))[0]
    for verb, res, grp in (("create", "replicasets", "apps"), ("create", "jobs", "batch"),
                           ("update", "deployments", "apps"), ("create", "endpointslices", "discovery.k8s.io")):
        assert (await a.authorize(cm, attrs(verb, res, group=grp, ns="a")))[0], (verb, res)
    assert not (await a.authorize(sched, attrs("create", "pods", ns="a")))[0]
    assert not (await a.authorize(sched, attrs("get", "secrets", ns="a", name="s")))[0]
    proxy = UserInfo("system:kube-proxy", ("system:authenticated",))
    for res, grp in (("services", ""), ("endpoints", ""), ("endpointslices", "discovery.k8s.io"), ("nodes", "")):
        assert (await a.authorize(proxy, attrs("watch", res, group=grp)))[0], res
    assert not (await a.authorize(proxy, attrs("list", "secrets")))[0]


def test_forbidden_messages_are_upstreams():
    """responsewriters.forbiddenMessage + NewForbidden, byte for byte."""
    jane = UserInfo("jane")
    e = forbidden(jane, attrs("list", "pods", ns="other"))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == 'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the ' \
                        'namespace "other"'
    e = forbidden(jane, attrs("get", "deployments", group="apps", ns="a", name="web", sub="scale"))
    assert e.message == 'deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments/scale" ' \
                        'in API group "apps" in the namespace "a"'
    assert e.status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    e = forbidden(jane, attrs("list", "nodes"), "no relationship")
    assert e.message == 'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the ' \
                        'cluster scope: no relationship'
    e = forbidden(jane, non_resource("get", "/metrics"))
    assert e.message == 'forbidden: User "jane" cannot get path "/metrics"'


def test_default_policy_is_valid():
    """Every default object passes the registry's own RBAC validation."""
    from apiserver.registry import rbac
    for o in bootstrappolicy.cluster_roles():
        assert rbac.ClusterRoleStrategy().validate(o) == [], o["metadata"]["name"]
    for o in bootstrappolicy.cluster_role_bindings():
        assert rbac.ClusterRoleBindingStrategy().validate(o) == [], o["metadata"]["name"]


async def test_subject_index_follows_binding_changes():
    """Bindings are indexed by subject; the index is rebuilt when the policy's version moves."""
    class Mutable(StaticPolicy):
        rev = 0

        def version(self):
            return self.rev
    pol = Mutable(bootstrappolicy.cluster_roles())
    a = RBACAuthorizer(pol)
    bot = UserInfo("system:serviceaccount:a:bot", ("system:serviceaccounts", "system:serviceaccounts:a"))
    assert not (await a.authorize(bot, attrs("list", "pods", ns="a")))[0]
    pol.by_kind["RoleBinding"] = [rb("a", "b", "ClusterRole", "view", {"kind": "ServiceAccount", "name": "bot"})]
    assert not (await a.authorize(bot, attrs("list", "pods", ns="a")))[0]  # same version: index kept
    pol.rev = 1
    assert (await a.authorize(bot, attrs("list", "pods", ns="a")))[0]
    assert not (await a.authorize(bot, attrs("list", "pods", ns="b")))[0]
    assert not (await a.authorize(UserInfo("system:serviceaccount:b:bot"), attrs("list", "pods", ns="a")))[0]


def test_forbidden_message_is_sanitized():
    """As upstream's sanitizer: &, < and > of the request become HTML entities in the message."""
    e = forbidden(UserInfo("<b>&"), non_resource("get", "/x<y>"))
    assert e.message == 'forbidden: User "&lt;b&gt;&amp;" cannot get path "/x&lt;y&gt;"'


async def test_aggregated_cluster_role():
    """A ClusterRole with an aggregationRule grants the rules of the ClusterRoles its selectors match."""
    agg = {"kind": "ClusterRole", "metadata": {"name": "monitoring"},
           "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-monitoring":
                                                                          "true"}}]}, "rules": []}
    part = {"kind": "ClusterRole", "metadata": {"name": "part", "labels": {"example.com/aggregate-to-monitoring":
                                                                            "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["services"]}]}
    other = {"kind": "ClusterRole", "metadata": {"name": "other"},
             "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}
    a = RBACAuthorizer(policy(agg, part, other, rb("a", "m", "ClusterRole", "monitoring",
                                                   {"kind": "User", "name": "mon", "apiGroup": G})))
    mon = UserInfo("mon")
    assert (await a.authorize(mon, attrs("get", "services", ns="a", name="x")))[0]
    assert not (await a.authorize(mon, attrs("get", "secrets", ns="a", name="x")))[0]
