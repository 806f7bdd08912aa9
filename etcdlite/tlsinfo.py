"""TLS material of one etcdlite listener (client or peer): etcd's transport.TLSInfo.

Mirrors go.etcd.io/etcd/pkg/transport.TLSInfo: ``--cert-file``/``--key-file`` serve,
``--trusted-ca-file`` is the CA the other side's certificate must chain to, and
``--client-cert-auth`` makes the handshake fail for a client without such a certificate
(Go's RequireAndVerifyClientCert; gRPC's ``require_client_auth``). The same files are
what a member presents when it dials its peers (etcd uses the peer cert as both server
and client certificate), so peer certificates carry both serverAuth and clientAuth.
Which listener uses TLS is decided by the URL scheme (``https://``), as in etcd.
"""
from __future__ import annotations

import dataclasses

import grpc


class TLSError(Exception):
    """TLS flags are incomplete or a file cannot be read (message names the flag)."""


def _read(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSError(f"--{flag}: cannot read {path}: {e.strerror or e}") from None


@dataclasses.dataclass(frozen=True)
class TLSInfo:
    """File paths of one side's TLS; ``prefix`` is ``""`` (client) or ``"peer-"`` (for messages)."""

    cert_file: str | None = None
    key_file: str | None = None
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False
    prefix: str = ""

    @property
    def empty(self) -> bool:
        """Whether no certificate was configured (https URLs are then an error)."""
        return not self.cert_file and not self.key_file

    def validate(self) -> None:
        """Raise TLSError when the flags cannot work together (etcd's checks at startup)."""
        p = self.prefix
        if bool(self.cert_file) != bool(self.key_file):
            raise TLSError(f"--{p}cert-file and --{p}key-file must be given together")
        if self.client_cert_auth and not self.trusted_ca_file:
            raise TLSError(f"--{p}client-cert-auth needs --{p}trusted-ca-file")
        for flag, path in (("cert-file", self.cert_file), ("key-file", self.key_file),
                           ("trusted-ca-file", self.trusted_ca_file)):
            if path:
                _read(p + flag, path)

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials; client certificates required when ``client_cert_auth``."""
        p = self.prefix
        if self.empty:
            raise TLSError(f"an https:// URL needs --{p}cert-file and --{p}key-file")
        ca = _read(p + "trusted-ca-file", self.trusted_ca_file) if self.trusted_ca_file else None
        return grpc.ssl_server_credentials(
            [(_read(p + "key-file", self.key_file), _read(p + "cert-file", self.cert_file))],
            root_certificates=ca, require_client_auth=self.client_cert_auth)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials for dialing an https:// peer: trust ``trusted_ca_file``
        (else the system CAs) and present our certificate."""
        p = self.prefix
        return grpc.ssl_channel_credentials(
            root_certificates=_read(p + "trusted-ca-file", self.trusted_ca_file) if self.trusted_ca_file else None,
            private_key=_read(p + "key-file", self.key_file) if self.key_file else None,
            certificate_chain=_read(p + "cert-file", self.cert_file) if self.cert_file else None)


def is_https(url: str) -> bool:
    """Whether ``url`` asks for TLS."""
    return url.lower().startswith("https://")
