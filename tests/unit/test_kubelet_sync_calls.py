"""What one pod start costs the runtime: the CRI calls of a first sync against a fake runtime,
and which pod updates sync at all (status-only updates do not, as upstream's podsDifferSemantically)."""
import copy

from kubelet.kubelet import pods_differ_semantically
from kubelet.kuberuntime import KubeRuntimeManager
from kubelet.container import PodStatus
from proto.cri import api_pb2 as pb

POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "labels": {"a": "1"}},
       "spec": {"containers": [{"name": "app", "image": "busybox:1.35", "command": ["sleep", "9"]}]},
       "status": {"phase": "Pending"}}


def test_status_only_updates_do_not_differ():
    new = copy.deepcopy(POD)
    new["status"] = {"phase": "Running", "podIP": "10.244.0.2"}
    new["metadata"]["resourceVersion"] = "7"
    new["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    assert not pods_differ_semantically(POD, new)


def test_spec_labels_annotations_and_deletion_differ():
    for change in (lambda p: p["spec"]["containers"][0].update(image="busybox:2"),
                   lambda p: p["metadata"]["labels"].update(a="2"),
                   lambda p: p["metadata"].update(annotations={"x": "y"}),
                   lambda p: p["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"),
                   lambda p: p["metadata"].update(deletionGracePeriodSeconds=0),
                   lambda p: p["metadata"].update(uid="u2")):
        new = copy.deepcopy(POD)
        change(new)
        assert pods_differ_semantically(POD, new)


class FakeRuntime:
    """Records CRI calls; one sandbox "s1" with IP 10.244.0.9 once RunPodSandbox ran."""

    def __init__(self):
        self.calls = []

    async def run_pod_sandbox(self, cfg):
        self.calls.append("RunPodSandbox")
        return "s1"

    async def pod_sandbox_status(self, sid):
        self.calls.append("PodSandboxStatus")
        return pb.PodSandboxStatus(id=sid, state=pb.SANDBOX_READY, created_at=2_000_000_000,
                                   metadata=pb.PodSandboxMetadata(name="p", namespace="default", uid="u1"),
                                   network=pb.PodSandboxNetworkStatus(ip="10.244.0.9"))

    async def list_pod_sandbox(self, *, labels=None):
        self.calls.append("ListPodSandbox")
        return []

    async def list_containers(self, *, labels=None):
        self.calls.append("ListContainers")
        return []

    async def image_status(self, image):
        self.calls.append("ImageStatus")
        return type("Img", (), {"id": "sha256:1"})()

    async def create_container(self, sandbox_id, cfg, sandbox_config):
        self.calls.append(("CreateContainer", sandbox_id, [e.value for e in cfg.envs if e.key == "IP"]))
        return "c1"

    async def start_container(self, cid):
        self.calls.append("StartContainer")

    async def container_status(self, cid):
        self.calls.append("ContainerStatus")
        return pb.ContainerStatus(id=cid, metadata=pb.ContainerMetadata(name="app"), state=pb.CONTAINER_RUNNING,
                                  started_at=3_000_000_000, annotations={"io.kubernetes.container.restartCount": "0"})


async def test_first_sync_reads_the_new_sandbox_without_relisting(tmp_path):
    rt = FakeRuntime()
    m = KubeRuntimeManager(rt, root_dir=str(tmp_path), node_ip="127.0.0.1", recorder=lambda *a: None)
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["env"] = [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    result = await m.sync_pod(pod, PodStatus("u1"))
    assert result.changed and not result.reasons
    assert rt.calls == ["RunPodSandbox", "PodSandboxStatus", "ImageStatus",
                        ("CreateContainer", "s1", ["10.244.0.9"]), "StartContainer"]
    rt.calls.clear()
    st = await m.status_after(result, "u1")  # the sandbox it made plus its container: no relist
    assert rt.calls == ["ContainerStatus"]
    assert [s.id for s in st.sandboxes] == ["s1"] and st.ip == "10.244.0.9"
    assert [(c.id, c.name, c.state, c.started_at) for c in st.containers] == [("c1", "app", "running", 3.0)]


async def test_a_sync_with_nothing_to_do_reports_no_change(tmp_path):
    from kubelet.container import ContainerStatus, SandboxStatus, container_hash
    rt = FakeRuntime()
    m = KubeRuntimeManager(rt, root_dir=str(tmp_path), node_ip="127.0.0.1", recorder=lambda *a: None)
    st = PodStatus("u1", sandboxes=[SandboxStatus("s1", True, 0, 1.0, "10.244.0.9")],
                   containers=[ContainerStatus("c1", "app", "running",
                                               hash=container_hash(POD["spec"]["containers"][0]))])
    result = await m.sync_pod(POD, st)
    assert not result.changed and rt.calls == []


class _Workers:
    def __init__(self):
        self.updates, self.later = [], []

    def __contains__(self, uid):
        return True

    def update(self, uid):
        self.updates.append(uid)

    def update_after(self, uid, delay):
        self.later.append((uid, delay))


def _kubelet(sync):
    from kubelet.kubelet import Kubelet
    k = object.__new__(Kubelet)  # only what PLEG event handling and the sync wrapper touch
    k.workers, k._seen_running, k._syncing, k._events_during_sync = _Workers(), {}, set(), {}
    k.pod_by_uid = {}
    k._sync_pod = sync
    return k


async def test_pleg_start_of_a_container_the_sync_saw_running_needs_no_sync():
    from kubelet.pleg import CONTAINER_CHANGED, CONTAINER_DIED, CONTAINER_STARTED, PodLifecycleEvent

    async def sync(uid):
        # PLEG relists mid-sync: the sandbox not ready yet ("died"), the container created, then started
        k._on_pleg_event(PodLifecycleEvent(uid, CONTAINER_DIED, "s1"))
        k._on_pleg_event(PodLifecycleEvent(uid, CONTAINER_CHANGED, "c1"))
        k._on_pleg_event(PodLifecycleEvent(uid, CONTAINER_STARTED, "c1"))
        k._seen_running[uid] = {"s1": "sandbox", "c1": "container"}  # what its final status saw running
    k = _kubelet(sync)
    await k.sync_pod("u1")
    k._on_pleg_event(PodLifecycleEvent("u1", CONTAINER_STARTED, "s1"))
    assert k.workers.updates == []
    k._on_pleg_event(PodLifecycleEvent("u1", CONTAINER_STARTED, "c2"))  # not started by that sync
    k._on_pleg_event(PodLifecycleEvent("u1", CONTAINER_DIED, "c1"))
    assert k.workers.updates == ["u1", "u1"]


async def test_a_container_death_during_a_sync_syncs_again():
    from kubelet.pleg import CONTAINER_DIED, PodLifecycleEvent

    async def sync(uid):
        k._on_pleg_event(PodLifecycleEvent(uid, CONTAINER_DIED, "c1"))
        k._seen_running[uid] = {"s1": "sandbox", "c1": "container"}
    k = _kubelet(sync)
    await k.sync_pod("u1")
    assert k.workers.updates == ["u1"]


async def test_a_start_the_sync_did_not_see_or_a_failed_sync_syncs_again():
    from kubelet.pleg import CONTAINER_STARTED, PodLifecycleEvent

    async def sync(uid):
        k._on_pleg_event(PodLifecycleEvent(uid, CONTAINER_STARTED, "c9"))
        raise RuntimeError("runtime down")
    k = _kubelet(sync)
    try:
        await k.sync_pod("u1")
    except RuntimeError:
        pass
    assert k.workers.updates == ["u1"] and not k._syncing


async def test_each_pod_is_resynced_on_its_own_after_its_sync():
    import dataclasses

    async def sync(uid):
        pass
    k = _kubelet(sync)
    k.config = dataclasses.make_dataclass("C", [("sync_frequency", float)])(10.0)
    k.pod_by_uid = {"u1": {}}
    await k.sync_pod("u1")
    await k.sync_pod("gone")  # deleted meanwhile: no timer keeps its worker alive
    assert [u for u, _ in k.workers.later] == ["u1"] and 10.0 <= k.workers.later[0][1] <= 15.0
