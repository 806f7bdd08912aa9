"""Admission plugins NamespaceLifecycle, LimitRanger, ServiceAccount, NodeRestriction and the plugin registry
(flags, order, defaults), each with fake listers and no server."""
import asyncio
import random

import pytest

from apiserver import errors
from apiserver.admission import Attributes, plugins
from apiserver.admission.limitranger import LIMIT_RANGER_ANNOTATION, LimitRanger
from apiserver.admission.namespacelifecycle import NamespaceLifecycle
from apiserver.admission.noderestriction import NodeRestriction
from apiserver.admission.serviceaccount import MOUNT_PATH, ServiceAccount
from apiserver.authn import UserInfo


class Info:
    def __init__(self, resource: str, group: str = ""):
        self.resource, self.group = resource, group


ADMIN = UserInfo("admin", ("system:masters",))


def admit(plugin, obj, *, op="create", resource="pods", ns="ns", name="p", sub=None, old=None, user=ADMIN):
    asyncio.run(plugin.admit(Attributes(op, Info(resource), ns, name, sub, user), obj, old))
    return obj


def refused(plugin, obj, **kw) -> errors.StatusError:
    with pytest.raises(errors.StatusError) as e:
        admit(plugin, obj, **kw)
    return e.value


# ------------------------------------------------------------------ registry


def test_default_set_is_upstreams_default_limited_to_what_we_implement():
    assert plugins.DEFAULT_ENABLED == ("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "PodSecurity", "Priority",
                                       "DefaultTolerationSeconds", "CertificateApproval", "CertificateSigning",
                                       "CertificateSubjectRestriction", "ResourceQuota")
    assert plugins.enabled_plugins([], []) == list(plugins.DEFAULT_ENABLED)


def test_flags_combine_in_upstream_order():
    """The chain runs in upstream's order whatever the order of the flag."""
    assert plugins.enabled_plugins(["ResourceQuota", "NodeRestriction"], ["LimitRanger", "PodNodeSelector"]) == [
        "NamespaceLifecycle", "ServiceAccount", "NodeRestriction", "PodSecurity", "Priority", "DefaultTolerationSeconds",
        "CertificateApproval", "CertificateSigning", "CertificateSubjectRestriction", "ResourceQuota"]


@pytest.mark.parametrize("enable,disable,message", [
    pytest.param(["Bogus"], [], "unknown admission plugin 'Bogus'", id="unknown"),
    pytest.param([], ["Bogus"], "unknown admission plugin 'Bogus'", id="unknown-disable"),
    pytest.param(["AlwaysPullImages"], [], "not implemented by kubeling", id="unimplemented"),
    pytest.param(["LimitRanger"], ["LimitRanger"], "at the same time", id="both"),
])
def test_bad_flags_are_one_line_errors(enable, disable, message):
    with pytest.raises(ValueError, match=message):
        plugins.enabled_plugins(enable, disable)


def test_split_names():
    assert plugins.split_names(" NodeRestriction, ,ResourceQuota ") == ["NodeRestriction", "ResourceQuota"]


# ------------------------------------------------------------------ NamespaceLifecycle


def lifecycle(namespaces: dict):
    async def get(name):
        return namespaces.get(name)
    return NamespaceLifecycle(get)


def test_namespace_lifecycle_refuses_missing_and_terminating():
    plugin = lifecycle({"ok": {"metadata": {"name": "ok"}},
                        "going": {"metadata": {"name": "going", "deletionTimestamp": "2024-01-01T00:00:00Z"}}})
    admit(plugin, {}, ns="ok")
    e = refused(plugin, {}, ns="gone")
    assert (e.code, e.message) == (404, 'namespaces "gone" not found')
    e = refused(plugin, {}, ns="going")
    assert e.code == 403
    assert e.message == ('pods "p" is forbidden: unable to create new content in namespace going because it is '
                         'being terminated')
    admit(plugin, {}, ns="going", op="update")  # updates and deletes go on while terminating
    admit(plugin, None, ns="going", op="delete")


