"""Strategic merge patch: each directive and merge key of the served kinds, with expected documents.

Expected results follow k8s.io/apimachinery/pkg/util/strategicpatch (its
testdata and the patches kubectl apply sends).
"""
import pytest

from apiserver.patch import PatchError, strategic_merge_patch as patch_via_store
from apiserver.strategicpatch import StrategicPatchError, strategic_merge_patch as smp


def deploy(containers, **spec):
    return {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": containers, **spec}}}}


def containers(doc):
    return doc["spec"]["template"]["spec"]["containers"]


def test_containers_merge_by_name_keep_other_fields():
    orig = deploy([{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}, {"name": "b", "image": "y:1"}])
    out = smp(orig, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "a", "image": "x:2"}]}}}})
    assert containers(out) == [{"name": "a", "image": "x:2", "ports": [{"containerPort": 80}]},
                               {"name": "b", "image": "y:1"}]
    assert containers(orig)[0]["image"] == "x:1"  # the input is not modified


def test_env_merged_by_name_and_new_items_appended():
    orig = deploy([{"name": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
    out = smp(orig, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}})
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                         {"name": "C", "value": "4"}]


def test_set_element_order_reorders_and_keeps_server_only_items_in_place():
    orig = deploy([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    out = smp(orig, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "c", "image": "z"}]}}}})
    # b is only on the server: mergeSortedSlice slots it in by its place in the live list.
    assert [c["name"] for c in containers(out)] == ["b", "c", "a"]
    assert containers(out)[[c["name"] for c in containers(out)].index("c")]["image"] == "z"


def test_set_element_order_adds_a_new_list():
    orig = deploy([{"name": "a", "image": "x"}])
    out = smp(orig, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "$setElementOrder/env": [{"name": "E"}], "env": [{"name": "E", "value": "1"}]}]}}}})
    assert containers(out)[0] == {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}


def test_set_element_order_must_match_the_patch_list():
    with pytest.raises(StrategicPatchError):
        smp(deploy([{"name": "a"}]), {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "zz", "image": "i"}]}}}})


def test_container_ports_by_container_port_service_ports_by_port():
    orig = deploy([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}])
    out = smp(orig, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "name": "web"}]}]}}}})
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "name": "web"}, {"containerPort": 443}]
    svc = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81}]}}
    out = smp(svc, {"spec": {"ports": [{"port": 81, "targetPort": 9090}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": 9090}]


def test_volumes_volume_mounts_image_pull_secrets():
    orig = {"kind": "Pod", "spec": {
        "volumes": [{"name": "v1", "emptyDir": {}}], "imagePullSecrets": [{"name": "s1"}],
        "containers": [{"name": "a", "volumeMounts": [{"mountPath": "/a", "name": "v1"}]}]}}
    out = smp(orig, {"spec": {"volumes": [{"name": "v2", "emptyDir": {}}], "imagePullSecrets": [{"name": "s2"}],
                              "containers": [{"name": "a", "volumeMounts": [{"mountPath": "/a", "readOnly": True},
                                                                            {"mountPath": "/b", "name": "v2"}]}]}})
    # Without $setElementOrder upstream's mergeSortedSlice puts a new patch item before server-only ones.
    assert [v["name"] for v in out["spec"]["volumes"]] == ["v2", "v1"]
    assert [s["name"] for s in out["spec"]["imagePullSecrets"]] == ["s2", "s1"]
    assert out["spec"]["containers"][0]["volumeMounts"] == [
        {"mountPath": "/a", "name": "v1", "readOnly": True}, {"mountPath": "/b", "name": "v2"}]


def test_tolerations_and_args_are_replaced():
    orig = {"kind": "Pod", "spec": {"tolerations": [{"key": "a", "operator": "Exists"}],
                                    "containers": [{"name": "a", "args": ["1", "2"]}]}}
    out = smp(orig, {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}],
                              "containers": [{"name": "a", "args": ["3"]}]}})
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert out["spec"]["containers"][0]["args"] == ["3"]


def test_conditions_by_type_and_patch_delete_item():
    orig = {"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "False"},
                                                     {"type": "X", "status": "True"}]}}
    out = smp(orig, {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                               {"type": "X", "$patch": "delete"}]}})
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    node = {"kind": "Node", "status": {"conditions": [{"type": "Ready", "status": "False"}],
                                       "addresses": [{"type": "InternalIP", "address": "1.1.1.1"}]}}
    out = smp(node, {"status": {"addresses": [{"type": "Hostname", "address": "n"}]}})
    assert [a["type"] for a in out["status"]["addresses"]] == ["Hostname", "InternalIP"]


