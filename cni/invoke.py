"""Executing a CNI plugin: the caller side of the protocol.

Mirrors containernetworking/cni pkg/invoke: find an executable named after the
plugin ``type`` in CNI_PATH, run it with CNI_* variables and the configuration
on stdin, and turn its output into a result dict or a raised CNIError. Used by
the bridge plugin to delegate to IPAM and by libcni for whole networks.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Iterable

from cni.skel import ERR_INTERNAL, ERR_IO, CNIError

DEFAULT_TIMEOUT = 30.0


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
    env = dict(os.environ)
    env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": os.pathsep.join(paths)})
    try:
        proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CNIError(ERR_INTERNAL, f"plugin {plugin} {command} timed out after {timeout}s") from None
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(int(err.get("code", ERR_INTERNAL)), str(err.get("msg", "")),
                           str(err.get("details", "")))
        except (ValueError, AttributeError):
            raise CNIError(ERR_INTERNAL, f"plugin {plugin} {command} failed (exit {proc.returncode})",
                           (out or proc.stderr).decode(errors="replace")[-2000:]) from None
    if command != "ADD":
        return None
    try:
        return json.loads(out)
    except ValueError:
        raise CNIError(ERR_INTERNAL, f"plugin {plugin} printed an invalid result",
                       out.decode(errors="replace")[-2000:]) from None
