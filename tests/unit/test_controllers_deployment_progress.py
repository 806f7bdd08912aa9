"""The Deployment controller's progress deadline (progress.go): ProgressDeadlineExceeded after
progressDeadlineSeconds without progress, the requeue that checks it, and the paused/resumed
conditions, over informer stores, a fake clock and a recording fake client."""
import copy

from controllers import deployment_util as du
from controllers.deployment import DeploymentController
from kubeling.client import Informer, meta_key

T0 = 1_700_000_000.0


def ts(t: float) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def progressing(reason="ReplicaSetUpdated", status="True", at=T0):
    return {"type": "Progressing", "status": status, "reason": reason, "message": "m",
            "lastUpdateTime": ts(at), "lastTransitionTime": ts(at)}


def dep(*, deadline=10, conds=(), paused=False, status=None):
    d = {"metadata": {"name": "web", "namespace": "default", "generation": 2, "uid": "d-uid",
                      "resourceVersion": "5", "annotations": {du.REVISION_ANNOTATION: "2"}},
         "spec": {"replicas": 2, "progressDeadlineSeconds": deadline, "paused": paused,
                  "selector": {"matchLabels": {"app": "web"}},
                  "strategy": {"type": "RollingUpdate"},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
         "status": status or {}}
    if conds:
        d["status"]["conditions"] = list(conds)
    return d


def test_timed_out_and_requeue_arithmetic():
    d = dep(conds=[progressing(at=T0)])
    st = {"conditions": [progressing(at=T0)], "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}
    assert not du.deployment_timed_out(d, st, T0 + 9) and du.deployment_timed_out(d, st, T0 + 11)
    assert du.stuck_requeue_after(d, st, T0 + 4) == 7.0   # deadline - elapsed + 1 s
    assert du.stuck_requeue_after(d, st, T0 + 9.5) == 0.0  # under a second left: now, rate limited
    done = dep(conds=[progressing("NewReplicaSetAvailable")])
    assert not du.deployment_timed_out(done, {"conditions": done["status"]["conditions"]}, T0 + 100)
    assert du.stuck_requeue_after(dep(deadline=None, conds=[progressing()]), st, T0) is None
    assert du.stuck_requeue_after(dep(conds=[progressing(du.TIMED_OUT_REASON, "False")]), st, T0) is None
    assert not du.has_progress_deadline(dep(deadline=2 ** 31 - 1))


class FakeClient:
    """Records status writes; other writes answer with the object sent."""

    def __init__(self):
        self.status_writes = []

    async def create(self, resource, obj, *, namespace=None, **kw):
        return obj

    async def patch(self, resource, name, body, *, namespace=None, **kw):
        return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "6"}}

    async def replace(self, resource, obj, *, subresource=None, **kw):
        obj = copy.deepcopy(obj)  # as the wire would: later changes to the caller's dict are not ours
        if subresource == "status":
            self.status_writes.append(copy.deepcopy(obj["status"]))
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(len(self.status_writes) + 6)}}

    async def replace_status(self, resource, obj):
        return await self.replace(resource, obj, subresource="status")


class NullRecorder:
    def event(self, *a):
        pass


def controller(d, rss=()):
    client = FakeClient()
    d_inf, rs_inf, pod_inf = Informer(client, "deployments"), Informer(client, "replicasets"), Informer(client, "pods")
    d_inf.store[meta_key(d)] = d
    for r in rss:
        rs_inf.store[meta_key(r)] = r
    clock = [T0]
    c = DeploymentController(client, d_inf, rs_inf, pod_inf, recorder=NullRecorder(), clock=lambda: clock[0])
    return client, c, clock


def replica_set(name, replicas, available, template):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid",
                         "annotations": {du.REVISION_ANNOTATION: "1" if name == "old" else "2"},
                         "labels": {**template["metadata"]["labels"],
                                    "pod-template-hash": du.compute_hash(template) if name == "new" else "x"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": "d-uid", "controller": True}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available}}


async def test_stuck_rollout_times_out_after_the_deadline():
    d = dep(conds=[progressing(at=T0)],
            status={"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2,
                    "availableReplicas": 2, "unavailableReplicas": 0})
    tmpl = d["spec"]["template"]
    new_tmpl = {"metadata": {"labels": {"app": "web", "pod-template-hash": du.compute_hash(tmpl)}},
                "spec": tmpl["spec"]}
    old_tmpl = {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}},
                "spec": {"containers": [{"name": "c", "image": "old"}]}}
    client, c, clock = controller(d, [replica_set("new", 1, 0, new_tmpl), replica_set("old", 2, 2, old_tmpl)])
    clock[0] = T0 + 4
    await c.sync("default/web")
    assert not any(du.get_condition(s, "Progressing")["reason"] == du.TIMED_OUT_REASON
                   for s in client.status_writes)
    clock[0] = T0 + 11
    await c.sync("default/web")
    cond = du.get_condition(client.status_writes[-1], "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "new" has timed out progressing.')


async def test_paused_and_resumed_conditions():
    d = dep(paused=True, conds=[progressing(at=T0)])
    client, c, _ = controller(d)
    await c.sync("default/web")
    cond = du.get_condition(client.status_writes[0], "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == ("Unknown", "DeploymentPaused", "Deployment is paused")
    d = dep(paused=False, conds=[progressing(du.PAUSED_REASON, "Unknown")])
    client, c, _ = controller(d)
    await c.sync("default/web")
    assert du.get_condition(client.status_writes[0], "Progressing")["reason"] == "DeploymentResumed"
    d = dep(paused=True, conds=[progressing(du.TIMED_OUT_REASON, "False")])
    client, c, _ = controller(d)
    await c.sync("default/web")
    assert not client.status_writes or \
        du.get_condition(client.status_writes[0], "Progressing")["reason"] == du.TIMED_OUT_REASON
