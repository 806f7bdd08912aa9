"""The exec pieces that need no Docker: remotecommand Status frames, subprotocol choice,
query flags, and the shim streaming server's one-time tokens (with a Docker API stand-in
that refuses the exec, so the session ends with a Failure frame)."""
from __future__ import annotations

import json

import docker.errors
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kubelet import exec as kexec
from kubeling import remotecommand
from kubelet.dockershim.streaming import ExecSession, StreamingServer, error_status, exit_status


def test_exit_status_success_and_nonzero():
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    st = exit_status(3, ["sh", "-c", "exit 3"])
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "exit code 3" in st["message"]
    assert error_status("boom")["message"] == "boom"


def test_choose_subprotocol_prefers_client_order():
    assert remotecommand.choose_subprotocol(["v5.channel.k8s.io", "v4.channel.k8s.io"]) == "v5.channel.k8s.io"
    assert remotecommand.choose_subprotocol(["base64.channel.k8s.io", "v4.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert remotecommand.choose_subprotocol(["SPDY/3.1"]) is None


@pytest.mark.parametrize("value,want", [("1", True), ("true", True), ("True", True), ("0", False),
                                        ("false", False), (None, False), ("", False)])
def test_flag(value, want):
    assert kexec.flag(value) is want


def test_failure_frame_is_channel_3_status():
    frame = remotecommand.failure_frame("nope", reason="NotFound", code=404)
    assert frame[0] == 3
    assert json.loads(frame[1:]) == {"metadata": {}, "status": "Failure", "message": "nope",
                                     "reason": "NotFound", "code": 404}


class RefusingAPI:
    """A docker.APIClient stand-in whose exec_create fails like Docker on a stopped container."""

    def exec_create(self, *args, **kwargs):
        raise docker.errors.APIError("409", explanation="container abc is not running")


async def test_streaming_server_tokens_are_one_time_and_errors_are_frames():
    server = StreamingServer(RefusingAPI())
    await server.start()
    try:
        url = server.get_exec(ExecSession(container_id="abc", cmd=["true"], tty=False, stdin=False,
                                          stdout=True, stderr=True))
        assert url.startswith(f"http://127.0.0.1:{server.port}/exec/")
        ws_url = "ws" + url[4:]
        async with connect(ws_url, subprotocols=["v5.channel.k8s.io"], proxy=None, open_timeout=5) as ws:
            assert ws.subprotocol == "v5.channel.k8s.io"
            frames = [m async for m in ws]
        assert frames[0][0] == 3
        assert json.loads(frames[0][1:])["message"] == "container abc is not running"
        with pytest.raises(InvalidStatus) as e:  # used once: gone
            async with connect(ws_url, subprotocols=["v5.channel.k8s.io"], proxy=None, open_timeout=5):
                pass
        assert e.value.response.status_code == 404
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{server.port}/exec/bogus", proxy=None, open_timeout=5):
                pass
    finally:
        await server.stop()
