"""``pods/NAME/exec``, ``attach`` and ``portforward``: websocket subresources proxied to the pod's kubelet.

kubectl 1.32 upgrades ``GET|POST .../pods/NAME/exec?command=..&stdin=..``
to a websocket with subprotocol ``v5.channel.k8s.io`` (or v4); the
apiserver opens a websocket to the node's kubelet
(``/exec/{ns}/{pod}/{container}`` on InternalIP:kubeletEndpoint.Port) and
relays frames both ways without looking at them. Requests that are not
websocket upgrades (SPDY) get a 400 Status. ``attach`` is exec without a
command, to the kubelet's ``/attach/...``. ``portforward`` is the same
relay to the kubelet's ``/portForward/{ns}/{pod}`` with kubectl's
``SPDY/3.1+portforward.k8s.io`` tunnel (kubelet/portforward.py speaks it).
Mirrors pkg/registry/core/pod/rest/subresources.go ExecREST and
PortForwardREST + the upgrade-aware proxy handler
(k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlencode

from fastapi import FastAPI, WebSocket
from starlette.requests import Request
from starlette.responses import Response
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from apiserver import authz, errors
from apiserver.authn import authenticate
from apiserver.authz import RequestAttributes
from apiserver.handlers import status_response
from apiserver.kubeletlocation import pod_container, pod_kubelet
from kubeling.remotecommand import (CONNECT_TIMEOUT, MAX_FRAME, PROTOCOLS, choose_subprotocol, failure_frame,
                                    relay)

log = logging.getLogger(__name__)

PATH = "/api/v1/namespaces/{namespace}/pods/{name}/exec"
ATTACH_PATH = "/api/v1/namespaces/{namespace}/pods/{name}/attach"
PORTFORWARD_PATH = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
PORTFORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # kubectl's SPDY-over-websocket tunnel
KUBELET_PORTFORWARD_PROTOCOL = "portforward.k8s.io"  # the hop to the kubelet: a valid websocket token
PASSED_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")


async def kubelet_exec_url(stores, namespace: str, name: str, query, *, scheme: str = "ws",
                           subresource: str = "exec") -> str:
    """``ws://NODE_IP:PORT/<exec|attach>/NS/POD/CONTAINER?...`` (``wss`` when ``scheme`` says so:
    kubelets served over TLS) for the pod's node; StatusError (404 unknown pod, 400 no command
    for exec, no container/node/address) otherwise. Same resolution as pods/log (handlers.pod_log)."""
    pod = await stores[("", "v1", "pods")].get(namespace, name)
    container = pod_container(pod, query.get("container"))
    if subresource == "exec" and not query.getlist("command"):
        raise errors.bad_request("you must specify at least one command for the container")
    where = await pod_kubelet(stores, pod)
    params = [(k, v) for k, v in query.multi_items() if k in PASSED_PARAMS]
    return f"{scheme}://{where}/{subresource}/{namespace}/{name}/{container}?{urlencode(params)}"


async def authorize(handler, connection, namespace: str, name: str, *, subresource: str = "exec") -> None:
    """Authenticate the websocket's user and authorize ``create`` on pods/<subresource> (upstream's
    verb for exec and portforward); StatusError 401/403 otherwise. ``handler`` is the
    ResourceHandler holding the chains."""
    user = await authenticate(handler.authenticators, connection)
    if user is None:
        raise errors.StatusError(401, "Unauthorized", "Unauthorized")
    await authz.check(handler.authorizer, user,
                      RequestAttributes("create", "", "pods", subresource, namespace, name))


def install(app: FastAPI, server) -> None:
    """Add the pods/exec routes to ``app`` (must run before the catch-all route); ``server`` is the
    APIServer whose ``stores`` resolve pods and nodes."""

    @app.websocket(PATH)
    async def exec_ws(websocket: WebSocket, namespace: str, name: str) -> None:
        """pods/NAME/exec over a websocket: resolve the kubelet, connect, relay."""
        await _remotecommand(websocket, namespace, name, "exec")

    @app.websocket(ATTACH_PATH)
    async def attach_ws(websocket: WebSocket, namespace: str, name: str) -> None:
        """pods/NAME/attach over a websocket: resolve the kubelet, connect, relay."""
        await _remotecommand(websocket, namespace, name, "attach")

    async def _remotecommand(websocket: WebSocket, namespace: str, name: str, subresource: str) -> None:
        offered = list(websocket.scope.get("subprotocols") or [])
        proto = choose_subprotocol(offered)
        if proto is None:
            await websocket.close(code=1002, reason=f"one of the subprotocols {list(PROTOCOLS)} is required")
            return
        up = None
        error: errors.StatusError | None = None
        try:
            await authorize(server.handler, websocket, namespace, name, subresource=subresource)
            tls = getattr(server.kubelet_client, "ssl_context", None)
            url = await kubelet_exec_url(server.stores, namespace, name, websocket.query_params,
                                         scheme="wss" if tls is not None else "ws", subresource=subresource)
            up = await asyncio.wait_for(connect(url, subprotocols=[proto], max_size=MAX_FRAME, ping_interval=None,
                                                proxy=None, **({"ssl": tls} if tls is not None else {})),
                                        CONNECT_TIMEOUT)
        except errors.StatusError as e:
            error = e
        except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError) as e:
            error = errors.internal(f"error dialing backend: {e}")
        await websocket.accept(subprotocol=up.subprotocol if up is not None else proto)
        if up is None:
            with contextlib.suppress(Exception):
                await websocket.send_bytes(failure_frame(error.message, reason=error.reason, code=error.code))
                await websocket.close()
            return
        log.info("%s %s/%s relayed to %s", subresource, namespace, name, url.split("?")[0])
        await relay(websocket, up)

    async def exec_http(request: Request, namespace: str, name: str) -> Response:
        """pods/NAME/exec or attach without a websocket upgrade (SPDY): 400, websockets are required."""
        upgrade = request.headers.get("upgrade", "")
        what = "attach" if request.url.path.endswith("/attach") else "exec"
        return status_response(errors.bad_request(
            f"Upgrade request required: this server supports {what} only over websockets ({', '.join(PROTOCOLS)})"
            + (f", not {upgrade!r}" if upgrade else "")))

    app.add_api_route(PATH, exec_http, methods=["GET", "POST"])
    app.add_api_route(ATTACH_PATH, exec_http, methods=["GET", "POST"])

    @app.websocket(PORTFORWARD_PATH)
    async def portforward_ws(websocket: WebSocket, namespace: str, name: str) -> None:
        """pods/NAME/portforward over a websocket: authorize, resolve the kubelet, connect, relay.
        Failures before the relay close the websocket with the Status message as reason (kubectl
        prints it); there is no error channel before SPDY runs."""
        if PORTFORWARD_PROTOCOL not in (websocket.scope.get("subprotocols") or []):
            await websocket.close(code=1002, reason=f"subprotocol {PORTFORWARD_PROTOCOL} is required")
            return
        up = None
        try:
            await authorize(server.handler, websocket, namespace, name, subresource="portforward")
            pod = await server.stores[("", "v1", "pods")].get(namespace, name)
            if (pod.get("status") or {}).get("phase") != "Running":
                raise errors.bad_request(f"pod {name} is not running: phase {(pod.get('status') or {}).get('phase')}")
            where = await pod_kubelet(server.stores, pod)
            tls = getattr(server.kubelet_client, "ssl_context", None)
            url = f"{'wss' if tls is not None else 'ws'}://{where}/portForward/{namespace}/{name}"
            up = await asyncio.wait_for(connect(url, subprotocols=[KUBELET_PORTFORWARD_PROTOCOL], max_size=MAX_FRAME,
                                                ping_interval=None, proxy=None,
                                                **({"ssl": tls} if tls is not None else {})), CONNECT_TIMEOUT)
        except errors.StatusError as e:
            await websocket.close(code=1008 if e.code in (401, 403) else 1011, reason=e.message[:120])
            return
        except (OSError, InvalidHandshake, InvalidStatus, asyncio.TimeoutError) as e:
            await websocket.close(code=1011, reason=f"error dialing backend: {e}"[:120])
            return
        await websocket.accept(subprotocol=PORTFORWARD_PROTOCOL)
        log.info("portforward %s/%s relayed to %s", namespace, name, url)
        await relay(websocket, up)

    async def portforward_http(request: Request, namespace: str, name: str) -> Response:
        """pods/NAME/portforward without a websocket upgrade (bare SPDY): 400."""
        return status_response(errors.bad_request(
            f"Upgrade request required: this server supports port-forward only over websockets "
            f"({PORTFORWARD_PROTOCOL})"))

    app.add_api_route(PORTFORWARD_PATH, portforward_http, methods=["GET", "POST"])
