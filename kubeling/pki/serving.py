"""HTTPS serving for kubeling's uvicorn servers, with the client certificate handed to the app.

Mirrors k8s.io/apiserver's SecureServingInfo: ``--tls-cert-file`` / ``--tls-private-key-file``
give the serving certificate, ``--client-ca-file`` makes the server ask for a client
certificate and verify it against that CA while still letting clients without one in
(Go's ``tls.VerifyClientCertIfGiven``; Python's ``ssl.CERT_OPTIONAL``): a certificate from
another CA fails the handshake, no certificate leaves authentication to tokens.

uvicorn does not pass the peer certificate to the app. ``tls_protocol`` subclasses uvicorn's
HTTP and websocket protocol classes so that, once the TLS handshake is done
(``connection_made``), each request's scope carries the ASGI TLS extension
(https://asgi.readthedocs.io/en/latest/extensions.html#tls)::

    scope["extensions"]["tls"] = {"client_cert_chain": [PEM leaf] or [], "client_cert_name": RFC 4514 str | None,
                                  "client_cert_error": None, "tls_version": 0x0303 | 0x0304, "cipher_suite": None,
                                  "server_cert": None}

Python 3.11's ssl module exposes only the peer's leaf certificate, so the chain holds the
leaf alone; that is all an x509 authenticator needs when clients present leaves signed
directly by the client CA (kubeadm's layout). The apiserver's authenticator reads it there.
"""
from __future__ import annotations

import functools
import ssl
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
from uvicorn.importer import import_from_string

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_ssl_context(cert_file: str, key_file: str, *, client_ca_file: str | None = None,
                       require_client_cert: bool = False) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) serving ``cert_file``/``key_file``; with ``client_ca_file``
    client certificates are requested and verified against it, optional unless
    ``require_client_cert``. Raises ssl.SSLError / OSError on unreadable or mismatched files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def tls_extension(transport) -> dict | None:
    """The ASGI TLS extension dict for a connection's ``transport``, or None when it is not TLS."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    der = sslobj.getpeercert(binary_form=True)
    chain, name = [], None
    if der:
        chain = [ssl.DER_cert_to_PEM_cert(der)]
        name = _rfc4514(der)
    return {"server_cert": None, "client_cert_chain": chain, "client_cert_name": name, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(sslobj.version() or ""), "cipher_suite": None}


def _rfc4514(der: bytes) -> str | None:
    try:
        from cryptography import x509
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None


class _WithTLSExtension:
    """ASGI app wrapper adding one connection's TLS extension to every scope it sees."""

    __slots__ = ("app", "tls")

    def __init__(self, app, tls: dict) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope, receive, send) -> Any:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        return await self.app(scope, receive, send)


@functools.cache
def tls_protocol(base: type) -> type:
    """A subclass of uvicorn protocol class ``base`` whose connections put the ASGI TLS extension
    into each scope (uvicorn's protocols keep the app in ``self.app`` and call it per request)."""

    class TLSExtensionProtocol(base):
        def connection_made(self, transport) -> None:  # noqa: D401 - asyncio callback
            super().connection_made(transport)
            ext = tls_extension(transport)
            if ext is not None:
                self.app = _WithTLSExtension(self.app, ext)

    TLSExtensionProtocol.__name__ = TLSExtensionProtocol.__qualname__ = f"TLS{base.__name__}"
    return TLSExtensionProtocol


def uvicorn_tls_kwargs(*, cert_file: str | None, key_file: str | None, client_ca_file: str | None = None,
                       http: str = "auto", ws: str = "auto") -> dict:
    """Keyword arguments for ``uvicorn.Config``: {} without a certificate (plain HTTP, as before),
    else the TLS context factory and protocol classes that fill the ASGI TLS extension.
    Raises ValueError when only one of cert/key is given."""
    if not cert_file and not key_file:
        return {}
    if not cert_file or not key_file:
        raise ValueError("--tls-cert-file and --tls-private-key-file must be given together")
    ctx = server_ssl_context(cert_file, key_file, client_ca_file=client_ca_file)
    kwargs: dict = {"ssl_certfile": cert_file, "ssl_keyfile": key_file,
                    "ssl_context_factory": lambda _config, _default: ctx,
                    "http": tls_protocol(import_from_string(HTTP_PROTOCOLS[http]))}
    ws_path = WS_PROTOCOLS.get(ws)
    if ws_path:
        kwargs["ws"] = tls_protocol(import_from_string(ws_path))
    return kwargs
