"""``kubectl exec`` and ``kubectl port-forward`` end to end: real kubectl 1.32 -> apiserver -> kubelet
-> CRI shim -> Docker (port-forward: -> the pod's IP).

Real processes on free ports: etcd + apiserver (support.control_plane), the
CRI shim and the kubelet with test-only names (node "extest-kubelet", bridge
"extestkl0", pod CIDR 10.244.252.0/24), as tests/e2e/test_kubelet_pods.py.
Needs root, Docker with busybox:1.35, /usr/bin/etcd and /usr/bin/kubectl.
Containers (by the shim's node label), the bridge and every process are
removed in finally.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import httpx
import pytest
from websockets.asyncio.client import connect

import support
from support import wait_for

NODE = "extest-kubelet"
BRIDGE = "extestkl0"
POD_CIDR = "10.244.252.0/24"
IMAGE = "busybox:1.35"
POD = "exec-target"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """etcd + apiserver + shim + kubelet, and a Running busybox pod; yields a dict of handles."""
    docker_client = support.node_or_skip("exec e2e tests", IMAGE, kubectl=True)
    with support.node(tmp_path_factory.mktemp("exec"), name=NODE, bridge=BRIDGE, pod_cidr=POD_CIDR,
                      docker_client=docker_client, image=IMAGE) as n:
        http = n.http
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": "default"},
               "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}}
        # The apiserver may still be bootstrapping the default namespace: retry, bounded.
        wait_for("pod created", lambda: http.post("/api/v1/namespaces/default/pods", json=pod).status_code
                 in (201, 409), 30)

        def running():
            return http.get(f"/api/v1/namespaces/default/pods/{POD}").json() \
                .get("status", {}).get("phase") == "Running"
        try:
            wait_for("pod Running", running, 60)
        except AssertionError:
            raise AssertionError("pod not Running\n" + n.logs()) from None
        yield {"http": http, "procs": n.procs, "api": n.api, "tmp": str(n.cp.tmp), "kubelet": n.kubelet}


@pytest.fixture(scope="module")
def kubectl(cluster):
    """Run the real kubectl against the test apiserver: kubectl(*args, input=) -> CompletedProcess."""
    home = os.path.join(cluster["tmp"], "kubectl-home")
    os.makedirs(home, exist_ok=True)
    kc = os.path.join(home, "kubeconfig")
    with open(kc, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: k, cluster: {{server: "{cluster['api']}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: k, context: {{cluster: k, user: u, namespace: default}}}}]
current-context: k
""")

    def run(*args, input=None):
        return subprocess.run([KUBECTL, "--kubeconfig", kc, "--cache-dir", os.path.join(home, "cache"), *args],
                              input=input, capture_output=True, text=True, timeout=60,
                              env={"HOME": home, "PATH": "/usr/bin:/bin"})
    return run


def _diag(cluster, r) -> str:
    return (f"rc={r.returncode}\nstdout={r.stdout!r}\nstderr={r.stderr!r}\napiserver log:\n"
            + cluster["procs"].log("apiserver")[-3000:] + "\nkubelet log:\n"
            + cluster["procs"].log("kubelet")[-3000:] + "\nshim log:\n" + cluster["procs"].log("shim")[-3000:])


def test_exec_echo_prints_output(cluster, kubectl):
    """`kubectl exec POD -- echo hello` prints hello and exits 0."""
    r = kubectl("exec", POD, "--", "echo", "hello")
    assert r.returncode == 0 and r.stdout == "hello\n", _diag(cluster, r)


