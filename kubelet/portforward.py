"""The kubelet's port-forward endpoint: ``/portForward/{namespace}/{pod}`` over a websocket.

The apiserver's ``pods/NAME/portforward`` lands here (apiserver/exec.py relays
the websocket). kubectl 1.32 speaks SPDY/3.1 through it (subprotocol
``SPDY/3.1+portforward.k8s.io``, kubeling/spdy.py): for every local
connection it opens an error stream and a data stream, both with headers
``streamtype``, ``port`` and ``requestid``; the kubelet answers each with
SYN_REPLY, connects to the pod's port, copies bytes between the data stream
and that connection, half-closes (FIN) both streams when the pod's side
ends, and writes a failure on the error stream when it cannot connect.
Mirrors pkg/kubelet/cri/streaming/portforward (httpstream.go's stream pairs
by request id, websocket tunnelling) and the runtime's PortForward.

Deviation: upstream dials the port inside the pod's network namespace (so a
server bound to the pod's 127.0.0.1 is reachable); this kubelet dials the
pod's IP (status.podIP; the node reaches pod IPs over its bridge), so the
pod's server must listen on the pod IP or 0.0.0.0.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse, Response
from starlette.websockets import WebSocketDisconnect

from kubeling import spdy

log = logging.getLogger(__name__)

PROTOCOLS = ("portforward.k8s.io", "SPDY/3.1+portforward.k8s.io")  # the apiserver's hop; kubectl's name
DIAL_TIMEOUT = 10.0
READ_CHUNK = 32 * 1024
STREAM_PAIR_TIMEOUT = 30.0  # upstream's streamCreationTimeout for the second stream of a pair


class _Forward:
    """One request id: its error and data streams and the connection to the pod."""

    def __init__(self) -> None:
        self.error_id = 0
        self.data_id = 0
        self.port = 0
        self.writer: asyncio.StreamWriter | None = None
        self.started = False
        self.pending = bytearray()  # client bytes that arrived before the pod connection
        self.client_fin = False


class PortForwardSession:
    """One SPDY session over an accepted websocket, forwarding to ``pod_ip``."""

    def __init__(self, websocket: WebSocket, pod_ip: str, pod_name: str) -> None:
        self.ws = websocket
        self.pod_ip = pod_ip
        self.pod_name = pod_name
        self.spdy = spdy.Session()
        self.send_lock = asyncio.Lock()
        self.forwards: dict[str, _Forward] = {}
        self.by_stream: dict[int, _Forward] = {}
        self.tasks: set[asyncio.Task] = set()
        self.last_stream = 0

    async def send(self, *frames: bytes) -> None:
        async with self.send_lock:  # header compression state: frames go out in the order built
            for f in frames:
                await self.ws.send_bytes(f)

    async def run(self) -> None:
        """Read frames until the websocket closes or the peer says GOAWAY."""
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes") or (msg.get("text") or "").encode()
                for frame in self.spdy.feed(data):
                    if not await self.handle(frame):
                        return
        except spdy.ProtocolError as e:
            log.warning("port-forward to %s: %s", self.pod_name, e)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for t in self.tasks:
                t.cancel()
            for fw in self.forwards.values():
                if fw.writer is not None:
                    fw.writer.close()

    async def handle(self, frame: spdy.Frame) -> bool:
        """Act on one frame; False ends the session."""
        if frame.type == spdy.SYN_STREAM:
            self.last_stream = max(self.last_stream, frame.stream_id)
            await self._open(frame)
        elif frame.type == 0:
            fw = self.by_stream.get(frame.stream_id)
            if fw is not None and frame.stream_id == fw.data_id:
                if fw.writer is None:  # not connected yet: keep it for _forward
                    fw.pending += frame.data
                    fw.client_fin = fw.client_fin or frame.fin
                else:
                    if frame.data:
                        fw.writer.write(frame.data)
                        await fw.writer.drain()
                    if frame.fin and fw.writer.can_write_eof():
                        fw.writer.write_eof()  # the client is done sending: half-close toward the pod
        elif frame.type == spdy.RST_STREAM:
            fw = self.by_stream.pop(frame.stream_id, None)
            if fw is not None and fw.writer is not None and frame.stream_id == fw.data_id:
                fw.writer.close()
        elif frame.type == spdy.PING:
            await self.send(spdy.Session.ping_frame(frame.ping_id))
        elif frame.type == spdy.GOAWAY:
            return False
        return True

    async def _open(self, frame: spdy.Frame) -> None:
        h = frame.headers
        kind, request_id = h.get("streamtype", ""), h.get("requestid", "")
        await self.send(self.spdy.syn_reply_frame(frame.stream_id))
        if kind not in ("error", "data"):
            await self.send(spdy.Session.rst_stream_frame(frame.stream_id, spdy.RST_PROTOCOL_ERROR))
            return
        fw = self.forwards.setdefault(request_id or f"stream-{frame.stream_id}", _Forward())
        self.by_stream[frame.stream_id] = fw
        if kind == "error":
            fw.error_id = frame.stream_id
        else:
            fw.data_id = frame.stream_id
        try:
            fw.port = int(h.get("port", ""))
            if not 0 < fw.port < 65536:
                raise ValueError
        except ValueError:
            await self._fail(fw, f"invalid port {h.get('port')!r}")
            return
        if fw.error_id and fw.data_id and not fw.started:
            fw.started = True
            task = asyncio.create_task(self._forward(fw))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _fail(self, fw: _Forward, message: str) -> None:
        frames = []
        if fw.error_id:
            frames += spdy.Session.data_frames(fw.error_id, message.encode(), fin=True)
        if fw.data_id:
            frames += spdy.Session.data_frames(fw.data_id, b"", fin=True)
        with contextlib.suppress(Exception):
            await self.send(*frames)

    async def _forward(self, fw: _Forward) -> None:
        try:
            reader, fw.writer = await asyncio.wait_for(asyncio.open_connection(self.pod_ip, fw.port), DIAL_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            await self._fail(fw, f"error forwarding port {fw.port} to pod {self.pod_name}: "
                                 f"failed to connect to {self.pod_ip}:{fw.port}: {e or 'timed out'}")
            return
        try:
            if fw.pending:
                fw.writer.write(bytes(fw.pending))
                fw.pending.clear()
            if fw.client_fin and fw.writer.can_write_eof():
                fw.writer.write_eof()
            while chunk := await reader.read(READ_CHUNK):
                await self.send(*spdy.Session.data_frames(fw.data_id, chunk))
        except OSError:
            pass
        finally:
            fw.writer.close()
            with contextlib.suppress(Exception):
                await self.send(*spdy.Session.data_frames(fw.data_id, b"", fin=True),
                                *spdy.Session.data_frames(fw.error_id, b"", fin=True))
            # Done with this pair: a long session (many local connections) keeps no record of it.
            self.by_stream.pop(fw.data_id, None)
            self.by_stream.pop(fw.error_id, None)
            self.forwards = {k: v for k, v in self.forwards.items() if v is not fw}


def install_portforward_handlers(app: FastAPI, host) -> None:
    """Add ``/portForward/{namespace}/{pod}`` (websocket, subprotocol portforward.k8s.io)
    to ``app``; ``host.find_pod`` resolves the pod. A pod not on this node, or without an IP yet,
    is refused before the upgrade (404 / 400 answer to the handshake)."""

    @app.websocket("/portForward/{namespace}/{pod_name}")
    async def portforward_ws(websocket: WebSocket, namespace: str, pod_name: str) -> None:
        """One port-forward session."""
        proto = next((p for p in websocket.scope.get("subprotocols") or [] if p in PROTOCOLS), None)
        if proto is None:
            await websocket.close(code=1002, reason=f"subprotocol {PROTOCOLS[0]} is required")
            return
        pod = host.find_pod(namespace, pod_name)
        ip = ((pod or {}).get("status") or {}).get("podIP", "")
        if pod is None or not ip:
            await websocket.close(code=1011, reason=f'pod "{pod_name}" in namespace "{namespace}" '
                                                    + ("not found on this node" if pod is None else "has no IP yet"))
            return
        await websocket.accept(subprotocol=proto)
        log.info("port-forward session to %s/%s (%s)", namespace, pod_name, ip)
        await PortForwardSession(websocket, ip, f"{namespace}/{pod_name}").run()

    @app.api_route("/portForward/{namespace}/{pod_name}", methods=["GET", "POST"])
    async def portforward_http(namespace: str, pod_name: str) -> Response:
        """/portForward without a websocket upgrade (bare SPDY): 400, the websocket tunnel is required."""
        return PlainTextResponse(f"Upgrade request required: port-forward is served over websockets only "
                                 f"({PROTOCOLS[0]})", status_code=400)
