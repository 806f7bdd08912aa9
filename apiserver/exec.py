"""``pods/NAME/exec``: the websocket exec subresource, proxied to the pod's kubelet.

kubectl 1.32 upgrades ``GET|POST .../pods/NAME/exec?command=..&stdin=..``
to a websocket with subprotocol ``v5.channel.k8s.io`` (or v4); the
apiserver opens a websocket to the node's kubelet
(``/exec/{ns}/{pod}/{container}`` on InternalIP:kubeletEndpoint.Port) and
relays frames both ways without looking at them. Requests that are not
websocket upgrades (SPDY) get a 400 Status. Mirrors
pkg/registry/core/pod/rest/subresources.go ExecREST + the upgrade-aware
proxy handler (k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlencode

from fastapi import FastAPI, WebSocket
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from apiserver import errors
from apiserver.authn import authenticate
from apiserver.authz import RequestAttributes
from apiserver.handlers import status_response

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PATH = "/api/v1/namespaces/{namespace}/pods/{name}/exec"
ERROR_CHANNEL = 3
MAX_FRAME = 16 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
PASSED_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")


def _failure_frame(e: errors.StatusError) -> bytes:
    """A channel-3 frame with the Status of ``e`` (what kubectl prints as the error)."""
    return bytes([ERROR_CHANNEL]) + json.dumps({"metadata": {}, "status": "Failure", "message": e.message,
                                                "reason": e.reason, "code": e.code}).encode()


async def kubelet_exec_url(stores, namespace: str, name: str, query) -> str:
    """``ws://NODE_IP:PORT/exec/NS/POD/CONTAINER?...`` for the pod's node; StatusError (404 unknown pod,
    400 no container/node/address) otherwise. Same resolution as pods/log (handlers.pod_log)."""
    pod = await stores[("", "v1", "pods")].get(namespace, name)
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    container = query.get("container")
    if not container:
        if len(names) != 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(names)}]")
        container = names[0]
    elif container not in names + [c.get("name") for c in spec.get("initContainers") or []]:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    if not query.getlist("command"):
        raise errors.bad_request("you must specify at least one command for the container")
    node_name = spec.get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node = await stores[("", "v1", "nodes")].get(None, node_name)
    status = node.get("status") or {}
    addrs = status.get("addresses") or []
    ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None) \
        or next((a.get("address") for a in addrs), None)
    if not ip:
        raise errors.bad_request(f"node {node_name} has no address to reach its kubelet")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
    host = f"[{ip}]" if ":" in ip else ip
    params = [(k, v) for k, v in query.multi_items() if k in PASSED_PARAMS]
    return f"ws://{host}:{port}/exec/{namespace}/{name}/{container}?{urlencode(params)}"


async def authorize(handler, connection, namespace: str, name: str) -> None:
    """Authenticate the websocket's user and authorize ``create`` on pods/exec (upstream's verb for
    exec); StatusError 401/403 otherwise. ``handler`` is the ResourceHandler holding the chains."""
    user = await authenticate(handler.authenticators, connection)
    if user is None:
        raise errors.StatusError(401, "Unauthorized", "Unauthorized")
    allowed, why = await handler.authorizer.authorize(user, RequestAttributes(
        "create", "", "pods", "exec", namespace, name))
    if not allowed:
        raise errors.forbidden("pods", name, why or "access denied", group="")


async def relay(down: WebSocket, up: ClientConnection) -> None:
    """Copy frames both ways between the client's websocket ``down`` and the kubelet's ``up``
    until either side closes, then close the other."""
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


def install(app: FastAPI, server) -> None:
    """Add the pods/exec routes to ``app`` (must run before the catch-all route); ``server`` is the
    APIServer whose ``stores`` resolve pods and nodes."""

    @app.websocket(PATH)
    async def exec_ws(websocket: WebSocket, namespace: str, name: str) -> None:
        """pods/NAME/exec over a websocket: resolve the kubelet, connect, relay."""
        offered = list(websocket.scope.get("subprotocols") or [])
        proto = next((p for p in offered if p in PROTOCOLS), None)
        if proto is None:
            await websocket.close(code=1002, reason=f"one of the subprotocols {list(PROTOCOLS)} is required")
            return
        up = None
        error: errors.StatusError | None = None
        try:
            await authorize(server.handler, websocket, namespace, name)
            url = await kubelet_exec_url(server.stores, namespace, name, websocket.query_params)
            up = await asyncio.wait_for(connect(url, subprotocols=[proto], max_size=MAX_FRAME, ping_interval=None,
                                                proxy=None), CONNECT_TIMEOUT)
        except errors.StatusError as e:
            error = e
        except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError) as e:
            error = errors.internal(f"error dialing backend: {e}")
        await websocket.accept(subprotocol=up.subprotocol if up is not None else proto)
        if up is None:
            with contextlib.suppress(Exception):
                await websocket.send_bytes(_failure_frame(error))
                await websocket.close()
            return
        log.info("exec %s/%s relayed to %s", namespace, name, url.split("?")[0])
        await relay(websocket, up)

    async def exec_http(request: Request, namespace: str, name: str) -> Response:
        """pods/NAME/exec without a websocket upgrade (SPDY): 400, websockets are required."""
        upgrade = request.headers.get("upgrade", "")
        return status_response(errors.bad_request(
            f"Upgrade request required: this server supports exec only over websockets ({', '.join(PROTOCOLS)})"
            + (f", not {upgrade!r}" if upgrade else "")))

    app.add_api_route(PATH, exec_http, methods=["GET", "POST"])
