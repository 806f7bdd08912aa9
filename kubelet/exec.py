"""The kubelet's exec endpoint: ``/exec/{namespace}/{pod}/{container}`` over a websocket.

The apiserver's ``pods/NAME/exec`` lands here. The kubelet resolves the
container's CRI id, asks the runtime for a streaming URL (CRI Exec) and
relays websocket frames between the caller and the runtime's streaming
server, which speaks the remotecommand channel protocol itself. Mirrors
pkg/kubelet/server/server.go getExec + the kubelet's proxying of the CRI
streaming URL (kubelet_pods.go GetExec, proxyStream).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse, Response
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kubelet.cri import CRIError

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
ERROR_CHANNEL = 3
MAX_FRAME = 16 * 1024 * 1024
CONNECT_TIMEOUT = 10.0


def choose_subprotocol(offered: list[str]) -> str | None:
    """The first of the client's ``offered`` subprotocols we speak (client preference, as
    wsstream's handshake), or None."""
    return next((p for p in offered if p in PROTOCOLS), None)


def flag(value: str | None) -> bool:
    """A remotecommand query flag (``stdin=1``, ``stdout=true``) -> bool; absent/other -> False."""
    return (value or "").lower() in ("1", "true")


def failure(message: str, *, reason: str = "InternalError", code: int = 500) -> bytes:
    """A channel-3 frame carrying a Failure metav1 Status."""
    status = {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    return bytes([ERROR_CHANNEL]) + json.dumps(status).encode()


async def relay(down: WebSocket, up: ClientConnection) -> None:
    """Copy frames both ways between an accepted server websocket ``down`` and a client
    connection ``up`` until either side closes; then close the other side."""
    async def down_to_up() -> None:
        while True:
            msg = await down.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                await up.send(msg["bytes"])
            elif msg.get("text") is not None:
                await up.send(msg["text"])

    async def up_to_down() -> None:
        async for msg in up:
            if isinstance(msg, bytes):
                await down.send_bytes(msg)
            else:
                await down.send_text(msg)

    tasks = [asyncio.create_task(down_to_up()), asyncio.create_task(up_to_down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect,
                                     RuntimeError, OSError):
                await t
        with contextlib.suppress(Exception):
            await up.close()
        with contextlib.suppress(Exception):
            await down.close()


def install_exec_handlers(app: FastAPI, host) -> None:
    """Add ``/exec/{namespace}/{pod}/{container}`` (websocket; query command=..., stdin, stdout,
    stderr, tty) to ``app``. ``host`` gives find_pod, container_log_file (for the container id)
    and ``runtime`` (a kubelet.cri.RemoteRuntime). Errors after the upgrade are Failure Status
    frames on channel 3, as the kubelet's remotecommand server writes them."""

    @app.websocket("/exec/{namespace}/{pod_name}/{container}")
    async def exec_ws(websocket: WebSocket, namespace: str, pod_name: str, container: str) -> None:
        """One exec session: resolve, CRI Exec, connect to the runtime's URL, relay."""
        proto = choose_subprotocol(list(websocket.scope.get("subprotocols") or []))
        q = websocket.query_params
        cmd = q.getlist("command")
        stdin, stdout, stderr, tty = (flag(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty"))
        if proto is None:
            await websocket.close(code=1002, reason=f"one of the subprotocols {list(PROTOCOLS)} is required")
            return
        error = None
        up = None
        if not cmd:
            error = failure("you must specify at least one command for the container", reason="BadRequest", code=400)
        elif not (stdin or stdout or stderr):
            error = failure("you must specify at least 1 of stdin, stdout, stderr", reason="BadRequest", code=400)
        elif (pod := host.find_pod(namespace, pod_name)) is None:
            error = failure(f'pod "{pod_name}" in namespace "{namespace}" not found on this node',
                            reason="NotFound", code=404)
        else:
            try:
                _, cid = await host.container_log_file(pod, container, previous=False)
                url = (await host.runtime.exec(cid, cmd, tty=tty, stdin=stdin, stdout=stdout,
                                               stderr=stderr and not tty))
                ws_url = "ws" + url[len("http"):] if url.startswith("http") else url
                up = await asyncio.wait_for(connect(ws_url, subprotocols=[proto], max_size=MAX_FRAME,
                                                    ping_interval=None, proxy=None), CONNECT_TIMEOUT)
            except LookupError as e:
                error = failure(str(e.args[0] if e.args else e), reason="BadRequest", code=400)
            except CRIError as e:
                error = failure(f"unable to start exec in container {container}: {e.message}")
            except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError) as e:
                error = failure(f"unable to reach the runtime's streaming server: {e}")
        await websocket.accept(subprotocol=proto)
        if up is None:
            with contextlib.suppress(Exception):
                await websocket.send_bytes(error)
                await websocket.close()
            return
        await relay(websocket, up)

    @app.api_route("/exec/{namespace}/{pod_name}/{container}", methods=["GET", "POST"])
    async def exec_http(namespace: str, pod_name: str, container: str) -> Response:
        """/exec without a websocket upgrade (SPDY or plain HTTP): 400, websockets are required."""
        return PlainTextResponse(f"Upgrade request required: exec is served over websockets only "
                                 f"({', '.join(PROTOCOLS)})", status_code=400)
