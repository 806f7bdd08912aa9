"""The websocket remotecommand protocol shared by the apiserver, the kubelet and the CRI shim.

kubectl 1.32 runs ``exec`` over a websocket with subprotocol
``v5.channel.k8s.io`` (or v4): every binary frame starts with a channel
byte (0 stdin, 1 stdout, 2 stderr, 3 error/status JSON, 4 resize; v5 adds
255 close). The apiserver and the kubelet only relay frames; the shim's
streaming server speaks the channels. Mirrors
k8s.io/apimachinery/pkg/util/remotecommand and httpstream/wsstream.
"""
from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
ERROR_CHANNEL = 3
MAX_FRAME = 16 * 1024 * 1024
CONNECT_TIMEOUT = 10.0


def choose_subprotocol(offered: list[str]) -> str | None:
    """The first of the client's ``offered`` subprotocols we speak (client
    preference, as wsstream's handshake), or None."""
    return next((p for p in offered if p in PROTOCOLS), None)


def failure_frame(message: str, *, reason: str = "InternalError", code: int = 500) -> bytes:
    """A channel-3 frame carrying a Failure metav1 Status (what kubectl prints as the error)."""
    status = {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    return bytes([ERROR_CHANNEL]) + json.dumps(status).encode()


async def relay(down: WebSocket, up: ClientConnection) -> None:
    """Copy frames both ways between an accepted server websocket ``down`` and a
    client connection ``up`` until either side closes; then close the other side."""
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
