"""ReplicaSet controller logic over listers built on plain dict stores and a
recording fake client (unit tests only): the create/delete difference,
expectations, adoption, deletion order and status."""

from kubeling.client import Informer, meta_key
from controllers.controller_utils import ControllerExpectations, pod_delete_rank
from controllers.replicaset import ReplicaSetController, calculate_status, pod_from_template, slow_start_batch


class FakeClient:
    """Records writes; answers creates with a generated name."""

    def __init__(self):
        self.calls = []
        self.n = 0

    async def create(self, resource, obj, *, namespace=None, **kw):
        self.n += 1
        out = {**obj, "metadata": {**obj["metadata"], "name": f"{obj['metadata'].get('generateName', '')}{self.n}"}}
        self.calls.append(("create", resource, out))
        return out

    async def delete(self, resource, name, *, namespace=None, **kw):
        self.calls.append(("delete", resource, name))
        return {}

    async def patch(self, resource, name, patch, *, namespace=None, **kw):
        self.calls.append(("patch", resource, name, patch))
        return {"metadata": {"name": name, "namespace": namespace, **patch["metadata"]}}

    async def get(self, resource, name, *, namespace=None, **kw):
        return RS

    async def replace_status(self, resource, obj):
        self.calls.append(("status", resource, obj["status"]))
        return obj


class NullRecorder:
    def event(self, *a):
        pass


RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
      "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
               "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}}


def owned_pod(name, *, node="", ready=False, phase="Running", created="2024-01-01T00:00:00Z", labels=None):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "creationTimestamp": created,
                         "labels": labels or {"app": "web"}, "resourceVersion": "1",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                              "uid": "rs-uid", "controller": True}]},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}


def controller(pods=()):
    client = FakeClient()
    rs_inf, pod_inf = Informer(client, "replicasets"), Informer(client, "pods")
    rs_inf.store["default/web-abc"] = RS
    for p in pods:
        pod_inf.store[meta_key(p)] = p
    return client, ReplicaSetController(client, rs_inf, pod_inf, recorder=NullRecorder(), clock=lambda: 2e9)


def test_pod_from_template_has_controller_ref_and_generate_name():
    pod = pod_from_template(RS)
    assert pod["metadata"]["generateName"] == "web-abc-"
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                                   "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}]


async def test_creates_the_difference_and_waits_for_expectations():
    client, c = controller([owned_pod("a")])
    await c.sync("default/web-abc")
    creates = [x for x in client.calls if x[0] == "create"]
    assert len(creates) == 2
    assert not c.expectations.satisfied("default/web-abc")
    # The informer has not seen the pods yet: a second sync must not create again.
    client.calls.clear()
    await c.sync("default/web-abc")
    assert not [x for x in client.calls if x[0] == "create"]
    for _, _, pod in creates:
        pod = {**pod, "metadata": {**pod["metadata"], "namespace": "default", "resourceVersion": "2"}}
        c._add_pod(pod)
    assert c.expectations.satisfied("default/web-abc")


async def test_deletes_least_valuable_pods_first():
    pods = [owned_pod("ready-old", node="n1", ready=True, created="2024-01-01T00:00:00Z"),
            owned_pod("unscheduled", phase="Pending"),
            owned_pod("not-ready", node="n1"),
            owned_pod("ready-new", node="n2", ready=True, created="2024-02-01T00:00:00Z"),
            owned_pod("pending-on-node", node="n2", phase="Pending")]
    client, c = controller(pods)
    RS["spec"]["replicas"] = 1
    try:
        await c.sync("default/web-abc")
    finally:
        RS["spec"]["replicas"] = 3
    deleted = [x[2] for x in client.calls if x[0] == "delete"]
    assert sorted(deleted) == sorted(["unscheduled", "pending-on-node", "not-ready", "ready-new"])
    assert not c.expectations.satisfied("default/web-abc")
    for name in deleted:
        c._delete_pod(next(p for p in pods if p["metadata"]["name"] == name))
    assert c.expectations.satisfied("default/web-abc")


def test_delete_rank_order():
    pods = [owned_pod("ready", node="n1", ready=True), owned_pod("pending", phase="Pending"),
            owned_pod("not-ready", node="n1")]
    ordered = sorted(pods, key=lambda p: pod_delete_rank(p, {"n1": 2}))
    assert [p["metadata"]["name"] for p in ordered] == ["pending", "not-ready", "ready"]


async def test_adopts_matching_orphans_and_ignores_terminating_pods():
    orphan = owned_pod("orphan")
    orphan["metadata"]["ownerReferences"] = []
    dying = owned_pod("dying")
    dying["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    client, c = controller([orphan, dying, owned_pod("a"), owned_pod("b")])
    await c.sync("default/web-abc")
    patches = [x for x in client.calls if x[0] == "patch"]
    assert len(patches) == 1 and patches[0][2] == "orphan"
    assert patches[0][3]["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert not [x for x in client.calls if x[0] in ("create", "delete")]  # 3 counted: a, b, orphan


async def test_releases_owned_pods_that_no_longer_match():
    stray = owned_pod("stray", labels={"app": "other"})
    client, c = controller([stray, owned_pod("a"), owned_pod("b"), owned_pod("c")])
    await c.sync("default/web-abc")
    [patch] = [x for x in client.calls if x[0] == "patch"]
    assert patch[2] == "stray" and patch[3]["metadata"]["ownerReferences"] is None


def test_status_counts():
    pods = [owned_pod("a", ready=True), owned_pod("b"), owned_pod("c", ready=True, labels={"app": "web", "x": "y"})]
    st = calculate_status(RS, pods, now=2e9)
    assert st == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 2,
                  "observedGeneration": 2}
    rs = {**RS, "spec": {**RS["spec"], "minReadySeconds": 10}}
    assert calculate_status(rs, pods, now=0)["availableReplicas"] == 0


def test_expectations_expire():
    now = [0.0]
    e = ControllerExpectations(clock=lambda: now[0], timeout=300)
    e.expect_creations("k", 2)
    e.creation_observed("k")
    assert not e.satisfied("k")
    now[0] = 301
    assert e.satisfied("k")
    e.expect_deletions("k", ["ns/a"])
    e.deletion_observed("k", "ns/other")
    assert not e.satisfied("k")
    e.deletion_observed("k", "ns/a")
    assert e.satisfied("k")


async def test_slow_start_stops_after_a_failing_batch():
    calls = []

    async def fn():
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("quota")

    ok, err = await slow_start_batch(20, 1, fn)
    assert ok == 3 and isinstance(err, RuntimeError) and len(calls) == 7  # batches 1, 2, 4
