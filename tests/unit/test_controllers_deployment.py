"""Deployment arithmetic: template hash, fenceposts, new-RS sizing,
proportional scaling, status and completeness (deployment_util)."""
import pytest

from controllers import deployment_util as du


def dep(replicas=3, *, strategy=None, generation=1, status=None):
    return {"metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"replicas": replicas, "strategy": strategy or {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
            "status": status or {}}


def rs(name, replicas, *, available=None, created="2024-01-01T00:00:00Z", max_replicas=None):
    meta = {"name": name, "creationTimestamp": created, "annotations": {}}
    if max_replicas is not None:
        meta["annotations"][du.MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    return {"metadata": meta, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "availableReplicas": replicas if available is None else available,
                       "readyReplicas": replicas if available is None else available}}


def test_fnv32a_and_safe_encoding():
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.safe_encode("0129") == "456f"  # each byte mod 27 into "bcdfghjklmnpqrstvwxz2456789"


def test_hash_is_stable_ignores_key_order_and_uses_collision_count():
    t1 = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    t2 = {"spec": {"containers": [{"image": "x", "name": "c"}]}, "metadata": {"labels": {"b": "2", "a": "1"}}}
    h = du.compute_hash(t1)
    assert h == du.compute_hash(t2)
    assert h != du.compute_hash(t1, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    t3 = {**t1, "spec": {"containers": [{"name": "c", "image": "y"}]}}
    assert du.compute_hash(t3) != h


def test_equal_ignore_hash():
    a = {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"x": 1}}
    b = {"metadata": {"labels": {"app": "web"}}, "spec": {"x": 1}}
    assert du.equal_ignore_hash(a, b)
    assert not du.equal_ignore_hash(a, {**b, "spec": {"x": 2}})


@pytest.mark.parametrize("replicas, surge, unavailable, want", [
    pytest.param(3, None, None, (1, 0), id="defaults-25%-of-3"),
    pytest.param(10, None, None, (3, 2), id="defaults-25%-of-10"),
    pytest.param(4, 0, 0, (0, 1), id="both-zero-allows-one-unavailable"),
    pytest.param(4, "50%", 1, (2, 1), id="percent-and-int"),
])
def test_resolve_fenceposts(replicas, surge, unavailable, want):
    ru = {k: v for k, v in (("maxSurge", surge), ("maxUnavailable", unavailable)) if v is not None}
    d = dep(replicas, strategy={"type": "RollingUpdate", "rollingUpdate": ru})
    assert du.resolve_fenceposts(d) == want


def test_max_unavailable_is_zero_for_recreate_and_capped():
    assert du.max_unavailable(dep(3, strategy={"type": "Recreate"})) == 0
    assert du.max_unavailable(dep(2, strategy={"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": 5}})) == 2


def test_new_rs_new_replicas():
    d = dep(3)  # surge 1
    old, new = rs("old", 3), rs("new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 1
    old["spec"]["replicas"] = 2
    new["spec"]["replicas"] = 1
    assert du.new_rs_new_replicas(d, [old, new], new) == 2
    assert du.new_rs_new_replicas(dep(3, strategy={"type": "Recreate"}), [old, new], new) == 3


def test_proportional_scaling_mid_rollout():
    d = dep(20, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    new = rs("new", 5, created="2024-02-01T00:00:00Z", max_replicas=13)
    old = rs("old", 8, created="2024-01-01T00:00:00Z", max_replicas=13)
    sizes = du.proportional_sizes(d, [new, old])
    assert sizes == {"old": 14, "new": 9}
    assert sum(sizes.values()) == 23


def test_status_and_completeness():
    d = dep(3, generation=2, status={"observedGeneration": 1})
    new = rs("new", 3)
    st = du.calculate_status([new, rs("old", 0)], new, d)
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"], st["unavailableReplicas"],
            st["observedGeneration"]) == (3, 3, 3, 0, 2)
    assert du.get_condition(st, "Available")["status"] == "True"
    assert du.deployment_complete(d, st)
    st = du.calculate_status([rs("old", 2, available=1), rs("new", 2, available=0)], rs("new", 2, available=0), d)
    assert du.get_condition(st, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert st["unavailableReplicas"] == 3 and not du.deployment_complete(d, st)


def test_set_condition_keeps_transition_time_when_status_unchanged():
    st = {}
    du.set_condition(st, "Progressing", "True", "ReplicaSetUpdated", "m")
    first = st["conditions"][0]["lastTransitionTime"]
    st["conditions"][0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    du.set_condition(st, "Progressing", "True", "NewReplicaSetAvailable", "done")
    assert first and st["conditions"][0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert st["conditions"][0]["reason"] == "NewReplicaSetAvailable"


def test_new_rs_annotations():
    d = dep(3)
    d["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}
    r = {"metadata": {"name": "x"}}
    assert du.set_new_rs_annotations(d, r, 2, exists=False)
    assert r["metadata"]["annotations"] == {"team": "a", du.REVISION_ANNOTATION: "2",
                                            du.DESIRED_REPLICAS_ANNOTATION: "3", du.MAX_REPLICAS_ANNOTATION: "4"}
    assert not du.set_new_rs_annotations(d, r, 1, exists=True)  # revisions never go down
