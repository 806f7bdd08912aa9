"""Review plumbing: protobuf bodies kubectl sends (apiserver/protobuf.py), review attributes and
rules (apiserver/registry/authorization.py), default-policy reconciliation (apiserver/bootstrappolicy.py)."""
from __future__ import annotations

import random

import pytest

from apiserver import bootstrappolicy, errors
from apiserver.authn import UserInfo
from apiserver.authz import AlwaysAllow, Union
from apiserver.authz.rbac import RBACAuthorizer, StaticPolicy
from apiserver import protobuf as authproto
from apiserver.registry.authorization import attributes, rules_for
from test_apiserver_protobuf import f as field  # the protobuf wire helpers of the decoder's tests


def envelope(kind: str, api_version: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return authproto.MAGIC + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def test_decode_self_subject_access_review():
    """The bytes kubectl auth can-i sends (k8s envelope, generated.proto numbers) -> the JSON form."""
    attrs = field(1, "a") + field(2, "list") + field(3, "") + field(5, "pods") + field(7, "web")
    raw = field(1, field(1, "")) + field(2, field(1, attrs))
    obj = authproto.decode(envelope("SelfSubjectAccessReview", "authorization.k8s.io/v1", raw),
                           "SelfSubjectAccessReview")
    assert obj["spec"] == {"resourceAttributes": {"namespace": "a", "verb": "list", "group": "", "resource": "pods",
                                                  "name": "web"}}


def test_decode_token_request():
    """kubectl create token --duration 20m --audience foo --bound-object-kind Pod ..."""
    ref = field(1, "Pod") + field(2, "v1") + field(3, "web") + field(4, "uid-1")
    raw = field(2, field(1, "foo") + field(1, "bar") + field(4, 1200) + field(3, ref))
    obj = authproto.decode(envelope("TokenRequest", "authentication.k8s.io/v1", raw), "TokenRequest")
    assert obj["spec"] == {"audiences": ["foo", "bar"], "expirationSeconds": 1200,
                           "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "uid-1"}}


def test_decode_garbage_is_400():
    """Truncated or random bytes are a 400 BadRequest, never another exception."""
    good = envelope("SelfSubjectAccessReview", "authorization.k8s.io/v1", field(2, field(2, field(1, "/x"))))
    rng = random.Random(3)
    samples = [good[:n] for n in range(len(good))] + [bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
                                                      for _ in range(300)]
    samples.append(envelope("TokenRequest", "v1", b""))
    for s in samples:
        try:
            authproto.decode(s, "SelfSubjectAccessReview")
        except errors.StatusError as e:
            assert e.code == 400


def test_review_attributes():
    """Exactly one of resourceAttributes / nonResourceAttributes (422 otherwise)."""
    a = attributes("SelfSubjectAccessReview", {"resourceAttributes": {"verb": "get", "resource": "pods",
                                                                      "subresource": "log", "namespace": "a"}})
    assert (a.verb, a.resource, a.subresource, a.namespace, a.resource_request) == ("get", "pods", "log", "a", True)
    a = attributes("SelfSubjectAccessReview", {"nonResourceAttributes": {"verb": "get", "path": "/healthz"}})
    assert (a.verb, a.path, a.resource_request) == ("get", "/healthz", False)
    for spec in ({}, {"resourceAttributes": {}, "nonResourceAttributes": {}}, {"resourceAttributes": {"verb": 1}}):
        with pytest.raises(errors.StatusError) as e:
            attributes("SelfSubjectAccessReview", spec)
        assert e.value.code == 422


def test_rules_for():
    """SelfSubjectRulesReview: AlwaysAllow and masters see everything; RBAC users their bound rules."""
    everything = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    assert rules_for(AlwaysAllow(), UserInfo("x"), "a")[0] == [everything]
    rbac = Union([RBACAuthorizer(StaticPolicy(bootstrappolicy.cluster_roles() +
                                              bootstrappolicy.cluster_role_bindings()))])
    assert rules_for(rbac, UserInfo("root", ("system:masters",)), "a")[0] == [everything]
    res, nonres, incomplete, errs = rules_for(rbac, UserInfo("jane", ("system:authenticated",)), "a")
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in res
    assert any("/healthz" in r["nonResourceURLs"] for r in nonres) and not incomplete and not errs


class FakeStore:
    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.updates = 0

    async def create(self, ns, obj, *, user):
        name = obj["metadata"]["name"]
        if name in self.objects:
            raise errors.already_exists("x", name)
        self.objects[name] = obj

    async def get(self, ns, name):
        return self.objects[name]

    async def update(self, ns, name, obj, *, user):
        self.updates += 1
        self.objects[name] = obj


async def test_bootstrap_policy_is_created_then_reconciled():
    """Missing defaults are created; an autoupdated role that drifted is put back; autoupdate=false is kept."""
    stores = {"clusterroles": FakeStore(), "clusterrolebindings": FakeStore()}
    await bootstrappolicy.ensure(stores, user=UserInfo("system:apiserver"))
    roles = stores["clusterroles"]
    assert "cluster-admin" in roles.objects and "system:kube-scheduler" in roles.objects
    assert "system:masters" in str(stores["clusterrolebindings"].objects["cluster-admin"]["subjects"])
    await bootstrappolicy.ensure(stores, user=UserInfo("system:apiserver"))
    assert roles.updates == 0
    roles.objects["view"] = {**roles.objects["view"], "rules": []}
    edited = {**roles.objects["edit"], "rules": []}
    edited["metadata"] = {**edited["metadata"], "annotations": {bootstrappolicy.AUTOUPDATE: "false"}}
    roles.objects["edit"] = edited
    await bootstrappolicy.ensure(stores, user=UserInfo("system:apiserver"))
    assert roles.objects["view"]["rules"] and roles.objects["edit"]["rules"] == [] and roles.updates == 1