def test_exec_propagates_exit_code(cluster, kubectl):
    """`sh -c 'exit 3'` -> kubectl exits 3 (Status NonZeroExitCode, cause ExitCode "3")."""
    r = kubectl("exec", POD, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, _diag(cluster, r)


def test_exec_stdin_reaches_command(cluster, kubectl):
    """`echo data | kubectl exec -i POD -- cat` prints data (stdin relayed, v5 close ends cat)."""
    r = kubectl("exec", "-i", POD, "--", "cat", input="data\n")
    assert r.returncode == 0 and r.stdout == "data\n", _diag(cluster, r)


def test_exec_failing_command_has_stderr(cluster, kubectl):
    """`ls /nonexistent` -> non-zero exit, the error on stderr, nothing on stdout."""
    r = kubectl("exec", POD, "--", "ls", "/nonexistent")
    assert r.returncode != 0 and "nonexistent" in r.stderr and r.stdout == "", _diag(cluster, r)


def test_exec_separate_streams_and_v4(cluster):
    """A raw v4.channel.k8s.io client sees stdout on channel 1, stderr on channel 2, then a Failure
    status with the exit code on channel 3."""
    url = (cluster["api"].replace("http://", "ws://") + f"/api/v1/namespaces/default/pods/{POD}/exec"
           "?command=sh&command=-c&command=echo+out%3B+echo+err+1%3E%262%3B+exit+7&stdout=1&stderr=1")

    async def run():
        frames = {1: b"", 2: b"", 3: b""}
        async with connect(url, subprotocols=["v4.channel.k8s.io"], proxy=None, open_timeout=10) as ws:
            assert ws.subprotocol == "v4.channel.k8s.io"
            async for msg in ws:
                frames[msg[0]] += msg[1:]
        return frames
    frames = asyncio.run(asyncio.wait_for(run(), 30))
    assert frames[1] == b"out\n" and frames[2] == b"err\n"
    status = json.loads(frames[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]


def test_exec_without_websocket_is_400(cluster):
    """A SPDY (non-websocket) upgrade gets a 400 Status saying websockets are required."""
    r = cluster["http"].post(f"/api/v1/namespaces/default/pods/{POD}/exec?command=true&stdout=true",
                             headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    assert "websocket" in r.json()["message"]


def test_exec_unknown_container_is_reported(cluster, kubectl):
    """An unknown container -> kubectl fails with the apiserver's message."""
    r = kubectl("exec", POD, "-c", "nope", "--", "true")
    assert r.returncode != 0 and "nope" in r.stderr, _diag(cluster, r)


def _ws_exec(cluster, query: str, *, send: list[bytes] = (), close_after: float | None = None,
             protocol: str = "v5.channel.k8s.io") -> dict[int, bytes]:
    """Raw websocket exec through the apiserver: frames received per channel."""
    url = cluster["api"].replace("http://", "ws://") + f"/api/v1/namespaces/default/pods/{POD}/exec?{query}"

    async def run():
        frames: dict[int, bytes] = {}
        async with connect(url, subprotocols=[protocol], proxy=None, open_timeout=10) as ws:
            for m in send:
                await ws.send(m)
            if close_after is not None:
                await asyncio.sleep(close_after)
                return frames
            async for msg in ws:
                frames[msg[0]] = frames.get(msg[0], b"") + msg[1:]
        return frames
    return asyncio.run(asyncio.wait_for(run(), 30))


def test_exec_tty_and_resize(cluster):
    """tty=1: stdout is a terminal (CRLF line ends), a resize frame on channel 4 is accepted."""
    frames = _ws_exec(cluster, "command=sh&command=-c&command=test+-t+1+%26%26+echo+tty&stdin=1&stdout=1&tty=1",
                      send=[b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode()])
    assert frames.get(1) == b"tty\r\n", frames
    assert json.loads(frames[3])["status"] == "Success"


def test_exec_client_leaving_early_does_not_break_later_execs(cluster, kubectl):
    """A client that drops a running exec leaves the kubelet and shim serving the next one."""
    _ws_exec(cluster, "command=sleep&command=20&stdout=1", close_after=0.5)
    r = kubectl("exec", POD, "--", "echo", "still")
    assert r.returncode == 0 and r.stdout == "still\n", _diag(cluster, r)


def test_kubelet_exec_without_websocket_is_400(cluster):
    """The kubelet's /exec answers 400 to a request that is not a websocket upgrade."""
    r = httpx.post(cluster["kubelet"] + f"/exec/default/{POD}/main?command=true&stdout=1", timeout=10,
                   headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}, trust_env=False)
    assert r.status_code == 400 and "websocket" in r.text


def _port_forward(kubectl_args: list[str], local: int):
    """Start the real ``kubectl port-forward`` (Popen) and wait until it listens on ``local``."""
    proc = subprocess.Popen([KUBECTL, *kubectl_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listening():
        if proc.poll() is not None:
            raise AssertionError(f"kubectl port-forward exited {proc.returncode}: {proc.stderr.read()}")
        return "Forwarding from" in (proc.stdout.readline() or "")
    wait_for("kubectl port-forward listening", listening, 30, 0.1)
    return proc


def test_port_forward_serves_the_pod_port(cluster, kubectl):
    """kubectl port-forward (SPDY/3.1 through the websocket tunnel, apiserver -> kubelet -> pod IP):
    HTTP requests over new local connections reach the pod's httpd, a 20,000-line body intact.
    A port nothing listens on is reported on the error stream; kubectl 1.32 then closes the
    session and exits, as against upstream."""
    http = cluster["http"]
    name = "pf-target"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": IMAGE, "command": [
                        "sh", "-c", "mkdir -p /www && seq 1 20000 > /www/big && echo pf-ok > /www/index.html "
                                    "&& exec httpd -f -p 8080 -h /www"]}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    kc = os.path.join(cluster["tmp"], "kubectl-home", "kubeconfig")
    procs = []
    try:
        wait_for("pod Running", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").json()
                 .get("status", {}).get("phase") == "Running", 60)
        local = support.free_port()
        procs.append(_port_forward(["--kubeconfig", kc, "port-forward", f"pod/{name}", f"{local}:8080"], local))
        for _ in range(3):
            r = httpx.get(f"http://127.0.0.1:{local}/", timeout=10, trust_env=False)
            assert r.status_code == 200 and r.text == "pf-ok\n"
        big = httpx.get(f"http://127.0.0.1:{local}/big", timeout=10, trust_env=False)
        assert big.text.split() == [str(i) for i in range(1, 20001)]
        assert procs[0].poll() is None

        dead = support.free_port()
        procs.append(_port_forward(["--kubeconfig", kc, "port-forward", f"pod/{name}", f"{dead}:9"], dead))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{dead}/", timeout=10, trust_env=False)
        _, err = procs[1].communicate(timeout=20)
        assert procs[1].returncode != 0 and "failed to connect" in err and ":9" in err, err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
        http.delete(f"/api/v1/namespaces/default/pods/{name}")


def test_port_forward_without_websocket_is_400(cluster):
    """pods/NAME/portforward answers 400 to a request that is not a websocket upgrade (bare SPDY)."""
    r = httpx.post(cluster["api"] + f"/api/v1/namespaces/default/pods/{POD}/portforward", timeout=10,
                   headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}, trust_env=False)
    assert r.status_code == 400 and "websockets" in r.json()["message"]


def test_run_interactive_attaches_and_removes_the_pod(cluster, kubectl):
    """``kubectl run -i --rm``: kubectl creates a pod with stdin, attaches (pods/attach -> kubelet ->
    CRI Attach), its stdin reaches the process, the output comes back, and the pod is deleted."""
    name = "attach-run"
    r = kubectl("run", name, "-i", "--rm", "--restart=Never", f"--image={IMAGE}",
                "--overrides", json.dumps({"apiVersion": "v1", "spec": {"nodeName": NODE}}),
                "--", "sh", "-c", "read x; echo got $x", input="kubeling\n")
    assert r.returncode == 0 and "got kubeling" in r.stdout, _diag(cluster, r)
    wait_for("the pod deleted", lambda: cluster["http"].get(
        f"/api/v1/namespaces/default/pods/{name}").status_code == 404, 30)


def test_attach_to_a_running_pod_and_without_websocket(cluster, kubectl):
    """``kubectl attach -i`` to a pod created with stdin; attach without a websocket upgrade is a 400."""
    http = cluster["http"]
    name = "attach-target"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "stdin": True, "stdinOnce": True,
                                    "command": ["sh", "-c", "read x; echo attached $x"]}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    try:
        wait_for("pod Running", lambda: http.get(f"/api/v1/namespaces/default/pods/{name}").json()
                 .get("status", {}).get("phase") == "Running", 60)
        r = kubectl("attach", name, "-i", input="ok\n")
        assert r.returncode == 0 and "attached ok" in r.stdout, _diag(cluster, r)
        plain = httpx.post(cluster["api"] + f"/api/v1/namespaces/default/pods/{name}/attach?stdout=1",
                           timeout=10, trust_env=False)
        assert plain.status_code == 400 and "attach only over websockets" in plain.json()["message"]
    finally:
        http.delete(f"/api/v1/namespaces/default/pods/{name}")


