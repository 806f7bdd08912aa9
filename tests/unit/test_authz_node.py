"""The Node authorizer and its pod graph (apiserver/authz/node.py)."""
from __future__ import annotations

from apiserver.authn import UserInfo
from apiserver.authz import RequestAttributes
from apiserver.authz.node import Graph, NodeAuthorizer, node_name, pod_references

N1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))


def pod(name, node, ns="a", **spec):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node, **spec}}


def web(node="n1", name="web"):
    return pod(name, node, serviceAccountName="bot", imagePullSecrets=[{"name": "pull"}],
               volumes=[{"name": "v", "secret": {"secretName": "vol"}}, {"name": "c", "configMap": {"name": "cm"}},
                        {"name": "p", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "pr", "projected": {"sources": [{"secret": {"name": "proj"}},
                                                                 {"configMap": {"name": "projcm"}}]}}],
               containers=[{"name": "c", "envFrom": [{"secretRef": {"name": "envfrom"}}],
                            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "envref", "key": "k"}}},
                                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "k"}}}]}])


def a(verb, resource, name=None, ns="a", sub=None, group=""):
    return RequestAttributes(verb, group, resource, sub, ns, name)


def test_node_identity():
    """Only system:node:NAME in system:nodes is a node."""
    assert node_name(N1) == "n1"
    assert node_name(UserInfo("system:node:n1")) is None
    assert node_name(UserInfo("jane", ("system:nodes",))) is None


def test_pod_references():
    """Every place a pod can name a secret, configmap, PVC, and its service account."""
    refs = pod_references(web())
    assert {n for r, n in refs if r == "secrets"} == {"pull", "vol", "proj", "envfrom", "envref"}
    assert {n for r, n in refs if r == "configmaps"} == {"cm", "projcm", "envcm"}
    assert ("persistentvolumeclaims", "data") in refs and ("serviceaccounts", "bot") in refs
    assert pod_references({"spec": "garbage"}) == set() and pod_references(None) == set()


async def test_reads_only_what_its_pods_use():
    """n1 reads its pod's secret; not another node's pod's secret, nor an unreferenced one; not lists."""
    pods = {"/registry/pods/a/web": web(), "/registry/pods/a/other": pod("other", "n2", volumes=[
        {"name": "v", "secret": {"secretName": "theirs"}}])}
    auth = NodeAuthorizer(Graph(lambda: pods))
    for name in ("vol", "pull", "proj", "envfrom", "envref"):
        assert await auth.authorize(N1, a("get", "secrets", name)) == (True, ""), name
    assert (await auth.authorize(N1, a("get", "configmaps", "cm")))[0]
    assert (await auth.authorize(N1, a("get", "persistentvolumeclaims", "data")))[0]
    assert (await auth.authorize(N1, a("create", "serviceaccounts", "bot", sub="token")))[0]
    assert await auth.authorize(N1, a("get", "secrets", "theirs")) == (
        False, "no relationship found between node 'n1' and this object")
    assert not (await auth.authorize(N1, a("get", "secrets", "vol", ns="b")))[0]
    assert not (await auth.authorize(N1, a("list", "secrets")))[0]
    assert not (await auth.authorize(N1, a("update", "secrets", "vol")))[0]
    assert not (await auth.authorize(N1, a("create", "serviceaccounts", "default", sub="token")))[0]


async def test_graph_follows_pod_changes():
    """Binding, rebinding and deleting pods update the edges (only changed objects are recomputed)."""
    pods = {"/registry/pods/a/web": pod("web", "")}
    auth = NodeAuthorizer(Graph(lambda: pods))
    assert not (await auth.authorize(N1, a("get", "secrets", "vol")))[0]
    pods["/registry/pods/a/web"] = web("n1")
    assert (await auth.authorize(N1, a("get", "secrets", "vol")))[0]
    pods["/registry/pods/a/web2"] = web("n1", name="web2")
    pods["/registry/pods/a/web"] = web("n2")
    assert (await auth.authorize(N1, a("get", "secrets", "vol")))[0]  # web2 still uses it
    del pods["/registry/pods/a/web2"]
    assert not (await auth.authorize(N1, a("get", "secrets", "vol")))[0]
    assert not Graph(lambda: {}).has_edge("n1", "a", "secrets", "vol")


async def test_own_lease_and_node_rules():
    """Its own Lease in kube-node-lease only; the system:node rules (pods, nodes, events) for the rest;
    other users get no opinion."""
    auth = NodeAuthorizer(Graph(lambda: {}))
    lease = dict(group="coordination.k8s.io", ns="kube-node-lease")
    assert (await auth.authorize(N1, a("update", "leases", "n1", **lease)))[0]
    assert (await auth.authorize(N1, a("create", "leases", **lease)))[0]
    assert not (await auth.authorize(N1, a("update", "leases", "n2", **lease)))[0]
    assert not (await auth.authorize(N1, a("update", "leases", "n1", group="coordination.k8s.io",
                                           ns="kube-system")))[0]
    assert (await auth.authorize(N1, a("watch", "pods", ns=None)))[0]
    assert (await auth.authorize(N1, a("patch", "pods", "web", sub="status")))[0]
    assert (await auth.authorize(N1, a("update", "nodes", "n1", ns=None, sub="status")))[0]
    assert (await auth.authorize(N1, a("create", "events")))[0]
    assert not (await auth.authorize(N1, a("create", "deployments", group="apps")))[0]
    assert await auth.authorize(UserInfo("jane"), a("get", "pods", "web")) == (False, "")


def test_graph_skips_work_while_the_revision_stands():
    """With a revision function, an unchanged revision means no walk over the pods at all."""
    calls = []
    state = {"rev": 1, "pods": {"/registry/pods/a/web": web()}}

    def pods():
        calls.append(1)
        return state["pods"]
    g = Graph(pods, revision=lambda: state["rev"])
    assert g.has_edge("n1", "a", "secrets", "vol") and g.has_edge("n1", "a", "secrets", "vol")
    assert len(calls) == 1
    state["pods"], state["rev"] = {}, 2
    assert not g.has_edge("n1", "a", "secrets", "vol") and len(calls) == 2
