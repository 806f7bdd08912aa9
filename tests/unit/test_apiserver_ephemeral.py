"""Pods' ephemeralcontainers subresource rules (apiserver/registry/core.py), as upstream's
EphemeralContainersStrategy and validateEphemeralContainers."""
from apiserver.registry.core import PodStrategy, validate_ephemeral_containers


def spec(*eph):
    return {"containers": [{"name": "app", "image": "busybox:1.35"}], "ephemeralContainers": list(eph)}


def paths(causes):
    return sorted(c.field for c in causes)


def test_valid_addition_and_the_errors():
    dbg = {"name": "dbg", "image": "busybox:1.35", "targetContainerName": "app"}
    assert validate_ephemeral_containers(spec(dbg), spec()) == []
    causes = validate_ephemeral_containers(spec({"name": "app", "image": "x", "ports": [{"containerPort": 1}]},
                                                {"name": "d2", "targetContainerName": "nope"}), spec())
    assert paths(causes) == ["spec.ephemeralContainers[0].name", "spec.ephemeralContainers[0].ports",
                             "spec.ephemeralContainers[1].image", "spec.ephemeralContainers[1].targetContainerName"]
    changed = validate_ephemeral_containers(spec({**dbg, "image": "other"}), spec(dbg))
    removed = validate_ephemeral_containers(spec(), spec(dbg))
    assert paths(changed) == paths(removed) == ["spec.ephemeralContainers"]


def test_main_resource_keeps_them_and_the_subresource_changes_only_them():
    s = PodStrategy()
    old = {"metadata": {"name": "p"}, "spec": spec({"name": "dbg", "image": "busybox:1.35"}), "status": {"phase": "Running"}}
    new = {"metadata": {"name": "p"}, "spec": {**spec(), "activeDeadlineSeconds": 5}}
    s.prepare_for_update(new, old)
    assert new["spec"]["ephemeralContainers"] == old["spec"]["ephemeralContainers"]
    via_sub = {"metadata": {"name": "p"}, "spec": {**spec({"name": "dbg", "image": "busybox:1.35"},
                                                         {"name": "dbg2", "image": "busybox:1.35"}),
                                                  "activeDeadlineSeconds": 5}}
    out = s.prepare_for_ephemeral_containers_update(via_sub, old)
    assert [c["name"] for c in out["spec"]["ephemeralContainers"]] == ["dbg", "dbg2"]
    assert "activeDeadlineSeconds" not in out["spec"] and out["status"] == {"phase": "Running"}
    assert s.validate_update(out, old) == []
