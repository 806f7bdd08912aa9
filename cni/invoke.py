"""Executing a CNI plugin: the caller side of the protocol.

Mirrors containernetworking/cni pkg/invoke: find an executable named after the
plugin ``type`` in CNI_PATH, run it with CNI_* variables and the configuration
on stdin, and turn its output into a result dict or a raised CNIError. Used by
the bridge plugin to delegate to IPAM and by libcni for whole networks.

A process that already holds a plugin's code (the per-node CNI server,
cni.server) registers it with ``register_in_process``; when the executable
found in CNI_PATH is then kubeling's own wrapper of that plugin, it runs as a
function call instead of a new process. Any other executable of that name
(e.g. the reference host-local) is still executed.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from typing import Callable, Iterable

from cni.skel import ERR_INTERNAL, ERR_IO, CNIError

DEFAULT_TIMEOUT = 30.0
# The line cni.install writes into each wrapper, naming the plugin it runs.
WRAPPER_MARKER = "# kubeling-cni-plugin: "

# type name -> run(env, stdin) -> (exit code, stdout, stderr), see register_in_process.
_in_process: dict[str, Callable[[dict, bytes], tuple[int, bytes, bytes]]] = {}
_marker_cache: dict[tuple[str, float], str] = {}
_marker_lock = threading.Lock()


def register_in_process(plugin: str, run: Callable[[dict, bytes], tuple[int, bytes, bytes]]) -> None:
    """Run kubeling's own ``plugin`` wrapper as ``run(env, stdin)`` in this process from now on."""
    _in_process[plugin] = run


def wrapped_plugin(exe: str) -> str:
    """The plugin name if ``exe`` is a kubeling wrapper written by cni.install, else ""."""
    try:
        key = (exe, os.stat(exe).st_mtime)
    except OSError:
        return ""
    with _marker_lock:
        if key in _marker_cache:
            return _marker_cache[key]
    name = ""
    try:
        with open(exe, "rb") as f:
            head = f.read(1024).decode(errors="replace")
        for line in head.splitlines():
            if line.startswith(WRAPPER_MARKER):
                name = line[len(WRAPPER_MARKER):].strip()
    except OSError:
        pass
    with _marker_lock:
        _marker_cache[key] = name
    return name


def find_in_path(plugin: str, paths: Iterable[str]) -> str:
    """Absolute path of the executable ``plugin`` in ``paths``.

    Raises CNIError(ERR_IO) when no directory holds it (invoke.FindInPath).
    """
    paths = list(paths)
    if not plugin or "/" in plugin:
        raise CNIError(ERR_IO, f"invalid plugin name {plugin!r}")
    for d in paths:
        candidate = os.path.join(d, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(ERR_IO, f"failed to find plugin {plugin!r} in path {paths}")


def exec_plugin(plugin: str, *, command: str, conf: dict, container_id: str, netns: str,
                ifname: str, paths: Iterable[str], args: str = "",
                timeout: float = DEFAULT_TIMEOUT) -> dict | None:
    """Run plugin ``plugin`` (a type name) for ``command`` (ADD/DEL/CHECK).

    Returns the parsed result for ADD, None otherwise. Raises CNIError with the
    plugin's own code and message when it fails.
    """
    paths = list(paths)
    exe = find_in_path(plugin, paths)
    cni_env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": os.pathsep.join(paths)}
    stdin = json.dumps(conf).encode()
    run = _in_process.get(plugin)
    if run is not None and wrapped_plugin(exe) == plugin:
        returncode, out, stderr = run(cni_env, stdin)
    else:
        try:
            proc = subprocess.run([exe], input=stdin, env=dict(os.environ, **cni_env),
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CNIError(ERR_INTERNAL, f"plugin {plugin} {command} timed out after {timeout}s") from None
        returncode, out, stderr = proc.returncode, proc.stdout, proc.stderr
    out = out.strip()
    if returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(int(err.get("code", ERR_INTERNAL)), str(err.get("msg", "")),
                           str(err.get("details", "")))
        except (ValueError, AttributeError):
            raise CNIError(ERR_INTERNAL, f"plugin {plugin} {command} failed (exit {returncode})",
                           (out or stderr).decode(errors="replace")[-2000:]) from None
    if command != "ADD":
        return None
    try:
        return json.loads(out)
    except ValueError:
        raise CNIError(ERR_INTERNAL, f"plugin {plugin} printed an invalid result",
                       out.decode(errors="replace")[-2000:]) from None