def test_namespace_lifecycle_immortal_namespaces():
    plugin = lifecycle({})
    for name in ("default", "kube-system", "kube-public"):
        e = refused(plugin, None, op="delete", resource="namespaces", ns=None, name=name)
        assert e.message == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    admit(plugin, None, op="delete", resource="namespaces", ns=None, name="kube-node-lease")


# ------------------------------------------------------------------ LimitRanger


def limit_ranger(*items):
    async def lister(ns):
        return [{"metadata": {"name": "lr", "namespace": ns}, "spec": {"limits": list(items)}}]
    return LimitRanger(lister)


def pod(*resources):
    return {"metadata": {"name": "p"},
            "spec": {"containers": [{"name": f"c{i}", "image": "busybox", **({"resources": r} if r else {})}
                                    for i, r in enumerate(resources)]}}


def test_limit_ranger_fills_default_requests_and_limits():
    plugin = limit_ranger({"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                           "defaultRequest": {"cpu": "100m", "memory": "64Mi"}})
    p = admit(plugin, pod(None, {"requests": {"cpu": "200m"}}))
    c0, c1 = p["spec"]["containers"]
    assert c0["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                               "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert c1["resources"]["requests"] == {"cpu": "200m", "memory": "64Mi"}
    assert p["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION].startswith(
        "LimitRanger plugin set: cpu request for container c0; memory request for container c0; cpu limit")


def test_limit_ranger_min_max_messages():
    plugin = limit_ranger({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}})
    e = refused(plugin, pod({"requests": {"cpu": "50m"}, "limits": {"cpu": "2"}}))
    assert e.code == 403
    assert e.message == ('pods "p" is forbidden: [minimum cpu usage per Container is 100m, but request is 50m, '
                         'maximum cpu usage per Container is 1, but limit is 2]')
    e = refused(plugin, pod({"requests": {"cpu": "200m"}}))
    assert e.message == 'pods "p" is forbidden: maximum cpu usage per Container is 1.  No limit is specified'
    admit(plugin, pod({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}}))


def test_limit_ranger_pod_sum_and_ratio():
    plugin = limit_ranger({"type": "Pod", "max": {"memory": "1Gi"}},
                          {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}})
    big = pod({"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "768Mi"}},
              {"requests": {"cpu": "1"}, "limits": {"cpu": "3", "memory": "512Mi"}})
    e = refused(plugin, big)
    assert "maximum memory usage per Pod is 1Gi, but limit is 1280Mi" in e.message
    assert "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000" in e.message


def test_limit_ranger_ignores_updates_and_empty_namespaces():
    async def none(ns):
        return []
    p = pod(None)
    admit(LimitRanger(none), p)
    assert "resources" not in p["spec"]["containers"][0]
    admit(limit_ranger({"type": "Container", "min": {"cpu": "1"}}), pod(None), op="update")


# ------------------------------------------------------------------ ServiceAccount


def service_account(accounts: dict, **kw):
    async def get(ns, name):
        return accounts.get((ns, name))
    return ServiceAccount(get, rng=random.Random(1), **kw)


def test_service_account_defaults_name_without_lookup():
    p = admit(service_account({}), pod(None))
    assert p["spec"]["serviceAccountName"] == "default"
    assert "volumes" not in p["spec"]


def test_service_account_missing_refused_only_when_required():
    e = refused(service_account({}, require_service_account=True), pod(None))
    assert e.message == ('pods "p" is forbidden: error looking up service account ns/default: '
                         'serviceaccount "default" not found')
    admit(service_account({("ns", "default"): {}}, require_service_account=True), pod(None))


def test_service_account_token_volume():
    plugin = service_account({("ns", "default"): {"metadata": {"name": "default"}}}, mount_token=True)
    p = admit(plugin, pod(None, None))
    vol = p["spec"]["volumes"][0]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == len("kube-api-access-") + 5
    assert [s for s in vol["projected"]["sources"] if "serviceAccountToken" in s] == [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]
    for c in p["spec"]["containers"]:
        assert c["volumeMounts"] == [{"name": vol["name"], "readOnly": True, "mountPath": MOUNT_PATH}]
    opted_out = pod(None)
    opted_out["spec"]["automountServiceAccountToken"] = False
    assert "volumes" not in admit(plugin, opted_out)["spec"]
    sa_off = service_account({("ns", "default"): {"automountServiceAccountToken": False}}, mount_token=True)
    assert "volumes" not in admit(sa_off, pod(None))["spec"]


# ------------------------------------------------------------------ NodeRestriction


NODE1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))


