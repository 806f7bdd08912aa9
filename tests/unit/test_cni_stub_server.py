"""The CNI stub <-> server protocol: framing, byte-for-byte relay, fallback, concurrency.

No root needed: the server runs with fake plugins (or the real ones for
VERSION and config errors, which touch no netlink); the stubs are the real
executables written by cni.install, run as subprocesses.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading

import pytest

from cni import install, invoke, server, stub
from kubelet.dockershim.network import CNIServerProcess


def test_request_and_response_roundtrip():
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=a=b;X=\u00e9", "PATH": "/bin", b"CNI_NETNS": b"/x"}
    data = stub.encode_request("bridge", env, b'{"a": 1}\n\x00')
    line, _, rest = data.partition(b"\n")
    plugin, envlen, stdinlen = stub.decode_request_header(line + b"\n")
    assert plugin == "bridge" and len(rest) == envlen + stdinlen
    decoded = stub.decode_env(rest[:envlen])
    assert decoded == {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=a=b;X=\u00e9", "CNI_NETNS": "/x"}
    assert rest[envlen:] == b'{"a": 1}\n\x00'
    assert stub.decode_response(stub.encode_response(3, b"out\n", b"err")) == (3, b"out\n", b"err")


@pytest.mark.parametrize("bad", [b"", b"1 2", b"0 5 0\nabc", b"x y z\n"])
def test_bad_responses_are_protocol_errors(bad):
    with pytest.raises(stub.ProtocolError):
        stub.decode_response(bad)


@pytest.mark.parametrize("bad", [b"HTTP/1.1 GET /\n", b"KCNI/1 bridge x 1\n", b"KCNI/1 bridge -1 0\n"])
def test_bad_request_headers(bad):
    with pytest.raises(stub.ProtocolError):
        stub.decode_request_header(bad)


def _echo(env: dict, stdin: bytes) -> tuple[int, bytes, bytes]:
    return 7, json.dumps({"env": env, "stdin": stdin.decode()}).encode() + b"\n\x01", b"warn\n"


@pytest.fixture
def running(tmp_path, monkeypatch):
    """A cni.server in a thread (socket under tmp) with our stubs installed; yields (bin_dir, socket)."""
    bin_dir = tmp_path / "bin"
    install.install(str(bin_dir))
    sock = str(tmp_path / "cni.sock")
    monkeypatch.setitem(server.PLUGINS, "host-local", _echo)
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=server.serve, args=(sock,), kwargs={"bin_dirs": [str(bin_dir)], "ready": ready,
                                                                   "stop": stop}, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        yield str(bin_dir), sock
    finally:
        stop.set()
        t.join(10)
    assert not os.path.exists(bin_dir / stub.POINTER_NAME) and not os.path.exists(sock)


def _run(exe: str, env: dict, stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([exe], input=stdin, env=dict(os.environ, **env), capture_output=True, timeout=timeout)


def test_stub_relays_env_stdin_and_answer_byte_for_byte(running):
    bin_dir, sock = running
    assert stub.server_socket_path(bin_dir) == sock
    proc = _run(os.path.join(bin_dir, "host-local"), {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                                       "NOT_CNI": "x"}, b'{"cniVersion": "1.0.0"}')
    assert proc.returncode == 7
    assert proc.stderr == b"warn\n"
    assert proc.stdout.endswith(b"\n\x01")
    got = json.loads(proc.stdout[:-2])
    assert got["stdin"] == '{"cniVersion": "1.0.0"}'
    assert got["env"]["CNI_CONTAINERID"] == "c1" and "NOT_CNI" not in got["env"]


def test_real_plugin_answers_version_and_spec_errors_through_the_server(running):
    bin_dir, _ = running
    bridge = os.path.join(bin_dir, "bridge")
    proc = _run(bridge, {"CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0 and "1.0.0" in json.loads(proc.stdout)["supportedVersions"]
    proc = _run(bridge, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
                         "CNI_PATH": bin_dir}, b'{"cniVersion": "9.9.9"}')
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 1
    proc = _run(bridge, {"CNI_COMMAND": "ADD"}, b"not json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 6


def test_parallel_requests_run_concurrently(running, monkeypatch):
    """Three invocations meet at a barrier inside the server: they only can if run in parallel."""
    _, sock = running
    barrier = threading.Barrier(3, timeout=15)

    def meet(env, stdin):
        barrier.wait()
        return 0, env["CNI_CONTAINERID"].encode(), b""
    monkeypatch.setitem(server.PLUGINS, "host-local", meet)
    results: list = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        stub.forward(sock, "host-local", {"CNI_CONTAINERID": str(i)}, lambda: b""))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [(0, b"0", b""), (0, b"1", b""), (0, b"2", b"")]


def test_garbage_request_gets_error_json(running):
    _, sock = running
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"GET / HTTP/1.0\n\n")
        s.shutdown(socket.SHUT_WR)
        data = s.makefile("rb").read()
    rc, out, _ = stub.decode_response(data)
    assert rc == 1 and json.loads(out)["code"] == 999


def test_unknown_plugin_is_refused(running):
    _, sock = running
    answer = stub.forward(sock, "macvlan", {"CNI_COMMAND": "ADD"}, lambda: b"{}")
    assert answer[0] == 1 and "unknown plugin" in json.loads(answer[1])["msg"]


@pytest.mark.parametrize("pointer", ["none", "stale"])
def test_without_a_server_the_stub_runs_the_plugin_itself(tmp_path, pointer):
    bin_dir = tmp_path / "bin"
    install.install(str(bin_dir))
    if pointer == "stale":  # a socket file nobody listens on, as after a crash
        path = str(tmp_path / "dead.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        (bin_dir / stub.POINTER_NAME).write_text(path + "\n")
    proc = _run(str(bin_dir / "bridge"), {"CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0 and "0.4.0" in json.loads(proc.stdout)["supportedVersions"]
    proc = _run(str(bin_dir / "host-local"), {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x",
                                              "CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir)},
                b'{"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "host-local"}}')
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 7  # stdin reached the plugin


def test_wrapper_detection_for_in_process_delegation(tmp_path):
    install.install(str(tmp_path))
    assert invoke.wrapped_plugin(str(tmp_path / "host-local")) == "host-local"
    assert invoke.wrapped_plugin(str(tmp_path / "bridge")) == "bridge"
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\nexit 0\n")
    assert invoke.wrapped_plugin(str(other)) == ""
    assert invoke.wrapped_plugin(str(tmp_path / "missing")) == ""
    assert install.is_installed(str(tmp_path)) and not install.is_outdated(str(tmp_path))


async def test_shim_supervises_the_server_process(tmp_path):
    bin_dir = tmp_path / "bin"
    install.install(str(bin_dir))
    sup = CNIServerProcess(state_dir=str(tmp_path / "shim"), bin_dir=str(bin_dir))
    pointer = bin_dir / stub.POINTER_NAME
    await sup.start()
    try:
        for _ in range(300):
            if pointer.exists():
                break
            await asyncio.sleep(0.1)
        assert pointer.read_text().strip() == sup.socket_path
        first = sup.proc.pid
        sup.proc.kill()  # a crash: the supervisor starts a new one
        for _ in range(300):
            if sup.proc is not None and sup.proc.pid != first and pointer.exists() and \
                    stub.forward(sup.socket_path, "bridge", {"CNI_COMMAND": "VERSION"}, lambda: b"") is not None:
                break
            await asyncio.sleep(0.1)
        assert sup.proc.pid != first
        rc, out, _ = stub.forward(sup.socket_path, "bridge", {"CNI_COMMAND": "VERSION"}, lambda: b"")
        assert rc == 0 and b"supportedVersions" in out
    finally:
        await sup.stop()
    assert sup.proc.returncode is not None and not pointer.exists()


def test_a_server_that_takes_the_request_and_dies_gives_try_again_later(tmp_path):
    """No in-process retry once the request was sent (it may have run half way): spec code 11."""
    path = str(tmp_path / "mute.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def mute():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()
    t = threading.Thread(target=mute, daemon=True)
    t.start()
    try:
        with pytest.raises(stub.NoAnswer) as e:
            stub.forward(path, "bridge", {"CNI_COMMAND": "ADD"}, lambda: b"{}")
        assert e.value.code == 11
    finally:
        t.join(10)
        listener.close()


def test_shim_forwards_to_the_server_without_starting_the_stub(running, monkeypatch):
    """The CRI shim's in-process runner answers like the stub executable, with no process started."""
    from kubelet.dockershim import network
    bin_dir, _ = running
    started = []
    monkeypatch.setattr(network.subprocess, "run", lambda *a, **k: started.append(a) or None)
    run = network._server_runner("host-local")
    rc, out, err = run({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_PATH": bin_dir}, b'{"x": 1}')
    assert (rc, err) == (7, b"warn\n") and json.loads(out[:-2])["env"]["CNI_CONTAINERID"] == "c1"
    assert started == []


def test_shim_runner_without_a_server_runs_the_stub(tmp_path):
    from kubelet.dockershim import network
    bin_dir = tmp_path / "bin"
    install.install(str(bin_dir))
    rc, out, _ = network._server_runner("bridge")({"CNI_COMMAND": "VERSION", "CNI_PATH": str(bin_dir)}, b"")
    assert rc == 0 and "1.0.0" in json.loads(out)["supportedVersions"]
