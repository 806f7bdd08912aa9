"""startContainer's backoff and image handling against a fake CRI runtime (no Docker)."""
from kubelet.backoff import Backoff
from kubelet.container import ContainerStatus, PodStatus, SandboxStatus
from kubelet.cri import CRIError
from kubelet.kuberuntime import KubeRuntimeManager, SyncResult


class FakeRuntime:
    def __init__(self, *, image_present=True, pull_error=None):
        self.image_present = image_present
        self.pull_error = pull_error
        self.calls = []

    async def image_status(self, image):
        self.calls.append(("image_status", image))
        return type("Img", (), {"id": "sha256:1"})() if self.image_present else None

    async def pull_image(self, image, sandbox_config=None):
        self.calls.append(("pull", image))
        if self.pull_error:
            raise CRIError("PullImage", None, self.pull_error)
        return "sha256:1"

    async def create_container(self, sandbox_id, cfg, sandbox_config):
        self.calls.append(("create", cfg.metadata.name, cfg.metadata.attempt, cfg.log_path))
        return "cid"

    async def start_container(self, cid):
        self.calls.append(("start", cid))

    async def remove_container(self, cid):
        self.calls.append(("remove", cid))


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
       "spec": {"containers": [{"name": "app", "image": "busybox:1.35", "command": ["sh"], "args": ["-c", "exit 1"]}]}}


def manager(rt, clock, root):
    events = []
    m = KubeRuntimeManager(rt, root_dir=str(root), node_ip="127.0.0.1",
                           recorder=lambda pod, t, reason, msg: events.append(reason),
                           backoff=Backoff(initial=10, max=40, clock=clock),
                           image_backoff=Backoff(initial=10, max=40, clock=clock))
    return m, events


def status(*containers):
    return PodStatus("u1", sandboxes=[SandboxStatus("s1", True, 0, 1.0, "10.244.0.2")], containers=list(containers))


async def test_first_start_uses_restart_count_zero_and_log_path(tmp_path):
    rt, clock = FakeRuntime(), Clock()
    m, events = manager(rt, clock, tmp_path)
    res = SyncResult()
    ok = await m.start_container(POD, POD["spec"]["containers"][0], status(), "s1", m.sandbox_config(POD, 0), res)
    assert ok and ("create", "app", 0, "app/0.log") in rt.calls and ("start", "cid") in rt.calls
    assert ("pull", "busybox:1.35") not in rt.calls  # IfNotPresent and present
    # As upstream: "Container image ... already present on machine" is a Pulled event.
    assert events == ["Pulled", "Created", "Started"]


async def test_crashloop_backoff_between_restarts(tmp_path):
    """The first restart is immediate, the second waits 10 s (CrashLoopBackOff), then 20 s."""
    rt, clock = FakeRuntime(), Clock()
    m, events = manager(rt, clock, tmp_path)
    spec = POD["spec"]["containers"][0]
    dead = ContainerStatus("old", "app", "exited", finished_at=clock.t, exit_code=1, restart_count=0)
    res = SyncResult()
    assert await m.start_container(POD, spec, status(dead), "s1", m.sandbox_config(POD, 0), res)
    assert ("create", "app", 1, "app/1.log") in rt.calls
    dead2 = ContainerStatus("old2", "app", "exited", finished_at=clock.t + 1, exit_code=1, restart_count=1)
    clock.t += 2
    res = SyncResult()
    assert not await m.start_container(POD, spec, status(dead2), "s1", m.sandbox_config(POD, 0), res)
    assert res.reasons["app"][0] == "CrashLoopBackOff" and "back-off 10s" in res.reasons["app"][1]
    assert 8 <= res.requeue_after <= 10
    clock.t += 10
    res = SyncResult()
    assert await m.start_container(POD, spec, status(dead2), "s1", m.sandbox_config(POD, 0), res)
    assert m.backoff.get("u1/app") == 20


async def test_image_pull_failure_then_backoff(tmp_path):
    rt, clock = FakeRuntime(image_present=False, pull_error="no registry"), Clock()
    m, events = manager(rt, clock, tmp_path)
    spec = POD["spec"]["containers"][0]
    res = SyncResult()
    assert not await m.start_container(POD, spec, status(), "s1", m.sandbox_config(POD, 0), res)
    assert res.reasons["app"][0] == "ErrImagePull" and "no registry" in res.reasons["app"][1]
    res = SyncResult()
    assert not await m.start_container(POD, spec, status(), "s1", m.sandbox_config(POD, 0), res)
    assert res.reasons["app"][0] == "ImagePullBackOff"
    assert sum(1 for c in rt.calls if c[0] == "pull") == 1
    clock.t += 11
    rt.pull_error = None
    res = SyncResult()
    assert await m.start_container(POD, spec, status(), "s1", m.sandbox_config(POD, 0), res)
    assert "Pulled" in events


async def test_never_pull_policy_reports_err_image_never_pull(tmp_path):
    rt, clock = FakeRuntime(image_present=False), Clock()
    m, _ = manager(rt, clock, tmp_path)
    spec = dict(POD["spec"]["containers"][0], imagePullPolicy="Never")
    res = SyncResult()
    assert not await m.start_container(POD, spec, status(), "s1", m.sandbox_config(POD, 0), res)
    assert res.reasons["app"][0] == "ErrImageNeverPull"