async def no_pods(namespace, name):
    return None


def test_node_restriction_pods():
    plugin = NodeRestriction(no_pods)
    mine, theirs = {"spec": {"nodeName": "n1"}}, {"spec": {"nodeName": "n2"}}
    admit(plugin, None, op="delete", old=mine, user=NODE1)
    e = refused(plugin, None, op="delete", old=theirs, user=NODE1)
    assert e.message == 'pods "p" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself'
    admit(plugin, mine, op="update", sub="status", old=mine, user=NODE1)
    e = refused(plugin, theirs, op="update", sub="status", old=theirs, user=NODE1)
    assert e.message == ('pods "p" is forbidden: node "n1" can only update pod status for pods with '
                         'spec.nodeName set to itself')
    e = refused(plugin, {"spec": {"nodeName": "n1"}}, user=NODE1)
    assert 'can only create mirror pods' in e.message
    mirror = {"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {"nodeName": "n1"}}
    admit(plugin, mirror, user=NODE1)
    e = refused(plugin, mine, op="update", old=mine, user=NODE1)
    assert e.message == ('pods "p" is forbidden: unexpected operation "UPDATE", node "n1" can only create and '
                         'delete mirror pods')
    admit(plugin, theirs, op="update", old=theirs, user=ADMIN)  # only node identities are restricted


def test_node_restriction_nodes():
    plugin = NodeRestriction(no_pods)
    admit(plugin, {"spec": {}}, resource="nodes", ns=None, name="n1", op="update", old={"spec": {}}, user=NODE1)
    admit(plugin, {}, resource="nodes", ns=None, name="n1", op="update", sub="status", old={}, user=NODE1)
    e = refused(plugin, {}, resource="nodes", ns=None, name="n2", op="update", sub="status", old={}, user=NODE1)
    assert e.message == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    e = refused(plugin, {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}, resource="nodes", ns=None,
                name="n1", op="update", old={"spec": {}}, user=NODE1)
    assert e.message == 'nodes "n1" is forbidden: node "n1" is not allowed to modify taints'
    # a user merely named like a node, without the group, is not a node identity
    admit(plugin, {}, resource="nodes", ns=None, name="n2", op="update", old={},
          user=UserInfo("system:node:n1", ("system:authenticated",)))


# ------------------------------------------------------------------ PodSecurity


def pod_security(labels: dict):
    from apiserver.admission.podsecurity import PodSecurity

    async def get(name):
        return {"metadata": {"name": name, "labels": labels}}
    return PodSecurity(get)


def test_pod_security_restricted_message_as_upstream():
    e = refused(pod_security({"pod-security.kubernetes.io/enforce": "restricted"}),
                {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}, name="nginx")
    assert e.code == 403
    assert e.message == (
        'pods "nginx" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
        'container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" '
        'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def test_pod_security_restricted_compliant_pod_passes():
    ok = {"spec": {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                   "containers": [{"name": "app", "securityContext": {
                       "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
    admit(pod_security({"pod-security.kubernetes.io/enforce": "restricted"}), ok)


def test_pod_security_baseline_and_privileged():
    bad = {"spec": {"hostNetwork": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                    "containers": [{"name": "a", "securityContext": {"privileged": True,
                                                                      "capabilities": {"add": ["NET_ADMIN"]}},
                                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}
    e = refused(pod_security({"pod-security.kubernetes.io/enforce": "baseline",
                              "pod-security.kubernetes.io/enforce-version": "v1.32"}), bad)
    assert e.message == (
        'pods "p" is forbidden: violates PodSecurity "baseline:v1.32": non-default capabilities (container "a" '
        'must not include "NET_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true), '
        'hostPath volumes (volume "root"), hostPort (container "a" uses hostPort 8080), privileged (container "a" '
        'must not set securityContext.privileged=true)')
    admit(pod_security({"pod-security.kubernetes.io/enforce": "privileged"}), bad)
    admit(pod_security({}), bad)  # no label: privileged, as upstream's default
    admit(pod_security({"pod-security.kubernetes.io/enforce": "baseline"}), pod(None))


def test_node_restriction_token_requests():
    pods = {"mine": {"metadata": {"uid": "u1"}, "spec": {"nodeName": "n1"}},
            "theirs": {"metadata": {"uid": "u2"}, "spec": {"nodeName": "n2"}}}

    async def get_pod(namespace, name):
        return pods.get(name)
    plugin = NodeRestriction(get_pod)

    def token(ref):
        return {"spec": {"audiences": ["a"], **({"boundObjectRef": ref} if ref else {})}}
    kw = dict(resource="serviceaccounts", sub="token", name="default", user=NODE1)
    admit(plugin, token({"kind": "Pod", "name": "mine", "uid": "u1"}), **kw)
    for ref, message in [
            (None, "node requested token not bound to a pod"),
            ({"kind": "Pod", "name": "mine"}, "node requested token with a pod binding without a uid"),
            ({"kind": "Secret", "name": "s", "uid": "x"}, "node requested token bound to a Secret"),
            ({"kind": "Pod", "name": "mine", "uid": "old"}, "the UID in the bound object reference (old) does not "
                                                           "match the UID in record"),
            ({"kind": "Pod", "name": "theirs", "uid": "u2"}, "node requested token bound to a pod scheduled on a "
                                                            "different node")]:
        e = refused(plugin, token(ref), **kw)
        assert e.code == 403 and e.message.startswith(f'serviceaccounts "default" is forbidden: {message}')
    assert refused(plugin, token({"kind": "Pod", "name": "gone", "uid": "u"}), **kw).code == 404
    admit(plugin, token(None), resource="serviceaccounts", sub="token", name="default", user=ADMIN)


async def test_priority_plugin_resolves_classes_and_refuses_mismatches():
    """Priority (plugin/pkg/admission/priority): class -> spec.priority and preemptionPolicy; the
    globalDefault class for pods without one; unknown classes and mismatched priorities Forbidden;
    one globalDefault PriorityClass at most."""
    import pytest
    from apiserver import errors
    from apiserver.admission import Attributes
    from apiserver.admission.priority import Priority
    from apiserver.authn import APISERVER_USER
    from apiserver.registry.core import PodStrategy
    from apiserver.registry.scheduling import PriorityClassStrategy
    classes = [{"metadata": {"name": "high"}, "value": 100, "preemptionPolicy": "Never"},
               {"metadata": {"name": "dflt", "creationTimestamp": "2026-01-01T00:00:00Z"}, "value": 7,
                "globalDefault": True}]

    async def lister():
        return classes
    plugin = Priority(lister)
    pods = PodStrategy.info

    async def admit(spec, resource=pods, op="create", name="p"):
        obj = {"metadata": {"name": name}, "spec": spec} if resource is pods else {"metadata": {"name": name}, **spec}
        await plugin.admit(Attributes(op, resource, "default", name, None, APISERVER_USER), obj, None)
        return obj
    assert (await admit({"priorityClassName": "high"}))["spec"] == {
        "priorityClassName": "high", "priority": 100, "preemptionPolicy": "Never"}
    assert (await admit({}))["spec"]["priority"] == 7
    for spec, text in (({"priorityClassName": "nope"}, "no PriorityClass with name nope was found"),
                       ({"priorityClassName": "high", "priority": 5}, "computed 100")):
        with pytest.raises(errors.StatusError) as e:
            await admit(spec)
        assert e.value.code == 403 and text in e.value.message
    pcs = PriorityClassStrategy.info
    with pytest.raises(errors.StatusError) as e:
        await admit({"value": 1, "globalDefault": True}, resource=pcs, name="other")
    assert "dflt is already marked as default" in e.value.message
    await admit({"value": 1, "globalDefault": True}, resource=pcs, name="dflt", op="update")  # itself: fine
