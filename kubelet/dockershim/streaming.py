"""The shim's streaming server: runs the Exec and Attach sessions the CRI RPCs hand out as URLs.

CRI Exec and Attach do not stream over gRPC: the runtime returns a URL of its
own streaming server and the kubelet connects to it. Mirrors
k8s.io/kubelet/pkg/cri/streaming (server.go: GetExec / GetAttach cache the
request under a one-time token, ``/exec/{token}`` and ``/attach/{token}``
serve it with the remotecommand websocket protocols ``v5.channel.k8s.io`` /
``v4.channel.k8s.io``) and dockershim's exec.go NativeExecHandler (a ``docker
exec`` whose hijacked connection carries stdin/stdout/stderr, then the exit
code from exec inspect) and docker_streaming.go attach (``docker attach`` to
the container's own stdio; Success once its streams end).

Frames are binary websocket messages whose first byte is the channel:
0 stdin, 1 stdout, 2 stderr, 3 status (a metav1 Status JSON), 4 resize
(``{"Width":..,"Height":..}``), 255 close (v5: second byte = channel closed).
"""
from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import logging
import secrets
import socket
import time

import docker.errors
from docker.utils import socket as docker_socket
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kubeling.remotecommand import MAX_FRAME, PROTOCOLS

log = logging.getLogger("dockershim.streaming")

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
TOKEN_TTL = 60.0  # seconds a URL stays valid (upstream's streaming.DefaultConfig.StreamIdleTimeout is longer; one use only)


@dataclasses.dataclass(frozen=True)
class ExecSession:
    """One pending exec: the docker container id, argv and which streams the client wants.
    ``cmd`` None is an attach to the container's own process."""

    container_id: str
    cmd: list[str] | None
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool


def exit_status(code: int, cmd: list[str]) -> dict:
    """The metav1 Status written on channel 3 for exit ``code`` (mirrors remotecommand's
    v4 writeStatus: Success, or Failure/NonZeroExitCode with an ExitCode cause)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {cmd}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict:
    """A Failure Status for an exec that could not run (channel 3)."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


