"""Unit tests of /openapi/v3 building (apiserver/openapi.py) and fieldValidation (apiserver/fieldvalidation.py)."""
from __future__ import annotations

import json

import pytest

from apiserver import errors, fieldvalidation, openapi
from apiserver.registry import apps, core
from apiserver.registry.ipallocator import Range


def infos():
    return [s.info for s in (core.PodStrategy(), core.ServiceStrategy(Range("10.96.0.0/12")),
                             core.ConfigMapStrategy(), apps.DeploymentStrategy())]


def test_definitions_are_openapi3_shaped():
    defs = openapi.definitions()
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert pod["type"] == "object"
    assert "enum" not in pod["properties"]["kind"]
    assert pod["properties"]["spec"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}],
                                         "description": pod["properties"]["spec"]["description"]}
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert "$defs" not in json.dumps(defs)


def test_schema_lookup_by_gvk():
    assert openapi.definition_for("apps", "v1", "Deployment") == "io.k8s.api.apps.v1.Deployment"
    assert openapi.definition_for("", "v1", "Pod") == "io.k8s.api.core.v1.Pod"
    assert openapi.definition_for("autoscaling", "v1", "Scale") == "io.k8s.api.autoscaling.v1.Scale"
    assert openapi.definition_for("example.com", "v1", "Widget") is None
    assert "io.k8s.api.core.v1.Container" in openapi.closure(["io.k8s.api.core.v1.Pod"])


def test_root_lists_every_served_group_version_with_hash():
    spec = openapi.OpenAPIV3(infos())
    root = json.loads(spec.root())
    assert set(root["paths"]) == {"api/v1", "apis/apps/v1"}
    data, etag = spec.document("apis/apps/v1")
    assert root["paths"]["apis/apps/v1"]["serverRelativeURL"] == f"/openapi/v3/apis/apps/v1?hash={etag}"
    assert etag == openapi.etag_of(data) and len(etag) == 128 and set(etag) <= set("0123456789ABCDEF")
    assert spec.document("apis/batch/v1") is None
    assert spec.document("apis/apps/v1")[0] is data  # cached


def test_group_version_document_has_patch_op_with_gvk_and_field_validation():
    doc = openapi.group_version_document("apps", "v1", infos())
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= {p["name"] for p in patch["parameters"]}
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    schemas = doc["components"]["schemas"]
    for name in ("io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.DeploymentList",
                 "io.k8s.api.core.v1.Container", "io.k8s.api.autoscaling.v1.Scale",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.Status"):
        assert name in schemas
    assert "io.k8s.api.core.v1.Service" not in schemas
    # every reference resolves inside the document
    refs: set[str] = set()
    openapi._referenced(doc, refs)
    assert refs <= set(schemas)


def test_unknown_fields_top_level_nested_lists_and_maps():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labelz": {}},
           "spec": {"replicaz": 3, "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}},
                                 "spec": {"containers": [{"name": "a", "image": "x"},
                                                         {"name": "b", "imagez": "y",
                                                          "ports": [{"containerPort": 1, "portz": 2}],
                                                          "resources": {"requests": {"cpu": "1m"}}}]}}},
           "bogus": True}
    found = fieldvalidation.unknown_fields(dep, "io.k8s.api.apps.v1.Deployment")
    assert found == ["metadata.labelz", "spec.replicaz", "spec.template.spec.containers[1].imagez",
                     "spec.template.spec.containers[1].ports[0].portz", "bogus"]
    fieldvalidation.unknown_fields(dep, "io.k8s.api.apps.v1.Deployment", prune=True)
    assert fieldvalidation.unknown_fields(dep, "io.k8s.api.apps.v1.Deployment") == []
    assert dep["spec"]["template"]["spec"]["containers"][1] == {
        "name": "b", "ports": [{"containerPort": 1}], "resources": {"requests": {"cpu": "1m"}}}


def test_free_form_objects_and_patch_directives_are_not_unknown():
    pod = {"metadata": {"managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}],
                        "annotations": {"a": "b"}},
           "spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "$patch": "delete"}]}}
    assert fieldvalidation.unknown_fields(pod, "io.k8s.api.core.v1.Pod", patch=True) == []
    assert fieldvalidation.unknown_fields(pod, "io.k8s.api.core.v1.Pod") == [
        "spec.$setElementOrder/containers", "spec.containers[0].$patch"]


def cm(**extra):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}, **extra}


def test_strict_refuses_with_upstream_message():
    with pytest.raises(errors.StatusError) as e:
        fieldvalidation.check(cm(dataz=1), group="", version="v1", kind="ConfigMap", value="Strict")
    assert e.value.code == 400 and e.value.status["reason"] == "BadRequest"
    assert e.value.status["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                         'strict decoding error: unknown field "dataz"')
    with pytest.raises(errors.StatusError) as e:
        fieldvalidation.check({"spec": {"replicaz": 1}}, group="apps", version="v1", kind="Deployment",
                              value="Strict", patch_type="application/strategic-merge-patch+json")
    assert e.value.status["message"] == 'strict decoding error: unknown field "spec.replicaz"'


def test_warn_is_default_prunes_and_reports_299_warnings():
    body = cm(dataz=1)
    for value in ("Warn", None, ""):
        out, warnings = fieldvalidation.check(body, group="", version="v1", kind="ConfigMap", value=value)
        assert out == cm() and warnings == ['299 - "unknown field \\"dataz\\""']
    assert body == cm(dataz=1)  # the caller's body is not mutated
    assert fieldvalidation.warning_header('a "b" \\c') == '299 - "a \\"b\\" \\\\c"'


def test_ignore_drops_silently_and_known_bodies_pass_untouched():
    out, warnings = fieldvalidation.check(cm(dataz=1), group="", version="v1", kind="ConfigMap", value="Ignore")
    assert out == cm() and warnings == []
    body = cm()
    assert fieldvalidation.check(body, group="", version="v1", kind="ConfigMap", value="Strict") == (body, [])


def test_body_kind_wins_and_unknown_kinds_or_json_patches_pass():
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "w"}, "spec": {"replicas": 2}}
    assert fieldvalidation.check(scale, group="apps", version="v1", kind="Deployment", value="Strict")[1] == []
    odd = {"apiVersion": "example.com/v1", "kind": "Widget", "x": 1}
    assert fieldvalidation.check(odd, group="example.com", version="v1", kind="Widget", value="Strict") == (odd, [])
    ops = [{"op": "add", "path": "/spec/replicaz", "value": 1}]
    assert fieldvalidation.check(ops, group="apps", version="v1", kind="Deployment", value="Strict",
                                 patch_type="application/json-patch+json") == (ops, [])


def test_bad_directive_is_invalid_options():
    with pytest.raises(errors.StatusError) as e:
        fieldvalidation.directive("strict")
    assert e.value.code == 422 and e.value.status["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": supported values: '
        '"", "Ignore", "Strict", "Warn"')
    assert e.value.status["details"]["causes"][0]["field"] == "fieldValidation"
    with pytest.raises(errors.StatusError) as e:
        fieldvalidation.check({}, group="", version="v1", kind="Pod", value="x", patch_type="")
    assert e.value.status["details"]["kind"] == "PatchOptions"
