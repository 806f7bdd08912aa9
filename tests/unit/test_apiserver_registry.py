"""Strategies (defaulting, validation with field paths, status/generation rules), patches and the ClusterIP range."""
import random

import pytest

from apiserver import errors
from apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from apiserver.registry import apps, core, ipallocator
from apiserver.registry.store import drop_nulls, generate_name, patch_function


def pod(**spec):
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **spec}}


def deployment(labels=None, selector=None):
    return {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": selector or {"app": "web"}},
        "template": {"metadata": {"labels": labels or {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def test_pod_defaults_and_status():
    s = core.PodStrategy()
    obj = pod()
    s.prepare_for_create(obj)
    s.default(obj)
    spec = obj["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"],
            spec["schedulerName"], spec["enableServiceLinks"]) == ("Always", "ClusterFirst", 30,
                                                                   "default-scheduler", True)
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["terminationMessagePath"] == "/dev/termination-log"
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize("image,policy", [("busybox", "Always"), ("busybox:latest", "Always"),
                                          ("reg:5000/busybox", "Always"), ("busybox:1.35", "IfNotPresent")])
def test_image_pull_policy_default(image, policy):
    spec = {"containers": [{"name": "c", "image": image}]}
    core.default_pod_spec(spec)
    assert spec["containers"][0]["imagePullPolicy"] == policy


def test_qos_class():
    lim = {"cpu": "1", "memory": "1Gi"}
    assert core.qos_class({"containers": [{"resources": {"limits": lim}}]}) == "Guaranteed"
    assert core.qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"


def test_pod_validation_field_paths():
    causes = core.PodStrategy().validate({"spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x",
                                                                                 "ports": [{"containerPort": 0}]}]}})
    fields = {c.field for c in causes}
    assert {"spec.containers[0].image", "spec.containers[1].name",
            "spec.containers[1].ports[0].containerPort"} <= fields


def test_pod_update_only_image_may_change():
    s = core.PodStrategy()
    old = pod()
    new = pod()
    new["spec"]["containers"][0]["image"] = "busybox:1.36"
    assert s.validate_update(new, old) == []
    new["spec"]["nodeName"] = "n1"
    assert [c.field for c in s.validate_update(new, old)] == ["spec"]


@pytest.mark.parametrize("spec,status,requested,grace", [
    ({"nodeName": "n"}, {}, None, 30),
    ({"nodeName": "n", "terminationGracePeriodSeconds": 5}, {}, None, 5),
    ({"nodeName": "n"}, {}, 0, 0),
    ({}, {}, None, 0),
    ({"nodeName": "n"}, {"phase": "Succeeded"}, None, 0),
])
def test_pod_grace_period(spec, status, requested, grace):
    """Bound running pods are deleted gracefully; unbound or finished ones at once (CheckGracefulDelete)."""
    assert core.PodStrategy().grace_period({"spec": spec, "status": status}, requested) == grace


def test_status_update_takes_only_status():
    s = core.PodStrategy()
    old = pod(nodeName="n")
    old["status"] = {"phase": "Pending"}
    new = pod(nodeName="other")
    new["status"] = {"phase": "Running"}
    out = s.prepare_for_status_update(new, old)
    assert out["spec"]["nodeName"] == "n" and out["status"]["phase"] == "Running"
    main = pod(nodeName="n")
    main["status"] = {"phase": "Failed"}
    s.prepare_for_update(main, old)
    assert main["status"] == {"phase": "Pending"}


def test_deployment_defaults():
    s = apps.DeploymentStrategy()
    d = deployment()
    s.default(d)
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10 and d["spec"]["progressDeadlineSeconds"] == 600
    assert s.validate(d) == []


def test_deployment_selector_must_match_template():
    causes = apps.DeploymentStrategy().validate(deployment(labels={"app": "other"}))
    assert [c.field for c in causes] == ["spec.template.metadata.labels"]
    assert "`selector` does not match template `labels`" in causes[0].message
    err = errors.invalid("Deployment", "d", causes, group="apps")
    assert err.code == 422 and err.status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


def test_deployment_selector_immutable():
    s = apps.DeploymentStrategy()
    new = deployment(labels={"app": "x", "v": "2"}, selector={"app": "x"})
    causes = s.validate_update(new, deployment())
    assert "spec.selector" in [c.field for c in causes]


def test_scale_roundtrip():
    s = apps.DeploymentStrategy()
    d = deployment()
    d["metadata"].update(namespace="default", resourceVersion="7")
    d["spec"]["replicas"] = 2
    scale = s.to_scale(d)
    assert scale["kind"] == "Scale" and scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 4
    assert s.from_scale(d, scale)["spec"]["replicas"] == 4