class StreamingServer:
    """Websocket server on ``host``:``port`` (0 = any free port) serving ``/exec/{token}``.

    ``api`` is a docker.APIClient. ``start()`` binds; ``get_exec(...)`` registers a
    session and returns its URL (``http://host:port/exec/TOKEN``, one use, TOKEN_TTL s);
    ``stop()`` closes the listener. Mirrors cri/streaming.Server.
    """

    def __init__(self, api, *, host: str = "127.0.0.1", port: int = 0):
        self.api = api
        self.host = host
        self.port = port
        self._pending: dict[str, tuple[ExecSession, float]] = {}
        self._server = None

    async def start(self) -> None:
        """Bind the listener; ``self.port`` holds the bound port afterwards."""
        self._server = await serve(self._handle, self.host, self.port, subprotocols=list(PROTOCOLS),
                                   process_request=self._check_token, max_size=MAX_FRAME, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("streaming server on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every open session."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def get_exec(self, session: ExecSession) -> str:
        """Register ``session``; returns the URL the kubelet connects to (``/exec/TOKEN``, or
        ``/attach/TOKEN`` when ``session.cmd`` is None)."""
        now = time.monotonic()
        for tok, (_, exp) in list(self._pending.items()):
            if exp < now:
                del self._pending[tok]
        token = secrets.token_urlsafe(16)
        self._pending[token] = (session, now + TOKEN_TTL)
        return f"http://{self.host}:{self.port}/{'exec' if session.cmd is not None else 'attach'}/{token}"

    def _check_token(self, connection: ServerConnection, request):
        parts = request.path.split("?")[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach"):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        entry = self._pending.get(parts[1])
        if entry is None or entry[1] < time.monotonic():
            return connection.respond(http.HTTPStatus.NOT_FOUND, "unknown or expired exec token\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        token = ws.request.path.split("?")[0].strip("/").split("/")[1]
        entry = self._pending.pop(token, None)
        if entry is None:  # raced with another connection using the same token
            await ws.close(1008, "exec token already used")
            return
        session = entry[0]
        if ws.subprotocol is None:
            await ws.close(1002, f"one of the subprotocols {list(PROTOCOLS)} is required")
            return
        try:
            await self._exec(ws, session)
        except ConnectionClosed:
            log.info("exec client of %s went away", session.container_id[:12])
        finally:
            await ws.close()

    async def _exec(self, ws: ServerConnection, s: ExecSession) -> None:
        try:
            if s.cmd is None:  # attach: the container's own stdio
                exec_id = s.container_id
                sock = await asyncio.to_thread(self.api.attach_socket, s.container_id, params={
                    "stdin": int(s.stdin), "stdout": int(s.stdout), "stderr": int(s.stderr), "stream": 1})
            else:
                exec_id = (await asyncio.to_thread(self.api.exec_create, s.container_id, s.cmd, stdin=s.stdin,
                                                   stdout=s.stdout, stderr=s.stderr, tty=s.tty))["Id"]
                sock = await asyncio.to_thread(self.api.exec_start, exec_id, socket=True, tty=s.tty)
        except docker.errors.APIError as e:
            await ws.send(bytes([ERROR]) + json.dumps(error_status(e.explanation or str(e))).encode())
            return
        raw: socket.socket = getattr(sock, "_sock", sock)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue(maxsize=64)

        def read_frames() -> None:
            # Blocking reads of Docker's multiplexed (or raw, with a tty) stream; ends at EOF.
            try:
                for stream, data in docker_socket.frames_iter(sock, s.tty):
                    asyncio.run_coroutine_threadsafe(out.put((stream, data)), loop).result(timeout=300)
            except (OSError, TimeoutError) as e:
                log.info("exec %s stream ended: %s", exec_id[:12], e)
            finally:
                asyncio.run_coroutine_threadsafe(out.put(None), loop)

        async def pump_in() -> None:
            async for msg in ws:
                if isinstance(msg, str) or not msg:
                    continue
                ch, data = msg[0], msg[1:]
                if ch == STDIN and s.stdin and data:
                    await asyncio.to_thread(raw.sendall, data)
                elif ch == CLOSE and data[:1] == bytes([STDIN]) and s.stdin:
                    await asyncio.to_thread(raw.shutdown, socket.SHUT_WR)
                elif ch == RESIZE and s.tty:
                    try:
                        size = json.loads(data)
                        resize = self.api.exec_resize if s.cmd is not None else self.api.resize
                        await asyncio.to_thread(resize, exec_id, height=int(size["Height"]), width=int(size["Width"]))
                    except (ValueError, KeyError, TypeError, docker.errors.APIError) as e:
                        log.info("bad resize for exec %s: %s", exec_id[:12], e)

        reader = loop.run_in_executor(None, read_frames)
        inbound = asyncio.create_task(pump_in())
        try:
            while True:
                nxt = asyncio.ensure_future(out.get())
                await asyncio.wait({nxt, inbound}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():  # the client went away: end the session, the process finishes alone
                    nxt.cancel()
                    log.info("exec %s: client disconnected", exec_id[:12])
                    return
                if (item := nxt.result()) is None:
                    break
                stream, data = item
                if data:
                    await ws.send(bytes([STDERR if stream == STDERR else STDOUT]) + data)
            code = await self._exit_code(exec_id) if s.cmd is not None else 0
            await ws.send(bytes([ERROR]) + json.dumps(exit_status(code, s.cmd or [])).encode())
        finally:
            inbound.cancel()
            try:
                raw.shutdown(socket.SHUT_RDWR)  # wakes the reader thread when the client left early
            except OSError:
                pass
            # Drain so a reader blocked on a full queue can finish (bounded: 5 s).
            deadline = time.monotonic() + 5.0
            while not reader.done() and time.monotonic() < deadline:
                while not out.empty():
                    out.get_nowait()
                await asyncio.sleep(0.01)
            try:
                raw.close()
            except OSError:
                pass
            await asyncio.gather(inbound, return_exceptions=True)

    async def _exit_code(self, exec_id: str) -> int:
        """ExitCode from exec inspect, waiting (bounded, 5 s) for Docker to see the process end."""
        deadline = time.monotonic() + 5.0
        while True:
            info = await asyncio.to_thread(self.api.exec_inspect, exec_id)
            if not info.get("Running") or time.monotonic() > deadline:
                return info.get("ExitCode") if info.get("ExitCode") is not None else 1
            await asyncio.sleep(0.05)
