"""Docker <-> CRI conversions that need no Docker connection.

Mirrors dockershim's helpers.go, naming.go and convert.go: the Docker labels
that make every sandbox and container recoverable from Docker alone, Docker
names, timestamps, states and the CRI filter semantics. Everything the shim
owns carries ``io.kubeling.node=<node>`` so several nodes may share one engine.
"""
from __future__ import annotations

import datetime
import functools
import json
import logging
import time
import traceback

import docker.errors
import grpc

from proto.cri import api_pb2

log = logging.getLogger("dockershim")

# Our own labels (never returned as CRI labels).
PREFIX = "io.kubeling."
TYPE = PREFIX + "type"
TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
NODE = PREFIX + "node"
SANDBOX_ID = PREFIX + "sandbox.id"
META_NAME = PREFIX + "metadata.name"
META_ATTEMPT = PREFIX + "metadata.attempt"
CREATED_AT = PREFIX + "created-at"
LOG_DIRECTORY = PREFIX + "log-directory"
LOG_PATH = PREFIX + "log-path"
IMAGE = PREFIX + "image"
HOST_NETWORK = PREFIX + "host-network"
# Pod identity labels, also useful to a human running `docker ps`.
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
ANNOTATION_PREFIX = "annotation."

MAX_EXEC_OUTPUT = 16 * 1024 * 1024  # CRI asks runtimes to cap ExecSync output (CVE-2022-1708)


class CRIError(Exception):
    """A failure to report as a gRPC status ``code`` with ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(kind: str, ident: str) -> CRIError:
    """A NOT_FOUND CRIError: ``"<kind> '<ident>' not found"``."""
    return CRIError(grpc.StatusCode.NOT_FOUND, f"{kind} {ident!r} not found")


def invalid(message: str) -> CRIError:
    """An INVALID_ARGUMENT CRIError with ``message``."""
    return CRIError(grpc.StatusCode.INVALID_ARGUMENT, message)


def seccomp_security_opts(sec) -> list[str]:
    """Docker ``security_opt`` entries for a CRI security context's seccomp settings.

    ``sec`` is a LinuxSandboxSecurityContext or LinuxContainerSecurityContext.
    Mirrors dockershim's getSeccompSecurityOpts: Unconfined (and, for clients
    that set only the deprecated ``seccomp_profile_path``, "" or "unconfined")
    is ``seccomp=unconfined``; RuntimeDefault ("runtime/default",
    "docker/default") leaves Docker's default profile; Localhost
    ("localhost/<path>") passes the profile file's JSON. Raises an
    INVALID_ARGUMENT CRIError for a profile file that cannot be read or an
    unknown profile name.
    """
    if sec.HasField("seccomp"):
        kind, ref = sec.seccomp.profile_type, sec.seccomp.localhost_ref
    else:
        path = sec.seccomp_profile_path
        if path in ("", "unconfined"):
            kind, ref = api_pb2.SecurityProfile.Unconfined, ""
        elif path in ("runtime/default", "docker/default"):
            kind, ref = api_pb2.SecurityProfile.RuntimeDefault, ""
        elif path.startswith("localhost/"):
            kind, ref = api_pb2.SecurityProfile.Localhost, path[len("localhost/"):]
        else:
            raise invalid(f"unknown seccomp profile {path!r}")
    if kind == api_pb2.SecurityProfile.Unconfined:
        return ["seccomp=unconfined"]
    if kind == api_pb2.SecurityProfile.Localhost:
        try:
            with open(ref) as f:
                profile = json.load(f)
        except (OSError, ValueError) as e:
            raise invalid(f"cannot load seccomp profile {ref!r}: {e}") from None
        return ["seccomp=" + json.dumps(profile, separators=(",", ":"))]
    return []


def grpc_errors(method):
    """Turn every exception of a servicer method into a gRPC status with a message.

    CRIError keeps its code, Docker's NotFound becomes NOT_FOUND, other Docker
    API errors UNKNOWN with Docker's explanation, anything else INTERNAL; the
    traceback goes to the shim's log, never to the client.
    """
    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except CRIError as e:
            await context.abort(e.code, e.message)
        except docker.errors.NotFound as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e.explanation or e))
        except docker.errors.APIError as e:
            await context.abort(grpc.StatusCode.UNKNOWN, f"docker: {e.explanation or e}")
        except docker.errors.DockerException as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"docker: {e}")
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # never an unhandled exception towards the client
            log.error("%s failed: %s", method.__name__, traceback.format_exc())
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__}: {e!r}")
    return wrapper


def now_ns() -> int:
    """Wall-clock time in nanoseconds since the epoch (CRI timestamps are ns)."""
    return time.time_ns()


def parse_docker_time(value: str | None) -> int:
    """Docker's RFC3339Nano timestamp -> ns since the epoch; 0 for unset/zero time."""
    if not value or value.startswith("0001-01-01"):
        return 0
    value = value.rstrip("Z")
    offset = 0
    for sign in ("+", "-"):
        idx = value.rfind(sign)
        if idx > 10:  # a numeric zone offset, not a date separator
            hh, mm = value[idx + 1:].split(":")
            offset = (int(hh) * 3600 + int(mm) * 60) * (1 if sign == "+" else -1)
            value = value[:idx]
            break
    base, _, frac = value.partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return (int(dt.timestamp()) - offset) * 1_000_000_000 + nanos


def split_labels(docker_labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Docker labels -> (CRI labels, CRI annotations), dropping our internal ones."""
    labels, annotations = {}, {}
    for k, v in (docker_labels or {}).items():
        if k.startswith(ANNOTATION_PREFIX):
            annotations[k[len(ANNOTATION_PREFIX):]] = v
        elif not k.startswith(PREFIX):
            labels[k] = v
    return labels, annotations


def make_labels(labels, annotations, internal: dict[str, str]) -> dict[str, str]:
    """CRI labels + annotations + our labels -> one Docker label map."""
    out = dict(labels)
    out.update({ANNOTATION_PREFIX + k: v for k, v in annotations.items()})
    out.update(internal)
    return out


def match_labels(labels: dict[str, str], selector) -> bool:
    """CRI label_selector semantics: every pair must be present and equal."""
    return all(labels.get(k) == v for k, v in selector.items())


def docker_name(*parts: object) -> str:
    """A Docker container name from CRI metadata, like dockershim's k8s_... names."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in "_".join(str(p) for p in parts))
    return "k8s_" + safe


def container_state(docker_state: str) -> int:
    """Docker State.Status -> CRI ContainerState."""
    return {
        "created": api_pb2.CONTAINER_CREATED,
        "running": api_pb2.CONTAINER_RUNNING,
        "paused": api_pb2.CONTAINER_RUNNING,
        "restarting": api_pb2.CONTAINER_RUNNING,
        "exited": api_pb2.CONTAINER_EXITED,
        "dead": api_pb2.CONTAINER_EXITED,
    }.get(docker_state, api_pb2.CONTAINER_UNKNOWN)


def meta_attempt(labels: dict[str, str]) -> int:
    """The CRI metadata attempt stored in ``labels`` (0 when absent or malformed)."""
    try:
        return int(labels.get(META_ATTEMPT, "0"))
    except ValueError:
        return 0


def created_ns(labels: dict[str, str], fallback_seconds: int | float = 0) -> int:
    """The CRI creation time (ns) stored in ``labels``, else ``fallback_seconds`` converted to ns."""
    try:
        return int(labels[CREATED_AT])
    except (KeyError, ValueError):
        return int(fallback_seconds * 1_000_000_000)