def test_debug_adds_an_ephemeral_container_sharing_the_target_pid_namespace(cluster, kubectl):
    """``kubectl debug -i --target``: pods/NAME/ephemeralcontainers adds the container, the kubelet
    starts it in the target's PID namespace (it sees the target's sleep), kubectl attaches to it,
    and the pod reports it in ephemeralContainerStatuses; the spec may not drop it afterwards."""
    r = kubectl("debug", POD, "-i", f"--image={IMAGE}", "--target=main", "--container=dbg", "--",
                "sh", "-c", "read x; echo debug $x; ps", input="hello\n")
    assert r.returncode == 0 and "debug hello" in r.stdout and "sleep 3600" in r.stdout, _diag(cluster, r)
    pod = cluster["http"].get(f"/api/v1/namespaces/default/pods/{POD}").json()
    assert [c["name"] for c in pod["spec"]["ephemeralContainers"]] == ["dbg"]
    wait_for("ephemeral container status", lambda: [
        s for s in cluster["http"].get(f"/api/v1/namespaces/default/pods/{POD}").json()["status"]
        .get("ephemeralContainerStatuses", []) if s["name"] == "dbg" and "terminated" in s["state"]], 30)
    pod = cluster["http"].get(f"/api/v1/namespaces/default/pods/{POD}").json()
    assert pod["status"]["phase"] == "Running"  # the debug container ending does not end the pod
    pod["spec"]["ephemeralContainers"] = []
    bad = cluster["http"].put(f"/api/v1/namespaces/default/pods/{POD}/ephemeralcontainers", json=pod)
    assert bad.status_code == 422 and "ephemeral" in bad.text, bad.text
    dup = kubectl("debug", POD, f"--image={IMAGE}", "--container=main", "--", "true")
    assert dup.returncode != 0 and "Duplicate value" in dup.stderr, dup.stderr
