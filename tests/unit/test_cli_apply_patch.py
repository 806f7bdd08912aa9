"""apply's three-way merge patch and its last-applied-configuration annotation."""
import json

import pytest

from kubeling.cli.apply import decode_last_applied, go_json, last_applied_configuration, with_last_applied
from kubeling.cli.mergepatch import apply_merge_patch, create_merge_patch, three_way_merge_patch
from kubeling.cli.printers import LAST_APPLIED


def deployment(replicas=3, **extra_spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox:1.35",
                                                           "ports": [{"containerPort": 8080}]}]}},
                     **extra_spec}}


def live_after_apply(manifest):
    """What the server would hold: the manifest plus defaults and server-set fields."""
    live = json.loads(json.dumps(with_last_applied(manifest)))
    live["metadata"].update(uid="u1", resourceVersion="7", generation=1, creationTimestamp="2024-01-01T00:00:00Z")
    spec = live["spec"]
    spec.setdefault("strategy", {"type": "RollingUpdate"})
    c = spec["template"]["spec"]["containers"][0]
    c["imagePullPolicy"] = "IfNotPresent"
    c["terminationMessagePath"] = "/dev/termination-log"
    for p in c["ports"]:
        p["protocol"] = "TCP"
    live["status"] = {"replicas": 3}
    return live


def test_annotation_is_kubectls_encoding():
    """Compact JSON, sorted keys, empty annotations map, trailing newline (GetModifiedConfiguration)."""
    obj = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "a<b", "namespace": "default"}}
    assert last_applied_configuration(obj) == \
        '{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"a\\u003cb","namespace":"default"}}\n'
    annotated = with_last_applied(obj)
    assert decode_last_applied(annotated)["metadata"]["annotations"] == {}
    # Re-annotating an annotated object gives the same value (no recursion).
    assert with_last_applied(annotated) == annotated
    assert go_json({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'


def test_reapply_of_same_manifest_is_empty_despite_server_defaults():
    m = deployment()
    assert three_way_merge_patch(decode_last_applied(live_after_apply(m)), with_last_applied(m),
                                 live_after_apply(m)) == {}


def test_changed_replicas_patches_only_replicas_and_annotation():
    live = live_after_apply(deployment(3))
    new = deployment(5)
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(new), live)
    assert set(patch) == {"metadata", "spec"}
    assert patch["spec"] == {"replicas": 5}
    assert patch["metadata"] == {"annotations": {LAST_APPLIED: last_applied_configuration(new)}}


def test_field_removed_from_manifest_is_deleted_with_null():
    old = deployment(3, minReadySeconds=5)
    old["metadata"]["labels"]["tier"] = "front"
    live = live_after_apply(old)
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(deployment(3)), live)
    assert patch["spec"] == {"minReadySeconds": None}
    assert patch["metadata"]["labels"] == {"tier": None}
    # Server-defaulted fields (strategy) the user never set are left alone.
    assert "strategy" not in patch["spec"]


def test_fields_set_by_others_are_kept_unless_the_manifest_owns_them():
    m = deployment()
    live = live_after_apply(m)
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    live["spec"]["replicas"] = 9  # someone scaled it
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(m), live)
    assert patch == {"spec": {"replicas": 3}}


def test_list_change_replaces_the_whole_list():
    live = live_after_apply(deployment())
    new = deployment()
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.36"
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(new), live)
    assert patch["spec"]["template"]["spec"]["containers"] == new["spec"]["template"]["spec"]["containers"]


def test_list_element_field_removed_is_resent():
    """Dropping a field inside a list element must reach the server (the list is replaced)."""
    old = deployment()
    old["spec"]["template"]["spec"]["containers"][0]["args"] = ["-v"]
    live = live_after_apply(old)
    new = deployment()
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(new), live)
    assert patch["spec"]["template"]["spec"]["containers"] == new["spec"]["template"]["spec"]["containers"]


def test_list_changed_by_someone_else_is_restored():
    m = deployment()
    live = live_after_apply(m)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "edited"
    patch = three_way_merge_patch(decode_last_applied(live), with_last_applied(m), live)
    assert patch["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"


def test_no_last_applied_never_deletes():
    live = live_after_apply(deployment())
    del live["metadata"]["annotations"][LAST_APPLIED]
    live["spec"]["paused"] = True
    patch = three_way_merge_patch(None, with_last_applied(deployment()), live)
    assert patch["metadata"] == {"annotations": {LAST_APPLIED: last_applied_configuration(deployment())}}
    assert "paused" not in patch["spec"] and "null" not in json.dumps(patch)


@pytest.mark.parametrize("original, modified", [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}}),
    ({"a": [1, 2]}, {"a": [1, 2, 3], "e": {}}),
    ({"a": {"b": 1}}, {"a": 1}),
])
def test_create_and_apply_merge_patch_roundtrip(original, modified):
    assert apply_merge_patch(original, create_merge_patch(original, modified)) == modified


def test_applying_the_three_way_patch_gives_the_manifest_fields():
    old = deployment(3, minReadySeconds=5)
    live = live_after_apply(old)
    new = deployment(4)
    result = apply_merge_patch(live, three_way_merge_patch(decode_last_applied(live), with_last_applied(new), live))
    assert result["spec"]["replicas"] == 4 and "minReadySeconds" not in result["spec"]
    assert result["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert decode_last_applied(result)["spec"]["replicas"] == 4