def test_owner_references_by_uid_and_finalizers_as_set():
    orig = {"kind": "ConfigMap", "metadata": {"finalizers": ["a", "b"],
                                              "ownerReferences": [{"uid": "1", "name": "x"}]}}
    out = smp(orig, {"metadata": {"finalizers": ["b", "c"], "ownerReferences": [{"uid": "2", "name": "y"}]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["2", "1"]
    out = smp(orig, {"metadata": {"$setElementOrder/ownerReferences": [{"uid": "1"}, {"uid": "2"}],
                                  "ownerReferences": [{"uid": "2", "name": "y"}]}})
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["1", "2"]


def test_delete_from_primitive_list_and_set_element_order_of_primitives():
    orig = {"kind": "Pod", "metadata": {"finalizers": ["a", "b", "c"]}}
    out = smp(orig, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}})
    assert out["metadata"]["finalizers"] == ["a", "c"]
    out = smp(orig, {"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}})
    assert out["metadata"]["finalizers"] == ["c", "a", "b"]


def test_patch_replace_and_delete_in_maps_and_lists():
    orig = deploy([{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}}, {"name": "b"}])
    out = smp(orig, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "resources": {"$patch": "replace", "requests": {"cpu": "2"}}}]}}}})
    assert containers(out)[0]["resources"] == {"requests": {"cpu": "2"}}
    out = smp(orig, {"spec": {"template": {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}}})
    assert containers(out) == [{"name": "c"}]
    out = smp(orig, {"spec": {"template": {"spec": {"$patch": "delete"}}}})
    assert out["spec"]["template"]["spec"] == {}


def test_patch_merge_directive_in_a_list_is_refused_and_unknown_directives_too():
    with pytest.raises(StrategicPatchError, match="cannot yet be specified"):
        smp(deploy([{"name": "a"}]), {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}})
    with pytest.raises(StrategicPatchError, match="unknown patch type"):
        smp(deploy([]), {"spec": {"$patch": "bogus"}})
    with pytest.raises(PatchError):  # what the store catches
        patch_via_store(deploy([{"name": "a"}]), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_retain_keys_drops_the_unlisted_keys_before_merging():
    orig = {"kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate",
                                                        "rollingUpdate": {"maxSurge": 1}}}}
    out = smp(orig, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_null_deletes_a_key_and_new_maps_lose_their_nulls():
    orig = {"kind": "ConfigMap", "metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}}
    out = smp(orig, {"metadata": {"labels": {"a": None}, "annotations": {"x": "1", "y": None}}, "data": None})
    assert out == {"kind": "ConfigMap", "metadata": {"labels": {"b": "2"}, "annotations": {"x": "1"}}}


def test_lists_of_kinds_without_strategies_are_replaced():
    ep = {"kind": "Endpoints", "subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]}
    out = smp(ep, {"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]})
    assert out["subsets"] == [{"addresses": [{"ip": "2.2.2.2"}]}]


def test_cronjob_template_containers_merge_by_name():
    cj = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x", "command": ["sh"]}]}}}}}}
    out = smp(cj, {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "y"}]}}}}}})
    assert out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "y", "command": ["sh"]}]


API_VERSIONS = {"Pod": "v1", "Service": "v1", "Node": "v1", "Namespace": "v1", "ServiceAccount": "v1",
                "ReplicationController": "v1", "PodTemplate": "v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1",
                "DaemonSet": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}


def test_table_agrees_with_the_official_openapi_extensions():
    """TYPES (the fallback) says what the v1.32 schemas' x-kubernetes-patch-* extensions say, both ways."""
    from apiserver import strategicpatch as sp
    if sp._definitions() is None:
        pytest.skip("OpenAPI schemas (kubernetes-validate) are not installed")
    assert set(API_VERSIONS) == {k for k in sp.TYPES if k[0].isupper() and k not in (
        "ObjectMeta", "PodTemplateSpec", "PodSpec", "Container", "PodStatus", "ServiceSpec", "ConditionsStatus",
        "NodeSpec", "NodeStatus", "TemplateSpec", "JobTemplateSpec", "CronJobSpec")}
    mismatches = []

    def walk(path, table, official, depth=0):
        for field, meta in official.items():
            mine = table.get(field, sp.Field())
            if (mine.strategy, mine.key) != (meta.strategy, meta.key):
                mismatches.append((path + "." + field, (mine.strategy, mine.key), (meta.strategy, meta.key)))
            if mine.type and meta.type and depth < 8:
                walk(path + "." + field, sp.TYPES.get(mine.type, {}),
                     sp.openapi_fields(meta.type[len(sp.OPENAPI):]), depth + 1)
    for kind, api_version in API_VERSIONS.items():
        walk(kind, sp.TYPES[kind], sp.schema_of(kind, api_version))
    assert mismatches == []


def test_openapi_and_table_give_the_same_result():
    orig = {"kind": "Pod", "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}],
                                                    "env": [{"name": "A", "value": "1"}]}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [
        {"name": "a", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
         "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]}]}}
    by_table = smp(orig, patch)
    by_openapi = smp({**orig, "apiVersion": "v1"}, patch)
    assert by_table["spec"] == by_openapi["spec"]
    assert by_table["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]
