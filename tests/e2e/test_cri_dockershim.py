"""The CRI shim as a real process driven only over gRPC, in the spirit of critest.

Needs root and a running Docker with the busybox:1.35 image. Uses a test-only
node name (so only our objects are seen), the bridge "kltest1" and the subnet
10.244.251.0/24 written through UpdateRuntimeConfig. Every container with our
node label, the bridge and the shim processes are removed in finally.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import grpc
import pytest

import support
from proto.cri import api_pb2 as cri
from proto.cri import api_pb2_grpc

docker = pytest.importorskip("docker")

BRIDGE = "kltest1"
POD_CIDR = "10.244.251.0/24"
IMAGE = "busybox:1.35"


def _docker_client():
    return support.docker_or_skip("CRI e2e tests", IMAGE)


class Shim:
    """One shim process on a socket in a tmp dir; restartable."""

    def __init__(self, tmp, node: str) -> None:
        self.tmp = tmp
        self.node = node
        self.sock = os.path.join(tmp, "cri.sock")
        self.procs = support.ProcessGroup(tmp)
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "kubelet.dockershim", "--listen", f"unix://{self.sock}",
                "--node-name", self.node, "--state-dir", os.path.join(self.tmp, "state"),
                "--cni-bin-dir", os.path.join(self.tmp, "bin"), "--cni-conf-dir", os.path.join(self.tmp, "net.d"),
                "--cni-bridge", BRIDGE, "--pod-infra-container-image", IMAGE]
        self.proc = self.procs.spawn("shim", args)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        grpc.channel_ready_future(self.channel).result(timeout=15)
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.im = api_pb2_grpc.ImageServiceStub(self.channel)
        # The socket may exist a moment before the servicers answer.
        support.wait_for("CRI Version", lambda: self.rt.Version(cri.VersionRequest(), timeout=5) is not None,
                         15, 0.1, errors=(grpc.RpcError,))

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.procs.stop("shim")


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("CRI e2e tests need root (netns, bridges)")
    client = _docker_client()
    tmp = str(tmp_path_factory.mktemp("cri"))
    node = f"kltest-cri-{uuid.uuid4().hex[:6]}"
    s = Shim(tmp, node)
    try:
        s.start()
        s.initial_status = s.rt.Status(cri.StatusRequest(), timeout=10)
        s.rt.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(runtime_config=cri.RuntimeConfig(
            network_config=cri.NetworkConfig(pod_cidr=POD_CIDR))), timeout=10)
        yield s
    finally:
        s.stop()
        for c in client.containers.list(all=True, filters={"label": f"io.kubeling.node={node}"}):
            c.remove(force=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=10, check=False)


def sandbox_config(tmp: str, name: str) -> cri.PodSandboxConfig:
    uid = uuid.uuid4().hex
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="kltest", uid=uid, attempt=0),
        hostname=name, log_directory=os.path.join(tmp, "pods", f"kltest_{name}_{uid}"),
        labels={"app": name}, annotations={"note": "kept verbatim"},
        dns_config=cri.DNSConfig(servers=["10.96.0.10"], searches=["kltest.svc.cluster.local"]))


def http_get(url: str, *, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod IPs are never proxied
            with opener.open(url, timeout=2) as r:
                return r.read()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_version_and_status(shim):
    """Version names Docker; NetworkReady was false before the pod CIDR, true after."""
    v = shim.rt.Version(cri.VersionRequest(), timeout=10)
    assert (v.runtime_name, v.runtime_api_version) == ("docker", "v1") and v.runtime_version
    before = {c.type: c.status for c in shim.initial_status.status.conditions}
    assert before == {"RuntimeReady": True, "NetworkReady": False}
    after = {c.type: c.status for c in shim.rt.Status(cri.StatusRequest(), timeout=10).status.conditions}
    assert after == {"RuntimeReady": True, "NetworkReady": True}
    conflist = os.path.join(shim.tmp, "net.d", "10-kubeling.conflist")
    assert POD_CIDR in open(conflist).read()


def test_pod_lifecycle(shim):
    """Sandbox with IP, busybox httpd reachable from the host, exec, CRI logs, stop, remove."""
    rt = shim.rt
    sc = sandbox_config(shim.tmp, "web")
    sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=sc), timeout=60).pod_sandbox_id
    st = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status
    assert st.state == cri.SANDBOX_READY
    assert st.network.ip.startswith("10.244.251.")
    assert st.metadata.name == "web" and st.created_at > 0
    assert st.labels["app"] == "web" and dict(st.annotations) == {"note": "kept verbatim"}
    listed = rt.ListPodSandbox(cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(
        label_selector={"app": "web"})), timeout=10).items
    assert [i.id for i in listed] == [sid]

    cc = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="httpd"), image=cri.ImageSpec(image=IMAGE),
                             command=["sh", "-c"], args=["echo started; echo oops >&2; mkdir -p /www; echo hello-kubeling > /www/index.html; "
                                   "exec httpd -f -p 8080 -h /www"],
                             envs=[cri.KeyValue(key="GREETING", value="hi")], log_path="httpd/0.log",
                             labels={"role": "server"})
    cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=cc, sandbox_config=sc),
                             timeout=30).container_id
    assert rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid), timeout=10).status.state == \
        cri.CONTAINER_CREATED
    rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=30)
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid), timeout=10).status
    assert cs.state == cri.CONTAINER_RUNNING and cs.started_at >= cs.created_at > 0
    assert cs.image.image == IMAGE and cs.image_ref.startswith("sha256:")
    assert cs.log_path == os.path.join(sc.log_directory, "httpd/0.log")

    assert http_get(f"http://{st.network.ip}:8080/") == b"hello-kubeling\n"

    ex = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "echo $GREETING; cat /etc/resolv.conf; exit 3"],
                                         timeout=10), timeout=20)
    assert ex.exit_code == 3 and ex.stdout.startswith(b"hi\n") and b"nameserver 10.96.0.10" in ex.stdout
    ex = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10), timeout=20)
    assert ex.stdout.strip() == b"web"
    # No seccomp profile asked for: Unconfined, as dockershim (and the kubelet's --seccomp-default=false).
    ex = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=["grep", "Seccomp:", "/proc/self/status"],
                                         timeout=10), timeout=20)
    assert ex.stdout.split() == [b"Seccomp:", b"0"], ex.stdout

    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        with open(cs.log_path) as f:
            lines = f.read().splitlines()
        if len(lines) >= 2:
            break
        time.sleep(0.2)
    parsed = sorted((ln.split(" ", 3)[1:] for ln in lines), key=lambda p: p[0])
    assert parsed == [["stderr", "F", "oops"], ["stdout", "F", "started"]], lines
    assert all(ln.split(" ")[0].endswith("Z") and "T" in ln.split(" ")[0] for ln in lines)

    by_state = rt.ListContainers(cri.ListContainersRequest(filter=cri.ContainerFilter(
        pod_sandbox_id=sid, state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING))), timeout=10).containers
    assert [c.id for c in by_state] == [cid] and by_state[0].labels["role"] == "server"

    rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=1), timeout=30)
    cs = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid), timeout=10).status
    assert cs.state == cri.CONTAINER_EXITED and cs.finished_at >= cs.started_at and cs.reason
    rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=1), timeout=30)  # idempotent

    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status.state == \
        cri.SANDBOX_NOTREADY
    leases = os.listdir(os.path.join(shim.tmp, "state", "ipam", "kubeling"))
    assert st.network.ip not in leases
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid), timeout=30)
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid), timeout=30)
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert not rt.ListPodSandbox(cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=sid)), timeout=10).items


@pytest.mark.parametrize("call", [
    pytest.param(lambda s: s.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id="feedface"), timeout=10),
                 id="sandbox-status"),
    pytest.param(lambda s: s.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id="feedface"), timeout=10),
                 id="stop-sandbox"),
    pytest.param(lambda s: s.rt.ContainerStatus(cri.ContainerStatusRequest(container_id="feedface"), timeout=10),
                 id="container-status"),
    pytest.param(lambda s: s.rt.StartContainer(cri.StartContainerRequest(container_id="no-such-id"), timeout=10),
                 id="start-container"),
    pytest.param(lambda s: s.rt.ExecSync(cri.ExecSyncRequest(container_id="feedface", cmd=["true"]), timeout=10),
                 id="exec-sync"),
])
def test_unknown_ids_are_not_found(shim, call):
    """Unknown ids answer NOT_FOUND with a message, never an internal error."""
    with pytest.raises(grpc.RpcError) as err:
        call(shim)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "not found" in err.value.details()


def _with_seccomp(sc: cri.PodSandboxConfig, profile: cri.SecurityProfile) -> cri.PodSandboxConfig:
    sc.linux.security_context.seccomp.CopyFrom(profile)
    return sc


def test_bad_arguments(shim):
    """Missing fields, a bad CIDR and an unreadable seccomp profile answer INVALID_ARGUMENT."""
    for call in (lambda: shim.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=cri.PodSandboxConfig()), timeout=10),
                 lambda: shim.rt.UpdateRuntimeConfig(cri.UpdateRuntimeConfigRequest(runtime_config=cri.RuntimeConfig(
                     network_config=cri.NetworkConfig(pod_cidr="10.244.999.0/24"))), timeout=10),
                 lambda: shim.im.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec()), timeout=10),
                 lambda: shim.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=_with_seccomp(
                     sandbox_config(shim.tmp, "badseccomp"), cri.SecurityProfile(
                         profile_type=cri.SecurityProfile.Localhost, localhost_ref="/nonexistent/profile.json"))),
                     timeout=10)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


def test_images(shim):
    """Local images are listed and pulled as-is; an absent one has no status and a clear pull error."""
    assert any(IMAGE in i.repo_tags for i in shim.im.ListImages(cri.ListImagesRequest(), timeout=10).images)
    st = shim.im.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=IMAGE)), timeout=10)
    assert st.image.id.startswith("sha256:") and st.image.size > 0
    assert shim.im.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=IMAGE)), timeout=10).image_ref == st.image.id
    absent = "kltest.invalid/absent:0.0"
    assert not shim.im.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=absent)), timeout=10).HasField("image")
    with pytest.raises(grpc.RpcError) as err:
        shim.im.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=absent)), timeout=150)
    assert f"image {absent} not present locally and no registry reachable" in err.value.details()
    fs = shim.im.ImageFsInfo(cri.ImageFsInfoRequest(), timeout=10).image_filesystems
    assert fs and fs[0].used_bytes.value > 0


def test_restart_recovers_from_docker(shim):
    """A restarted shim lists the sandbox with its IP and does not duplicate log lines."""
    rt = shim.rt
    sc = sandbox_config(shim.tmp, "survivor")
    sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=sc), timeout=60).pod_sandbox_id
    ip = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status.network.ip
    cc = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="ticker"), image=cri.ImageSpec(image=IMAGE),
                             command=["sh", "-c", "echo one; sleep 3; echo two; sleep 1000"], log_path="ticker/0.log")
    cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=cc, sandbox_config=sc),
                             timeout=30).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=30)
    log_path = os.path.join(sc.log_directory, "ticker/0.log")
    time.sleep(1)
    shim.stop()
    shim.start()
    rt = shim.rt
    items = rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=10).items
    assert [(i.id, i.state) for i in items] == [(sid, cri.SANDBOX_READY)]
    assert rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status.network.ip == ip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log_path) as f:
            msgs = [ln.split(" ", 3)[3] for ln in f.read().splitlines()]
        if "two" in msgs:
            break
        time.sleep(0.2)
    assert msgs == ["one", "two"]
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert not rt.ListContainers(cri.ListContainersRequest(), timeout=10).containers


def _stream(url: str, *, send: bytes = b"", timeout: float = 20.0) -> dict[int, bytes]:
    """Connect to a CRI streaming URL with the v5 remotecommand protocol; send ``send`` on stdin and
    close it; return the bytes received per channel until the status frame."""
    import asyncio

    from websockets.asyncio.client import connect

    async def run() -> dict[int, bytes]:
        got: dict[int, bytes] = {}
        async with connect("ws" + url[len("http"):], subprotocols=["v5.channel.k8s.io"], proxy=None) as ws:
            if send:
                await ws.send(b"\x00" + send)
                await ws.send(b"\xff\x00")  # v5 close of stdin
            async for msg in ws:
                got[msg[0]] = got.get(msg[0], b"") + msg[1:]
                if msg[0] == 3:
                    break
        return got
    return asyncio.run(asyncio.wait_for(run(), timeout))


def test_attach_to_a_containers_own_stdio(shim):
    """CRI Attach: the URL of the streaming server joins the container's own stdin/stdout (the process
    reads what the client sends, its answer comes back on stdout, then a Success status); a container
    made without stdin refuses stdin, and bad requests are clear gRPC errors."""
    rt = shim.rt
    sc = sandbox_config(shim.tmp, "attach")
    sid = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=sc), timeout=60).pod_sandbox_id
    try:
        cc = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="reader"), image=cri.ImageSpec(image=IMAGE),
                                 command=["sh", "-c", "read x; echo got $x"], stdin=True, stdin_once=True,
                                 log_path="reader/0.log")
        cid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=cc, sandbox_config=sc),
                                 timeout=30).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=30)
        url = rt.Attach(cri.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True), timeout=10).url
        assert "/attach/" in url
        got = _stream(url, send=b"hello\n")
        assert got.get(1) == b"got hello\n" and b'"Success"' in got[3], got

        quiet = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="quiet"), image=cri.ImageSpec(image=IMAGE),
                                    command=["sleep", "60"], log_path="quiet/0.log")
        qid = rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, config=quiet, sandbox_config=sc),
                                 timeout=30).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=qid), timeout=30)
        for req, code in ((cri.AttachRequest(container_id=qid, stdin=True, stdout=True), grpc.StatusCode.FAILED_PRECONDITION),
                          (cri.AttachRequest(container_id=qid), grpc.StatusCode.INVALID_ARGUMENT),
                          (cri.AttachRequest(container_id="feedface", stdout=True), grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as err:
                rt.Attach(req, timeout=10)
            assert err.value.code() == code and err.value.details(), err.value
    finally:
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
