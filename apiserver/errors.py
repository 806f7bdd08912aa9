"""API errors as ``Status`` objects, with upstream's reasons, codes and messages.

Mirrors k8s.io/apimachinery's ``pkg/api/errors``: every failure the apiserver
returns is a ``{"kind": "Status", "apiVersion": "v1", "status": "Failure", ...}``
body whose ``reason`` and ``code`` clients (kubectl, client-go, the Python
client, kubeling's own client) switch on. Handlers raise StatusError; the
app turns it into the JSON response.
"""
from __future__ import annotations

from typing import NamedTuple


class Cause(NamedTuple):
    """One entry of ``details.causes``: ``Cause("FieldValueRequired", "Required value", "spec.containers")``."""

    reason: str
    message: str
    field: str

    def as_dict(self) -> dict:
        """This cause as the JSON dict of a Status ``details.causes`` entry (reason, message, field)."""
        return {"reason": self.reason, "message": self.message, "field": self.field}


class StatusError(Exception):
    """An error answer; ``status`` is the Status dict, ``code`` the HTTP status."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    @property
    def status(self) -> dict:
        """The Status object sent on the wire."""
        out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason}
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str, causes: list[Cause] | None = None) -> dict:
    d: dict = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    if causes:
        d["causes"] = [c.as_dict() for c in causes]
    return d


def not_found(resource: str, name: str, *, group: str = "") -> StatusError:
    """404 ``pods "x" not found`` (``deployments.apps "x" not found`` for grouped resources)."""
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       details=_details(name, group, resource))


def already_exists(resource: str, name: str, *, group: str = "") -> StatusError:
    """409 ``pods "x" already exists``."""
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       details=_details(name, group, resource))


def conflict(resource: str, name: str, reason: str, *, group: str = "") -> StatusError:
    """409 Conflict ``Operation cannot be fulfilled on pods "x": <reason>``."""
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {reason}',
                       details=_details(name, group, resource))


OPTIMISTIC_LOCK_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


def optimistic_lock(resource: str, name: str, *, group: str = "") -> StatusError:
    """409 Conflict for a stale resourceVersion, upstream's OptimisticLockErrorMsg."""
    return conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE, group=group)


def invalid(kind: str, name: str, causes: list[Cause], *, group: str = "") -> StatusError:
    """422 Invalid: ``Pod "x" is invalid: spec.containers: Required value`` (all causes joined)."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    msg = f'{kind} "{name}" is invalid: '
    msg += parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return StatusError(422, "Invalid", msg, details=_details(name, group, kind, causes))


def bad_request(message: str) -> StatusError:
    """400 BadRequest with ``message``."""
    return StatusError(400, "BadRequest", message)


def forbidden(resource: str, name: str, message: str, *, group: str = "") -> StatusError:
    """403 Forbidden: ``pods "x" is forbidden: <message>``."""
    return StatusError(403, "Forbidden", f'{_qualified(resource, group)} "{name}" is forbidden: {message}',
                       details=_details(name, group, resource))


def method_not_allowed(verb: str, what: str) -> StatusError:
    """405 MethodNotAllowed, as upstream for a verb the resource does not serve."""
    return StatusError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind {what!r}")


def gone(message: str) -> StatusError:
    """410 Gone (``too old resource version: 5 (20)``)."""
    return StatusError(410, "Expired", message)


def unsupported_media_type(content_type: str) -> StatusError:
    """415 UnsupportedMediaType for a body type the endpoint does not take."""
    return StatusError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                       f'accepted media types include: application/json-patch+json, application/merge-patch+json, '
                       f'application/strategic-merge-patch+json (got "{content_type}")')


def path_not_found() -> StatusError:
    """404 for a path the server does not serve at all, with empty ``details`` as upstream's
    responsewriters.NotFound (errors.NewNotFound of no resource): kubectl debug reads
    details.name of it to tell a missing subresource from a missing pod, and crashes without it."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", details={})


def internal(message: str) -> StatusError:
    """500 InternalError (a bug or an unreachable store), with the cause in the message."""
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str) -> StatusError:
    """504 Timeout (e.g. ``Too large resource version``)."""
    return StatusError(504, "Timeout", message)


def success(name: str, group: str, resource: str, uid: str | None = None) -> dict:
    """Status Success body returned by a DELETE that does not return the object."""
    details = _details(name, group, resource)
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
