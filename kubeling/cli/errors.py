"""The one line the CLI prints when something fails, worded as kubectl words it.

Mirrors kubectl's cmdutil.CheckErr / StandardErrorMessage: usage and input
errors as ``error: ...``, apiserver refusals as ``Error from server
(Reason): message``, an unreachable apiserver as "The connection to the
server HOST:PORT was refused - did you specify the right host or port?".
"""
from __future__ import annotations

import urllib.parse

import httpx

from kubeling.client import ApiError, KubeconfigError


class CLIError(Exception):
    """A failure to report as ``error: <message>`` (or as ``message`` itself when ``plain``)."""

    def __init__(self, message: str, *, plain: bool = False):
        super().__init__(message)
        self.plain = plain

    @property
    def line(self) -> str:
        """The line to print on stderr."""
        return str(self) if self.plain else f"error: {self}"


def server_error_line(err: ApiError) -> str:
    """``Error from server (NotFound): pods "x" not found`` for an ApiError."""
    message = err.message
    if err.reason:
        return f"Error from server ({err.reason}): {message}"
    return f"Error from server: {message}"


def _host_port(server: str) -> str:
    url = urllib.parse.urlsplit(server)
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.hostname}:{port}"


def _tls_failure(err: BaseException) -> str | None:
    """The ssl error behind a failed connection (unknown CA, bad certificate ...), else None."""
    import ssl
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ssl.SSLError):
            return getattr(err, "verify_message", None) or err.reason or str(err)
        err = err.__cause__ or err.__context__
    return None


def error_line(err: BaseException, *, server: str | None = None) -> str:
    """The single stderr line for any error the CLI expects to meet.

    ``server`` is the apiserver URL, used to name the host in connection
    errors. Unknown exceptions are summarised by their type and message,
    never with a traceback.
    """
    if isinstance(err, CLIError):
        return err.line
    if isinstance(err, ApiError):
        return server_error_line(err)
    if isinstance(err, KubeconfigError):
        return f"error: {err}"
    if isinstance(err, httpx.ConnectError) and _tls_failure(err):
        # kubectl: "Unable to connect to the server: tls: failed to verify certificate: x509: ..."
        return f"Unable to connect to the server: TLS handshake failed: {_tls_failure(err)}"
    if isinstance(err, httpx.ConnectError):
        host = _host_port(server) if server else "localhost:8080"
        return f"The connection to the server {host} was refused - did you specify the right host or port?"
    if isinstance(err, httpx.TimeoutException):
        return f"Unable to connect to the server: {server or ''} timed out ({type(err).__name__})"
    if isinstance(err, httpx.TransportError):
        return f"Unable to connect to the server: {err or type(err).__name__}"
    return f"error: {type(err).__name__}: {err}"