def test_service_defaults():
    s = core.ServiceStrategy(ipallocator.Range("10.96.0.0/12"))
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "clusterIP": "10.96.0.10"}}
    s.default(svc)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert svc["spec"]["clusterIPs"] == ["10.96.0.10"] and svc["spec"]["ipFamilies"] == ["IPv4"]


def test_service_validation():
    s = core.ServiceStrategy(ipallocator.Range("10.96.0.0/12"))
    assert [c.field for c in s.validate({"spec": {}})] == ["spec.ports"]
    assert s.validate({"spec": {"clusterIP": "None"}}) == []
    causes = s.validate({"spec": {"ports": [{"port": 80}, {"port": 70000, "name": "b"}]}})
    assert {c.field for c in causes} == {"spec.ports[0].name", "spec.ports[1].port"}


def test_ip_range():
    r = ipallocator.Range("10.96.0.0/28", rng=random.Random(1))
    assert r.first() == "10.96.0.1"
    taken = set()
    for _ in range(13):  # 14 usable, the first one kept for the kubernetes service
        taken.add(r.pick(taken))
    assert len(taken) == 13 and "10.96.0.1" not in taken
    with pytest.raises(ipallocator.AllocationError, match="range is full"):
        r.pick(taken)
    with pytest.raises(ipallocator.AllocationError, match="not in the valid range"):
        r.check("10.0.0.1")
    r.check("10.96.0.5")


def test_generate_name():
    name = generate_name("web-")
    assert name.startswith("web-") and len(name) == 9 and name[4:].isalnum() and name[4:].islower()


def test_merge_patch():
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == \
        {"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}


def test_json_patch():
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    out = json_patch(doc, [{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                           {"op": "remove", "path": "/metadata/labels/a"},
                           {"op": "add", "path": "/spec/list/-", "value": 3},
                           {"op": "replace", "path": "/spec/list/0", "value": 0},
                           {"op": "test", "path": "/spec/list/2", "value": 3}])
    assert out == {"metadata": {"labels": {"b": "2"}}, "spec": {"list": [0, 2, 3]}}
    assert doc["spec"]["list"] == [1, 2]
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/spec/list/0", "value": 9}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_strategic_merge_patch_merges_containers_by_name():
    """kubectl apply's patch of one container's image keeps its other fields and the other containers."""
    orig = {"spec": {"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
                                    {"name": "b", "image": "y:1"}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "a", "image": "x:2"}]}}
    out = strategic_merge_patch(orig, patch)
    assert out["spec"]["containers"] == [{"name": "a", "image": "x:2", "ports": [{"containerPort": 80}]},
                                         {"name": "b", "image": "y:1"}]


def test_strategic_merge_patch_directives():
    orig = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]},
            "metadata": {"finalizers": ["a", "b"], "labels": {"k": "v"}}}
    out = strategic_merge_patch(orig, {
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "$patch": "delete"}]},
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"k": None}}})
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert out["metadata"] == {"finalizers": ["b"], "labels": {}}


def test_patch_content_types():
    assert patch_function("application/merge-patch+json; charset=utf-8") is merge_patch
    with pytest.raises(errors.StatusError) as e:
        patch_function("application/apply-patch+yaml")
    assert e.value.code == 415


def test_nulls_are_dropped_as_a_go_round_trip_would():
    """kubectl rollout undo sends the old template with ``creationTimestamp: null``: the stored template
    must equal the ReplicaSet's (no key), or the deployment controller makes a new ReplicaSet."""
    tmpl = deployment()["spec"]["template"]
    sent = json_patch(deployment(), [{"op": "replace", "path": "/spec/template",
                                     "value": {"metadata": {"creationTimestamp": None, **tmpl["metadata"]},
                                               "spec": {**tmpl["spec"], "nodeSelector": None}}}])
    assert drop_nulls(sent)["spec"]["template"] == tmpl
    assert drop_nulls({"a": [None, {"b": None, "c": 1}], "d": None}) == {"a": [None, {"c": 1}]}


def test_gc_finalizers_follow_the_propagation_policy():
    from apiserver.registry.store import gc_finalizers
    assert gc_finalizers([], {"propagationPolicy": "Orphan"}) == ["orphan"]
    assert gc_finalizers(["x", "orphan"], {"propagationPolicy": "Foreground"}) == ["x", "foregroundDeletion"]
    assert gc_finalizers(["orphan", "foregroundDeletion"], {"propagationPolicy": "Background"}) == []
    assert gc_finalizers([], {"orphanDependents": True}) == ["orphan"]
    assert gc_finalizers([], {}) == []
    assert gc_finalizers([], {}, default_policy="Orphan") == ["orphan"]  # v1 RCs, batch/v1 Jobs
    assert gc_finalizers(["foregroundDeletion"], {}, default_policy="Orphan") == ["foregroundDeletion"]
