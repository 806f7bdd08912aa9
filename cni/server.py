"""The per-node CNI server: the plugins' code kept loaded, answering the stubs.

Like the node agents behind Cilium's and Calico's CNI binaries: starting
Python and importing pyroute2 costs most of a second, more than the netlink
work of an ADD, so one long-running process per node holds the bridge and
host-local plugins and the executables in the CNI bin dir are stubs
(cni/stub.py) that forward each invocation here over a unix socket.

    python -m cni.server --socket PATH [--bin-dir DIR] [--exit-with-parent]

A pool of threads serves the connections: ADDs of different sandboxes run in
parallel (each thread enters container netns on its own, see cni.ns;
host-local's flock serialises the lease store). The bridge's IPAM delegation to kubeling's own
host-local runs in-process (cni.invoke.register_in_process). Once listening,
the socket path is written to ``DIR/.kubeling-cni-server`` for the stubs;
the file is removed on SIGTERM. Started and restarted by the CRI shim
(kubelet/dockershim/network.py).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import signal
import socketserver
import sys
import threading
import time

from cni import bridge, host_local, invoke
from cni.skel import run_plugin
from cni.stub import POINTER_NAME, ProtocolError, decode_env, decode_request_header, encode_response
from kubeling import klog

log = logging.getLogger("cni.server")

PR_SET_PDEATHSIG = 1
MAX_STDIN = 16 << 20
MAX_ENV = 1 << 20
MAX_HEADER = 1024


def _runner(module, about: str):
    def run(env: dict, stdin: bytes) -> tuple[int, bytes, bytes]:
        return run_plugin(env, stdin, add=module.cmd_add, delete=module.cmd_del, check=module.cmd_check,
                          about=about)
    return run


PLUGINS = {"bridge": _runner(bridge, "kubeling bridge plugin"),
           "host-local": _runner(host_local, "kubeling host-local IPAM plugin")}


def handle(plugin: str, env: dict, stdin: bytes) -> tuple[int, bytes, bytes]:
    """Run one forwarded invocation: (exit code, stdout, stderr).

    Raises ProtocolError for an unknown plugin name; every plugin failure is
    already an exit code with the spec's error JSON.
    """
    run = PLUGINS.get(plugin)
    if run is None:
        raise ProtocolError(f"unknown plugin {plugin!r}")
    return run(env, stdin)


def _read_exact(f, n: int) -> bytes:
    data = f.read(n) if n else b""
    if len(data) != n:
        raise ProtocolError(f"expected {n} bytes, got {len(data)}")
    return data


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            line = self.rfile.readline(MAX_HEADER)
            if not line.endswith(b"\n"):
                raise ProtocolError("connection closed or header too long")
            plugin, envlen, stdinlen = decode_request_header(line)
            if envlen > MAX_ENV or stdinlen > MAX_STDIN:
                raise ProtocolError("request too large")
            env = decode_env(_read_exact(self.rfile, envlen))
            stdin = _read_exact(self.rfile, stdinlen)
            start = time.monotonic()
            rc, out, err = handle(plugin, env, stdin)
            log.log(logging.WARNING if rc else logging.DEBUG, "%s %s %s -> rc %d in %.0f ms %s", plugin,
                    env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID"), rc, (time.monotonic() - start) * 1000,
                    out[:300].decode(errors="replace") if rc else "")
        except ProtocolError as e:
            log.warning("bad request: %s", e)
            msg = str(e).replace("\\", "/").replace('"', "'")
            rc, out, err = 1, ('{"cniVersion": "1.0.0", "code": 999, "msg": "CNI server: %s", "details": ""}'
                               % msg).encode(), b""
        with contextlib.suppress(OSError):
            self.wfile.write(encode_response(rc, out, err))
            self.wfile.flush()


class CNIServer(socketserver.UnixStreamServer):
    """Unix-socket server of forwarded plugin invocations, each handled by a thread of a pool.

    Pooled rather than a thread per connection (socketserver.ThreadingMixIn): pyroute2 sets up
    an asyncio loop for the netlink sockets of each new thread, which cost about a millisecond
    of every ADD. At most MAX_WORKERS invocations run at once; more wait in the pool's queue.
    """

    request_queue_size = 128
    MAX_WORKERS = 64

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.MAX_WORKERS, thread_name_prefix="cni")

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._process, request, client_address)

    def _process(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def write_pointer(bin_dir: str, socket_path: str) -> str:
    """Atomically write ``bin_dir/.kubeling-cni-server`` = socket path; returns the file path."""
    path = os.path.join(bin_dir, POINTER_NAME)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(socket_path + "\n")
    os.replace(tmp, path)
    return path


def remove_pointer(bin_dir: str, socket_path: str) -> None:
    """Remove the pointer file if it still names ``socket_path`` (a newer server may own it)."""
    path = os.path.join(bin_dir, POINTER_NAME)
    with contextlib.suppress(OSError):
        with open(path) as f:
            if f.read().strip() != socket_path:
                return
        os.remove(path)


def serve(socket_path: str, *, bin_dirs: list[str], ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Listen on ``socket_path`` until ``stop`` is set (or forever). Raises OSError if it cannot bind."""
    invoke.register_in_process("host-local", PLUGINS["host-local"])
    with contextlib.suppress(FileNotFoundError):
        os.remove(socket_path)
    os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
    server = CNIServer(socket_path, _Handler)
    os.chmod(socket_path, 0o600)
    for d in bin_dirs:
        write_pointer(d, socket_path)
    log.info("CNI server on %s (pointer in %s)", socket_path, ", ".join(bin_dirs) or "-")
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    if ready is not None:
        ready.set()
    try:
        (stop or threading.Event()).wait()
    finally:
        for d in bin_dirs:
            remove_pointer(d, socket_path)
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(socket_path)


def main(argv: list[str] | None = None) -> int:
    """``python -m cni.server``: serve until SIGTERM/SIGINT; returns 0 (2 for bad flags, 1 if it cannot bind)."""
    p = argparse.ArgumentParser(prog="python -m cni.server", description="kubeling per-node CNI server")
    p.add_argument("--socket", required=True, help="unix socket path to listen on")
    p.add_argument("--bin-dir", action="append", default=[],
                   help="CNI bin dir holding our stubs; the socket path is written there (repeatable)")
    p.add_argument("--exit-with-parent", action="store_true", help="die with the process that started us")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    klog.setup("cni-server", level=a.log_level)
    if a.exit_with_parent:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            return 0  # the parent is already gone
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(a.socket, bin_dirs=a.bin_dir, stop=stop)
    except OSError as e:
        log.error("cannot serve on %s: %s", a.socket, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
