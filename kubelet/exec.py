"""The kubelet's exec and attach endpoints: ``/exec|/attach/{namespace}/{pod}/{container}`` over websockets.

The apiserver's ``pods/NAME/exec`` and ``pods/NAME/attach`` land here. The
kubelet resolves the container's CRI id, asks the runtime for a streaming
URL (CRI Exec or Attach) and relays websocket frames between the caller and
the runtime's streaming server, which speaks the remotecommand channel
protocol itself. Mirrors pkg/kubelet/server/server.go getExec / getAttach +
the kubelet's proxying of the CRI streaming URL (kubelet_pods.go GetExec,
GetAttach, proxyStream).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse, Response
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from kubelet.cri import CRIError
from kubeling.remotecommand import (CONNECT_TIMEOUT, MAX_FRAME, PROTOCOLS, choose_subprotocol, failure_frame,
                                    relay)

log = logging.getLogger(__name__)

def flag(value: str | None) -> bool:
    """A remotecommand query flag (``stdin=1``, ``stdout=true``) -> bool; absent/other -> False."""
    return (value or "").lower() in ("1", "true")


def install_exec_handlers(app: FastAPI, host) -> None:
    """Add ``/exec/{namespace}/{pod}/{container}`` (websocket; query command=..., stdin, stdout,
    stderr, tty) and ``/attach/...`` (the same without command) to ``app``. ``host`` gives find_pod, container_log_file (for the container id)
    and ``runtime`` (a kubelet.cri.RemoteRuntime). Errors after the upgrade are Failure Status
    frames on channel 3, as the kubelet's remotecommand server writes them."""

    @app.websocket("/exec/{namespace}/{pod_name}/{container}")
    async def exec_ws(websocket: WebSocket, namespace: str, pod_name: str, container: str) -> None:
        """One exec session: resolve, CRI Exec, connect to the runtime's URL, relay."""
        await _session(websocket, namespace, pod_name, container, websocket.query_params.getlist("command"))

    @app.websocket("/attach/{namespace}/{pod_name}/{container}")
    async def attach_ws(websocket: WebSocket, namespace: str, pod_name: str, container: str) -> None:
        """One attach session: resolve, CRI Attach, connect to the runtime's URL, relay."""
        await _session(websocket, namespace, pod_name, container, None)

    async def _session(websocket: WebSocket, namespace: str, pod_name: str, container: str,
                       cmd: list[str] | None) -> None:
        """Exec ``cmd`` in, or (None) attach to, ``container``; errors are channel-3 Failure frames."""
        proto = choose_subprotocol(list(websocket.scope.get("subprotocols") or []))
        q = websocket.query_params
        stdin, stdout, stderr, tty = (flag(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty"))
        if proto is None:
            await websocket.close(code=1002, reason=f"one of the subprotocols {list(PROTOCOLS)} is required")
            return
        up = None
        error = None
        verb = "exec" if cmd is not None else "attach"
        if cmd is not None and not cmd:
            error = failure_frame("you must specify at least one command for the container", reason="BadRequest",
                                  code=400)
        elif not (stdin or stdout or stderr):
            error = failure_frame("you must specify at least 1 of stdin, stdout, stderr", reason="BadRequest", code=400)
        elif (pod := host.find_pod(namespace, pod_name)) is None:
            error = failure_frame(f'pod "{pod_name}" in namespace "{namespace}" not found on this node',
                                  reason="NotFound", code=404)
        else:
            try:
                _, cid = await host.container_log_file(pod, container, previous=False)
                if cmd is not None:
                    url = await host.runtime.exec(cid, cmd, tty=tty, stdin=stdin, stdout=stdout,
                                                  stderr=stderr and not tty)
                else:
                    url = await host.runtime.attach(cid, tty=tty, stdin=stdin, stdout=stdout,
                                                    stderr=stderr and not tty)
                ws_url = "ws" + url[len("http"):] if url.startswith("http") else url
                up = await asyncio.wait_for(connect(ws_url, subprotocols=[proto], max_size=MAX_FRAME,
                                                    ping_interval=None, proxy=None), CONNECT_TIMEOUT)
            except LookupError as e:
                error = failure_frame(str(e.args[0] if e.args else e), reason="BadRequest", code=400)
            except CRIError as e:
                error = failure_frame(f"unable to start {verb} in container {container}: {e.message}")
            except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError) as e:
                error = failure_frame(f"unable to reach the runtime's streaming server: {e}")
        await websocket.accept(subprotocol=proto)
        if up is None:
            with contextlib.suppress(Exception):
                await websocket.send_bytes(error)
                await websocket.close()
            return
        await relay(websocket, up)

    @app.api_route("/exec/{namespace}/{pod_name}/{container}", methods=["GET", "POST"])
    @app.api_route("/attach/{namespace}/{pod_name}/{container}", methods=["GET", "POST"])
    async def exec_http(namespace: str, pod_name: str, container: str) -> Response:
        """/exec or /attach without a websocket upgrade (SPDY or plain HTTP): 400, websockets are required."""
        return PlainTextResponse(f"Upgrade request required: exec and attach are served over websockets only "
                                 f"({', '.join(PROTOCOLS)})", status_code=400)
