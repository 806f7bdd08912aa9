"""The plugin side of the CNI protocol, shared by every kubeling plugin.

Mirrors containernetworking/cni pkg/skel and pkg/types: a plugin is an
executable that reads its command and container parameters from CNI_*
environment variables and its network configuration as JSON on stdin, prints
a result JSON on stdout, and on failure prints the spec's error JSON
``{"cniVersion", "code", "msg", "details"}`` and exits non-zero.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Mapping

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

# Well-known error codes of the CNI spec (SPEC.md, "Error").
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_NETCONF = 7
ERR_TRY_AGAIN_LATER = 11
ERR_INTERNAL = 999


class CNIError(Exception):
    """A failure reported with the spec's error JSON.

    ``code`` is one of the ERR_* codes (or >= 100 for plugin-specific ones),
    ``msg`` a short message, ``details`` a longer explanation.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict:
        """The error object as the spec prints it."""
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg,
                "details": self.details}


@dataclasses.dataclass(frozen=True)
class CmdArgs:
    """One invocation: mirrors skel.CmdArgs (CNI_* variables and stdin)."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    conf: dict


def parse_args(env: Mapping[str, str], stdin: bytes) -> CmdArgs:
    """Read CNI_* variables and the network configuration.

    Raises CNIError(ERR_INVALID_ENV) for a missing required variable and
    CNIError(ERR_DECODE) for configuration that is not a JSON object.
    """
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(ERR_INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    conf: dict = {}
    if command != "VERSION":
        try:
            conf = json.loads(stdin or b"{}")
        except ValueError as e:
            raise CNIError(ERR_DECODE, "error decoding network configuration", str(e)) from None
        if not isinstance(conf, dict):
            raise CNIError(ERR_DECODE, "network configuration must be a JSON object")
        required = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME")}.get(command)
        if required is None:
            raise CNIError(ERR_INVALID_ENV, f"unknown CNI_COMMAND: {command}")
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise CNIError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
        version = conf.get("cniVersion", "")
        if version not in SUPPORTED_VERSIONS:
            raise CNIError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                           f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    return CmdArgs(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(os.pathsep) if p),
        conf=conf,
    )


Handler = Callable[[CmdArgs], "dict | None"]


def run_plugin(env: Mapping[str, str], stdin: bytes, *, add: Handler, delete: Handler, check: Handler,
               about: str) -> tuple[int, bytes, bytes]:
    """One plugin invocation without touching the process: (exit code, stdout, stderr).

    The core of skel.PluginMain, shared by the executable (plugin_main) and the
    per-node CNI server (cni.server), which answers for many invocations.
    """
    version = "1.0.0"
    try:
        if not env.get("CNI_COMMAND"):
            return 1, b"", f"{about}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n".encode()
        args = parse_args(env, stdin)
        version = args.conf.get("cniVersion", version) or version
        if args.command == "VERSION":
            result = {"cniVersion": "1.0.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
        else:
            result = {"ADD": add, "DEL": delete, "CHECK": check}[args.command](args)
        return 0, (json.dumps(result).encode() if result is not None else b""), b""
    except CNIError as e:
        return 1, json.dumps(e.to_json(version)).encode(), b""
    except Exception as e:  # a plugin must answer in JSON even when it is wrong
        return 1, json.dumps(CNIError(ERR_INTERNAL, f"internal error: {e!r}").to_json(version)).encode(), b""


def plugin_main(*, add: Handler, delete: Handler, check: Handler, about: str) -> int:
    """Run one plugin invocation from the process environment (skel.PluginMain).

    The handlers return the result dict to print (ADD) or None; they raise
    CNIError for failures. Returns the process exit code.
    """
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    rc, out, err = run_plugin(os.environ, stdin, add=add, delete=delete, check=check, about=about)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    return rc
