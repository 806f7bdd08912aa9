"""``python -m apiserver``: start kube-apiserver (flags named as upstream's).

Example::

    python -m apiserver --etcd-servers http://127.0.0.1:2379 --bind-address 127.0.0.1 \\
        --secure-port 6443 --service-cluster-ip-range 10.96.0.0/12

With TLS, as kubeadm runs it (paths under .cluster/pki)::

    python -m apiserver --etcd-servers https://127.0.0.1:2379 --etcd-cafile pki/etcd/ca.crt \
        --etcd-certfile pki/apiserver-etcd-client.crt --etcd-keyfile pki/apiserver-etcd-client.key \
        --tls-cert-file pki/apiserver.crt --tls-private-key-file pki/apiserver.key --client-ca-file pki/ca.crt \
        --kubelet-client-certificate pki/apiserver-kubelet-client.crt \
        --kubelet-client-key pki/apiserver-kubelet-client.key --kubelet-certificate-authority pki/ca.crt

Without --tls-cert-file it serves plain HTTP on --secure-port (kubeling's default
until the launcher switches over). SIGTERM and SIGINT end every watch, then stop
the server gracefully.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import ssl
import sys

import uvicorn

from apiserver.admission.plugins import enabled_plugins, split_names
from apiserver.storage.encryption import EncryptionConfig, EncryptionConfigError
from apiserver.app import Config, build_app
from apiserver.authn import options as auth_options
from apiserver.kubeletlocation import KubeletClientConfig
from kubeling import klog
from kubeling.pki import serving


def parse_args(argv: list[str] | None = None) -> Config:
    """Config from the command line; exits with a one-line message on a bad flag."""
    p = argparse.ArgumentParser(prog="python -m apiserver", description="kubeling kube-apiserver")
    p.add_argument("--etcd-servers", required=True,
                   help="comma-separated etcd client URLs, e.g. http://127.0.0.1:2379")
    p.add_argument("--bind-address", default="127.0.0.1",
                   help="IP to listen on; kubeling also takes a comma-separated list (e.g. the loopback and a "
                        "node underlay address) where upstream would bind 0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--advertise-address", default=None,
                   help="address published in the default/kubernetes Endpoints (default: --bind-address)")
    p.add_argument("--watch-cache-size", type=int, default=1024, help="events kept per resource for watches")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready:NoExecute toleration added to every pod")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the unreachable:NoExecute toleration added to every pod")
    p.add_argument("--tls-cert-file", default=None, help="serving certificate (PEM); HTTPS when given")
    p.add_argument("--tls-private-key-file", default=None, help="key of --tls-cert-file")
    p.add_argument("--client-ca-file", default=None,
                   help="CA bundle client certificates are verified against (requested, optional)")
    p.add_argument("--etcd-cafile", default=None, help="CA of the etcd servers' certificates")
    p.add_argument("--etcd-certfile", default=None, help="client certificate presented to etcd")
    p.add_argument("--etcd-keyfile", default=None, help="key of --etcd-certfile")
    p.add_argument("--kubelet-client-certificate", default=None, help="client certificate presented to kubelets")
    p.add_argument("--kubelet-client-key", default=None, help="key of --kubelet-client-certificate")
    p.add_argument("--kubelet-certificate-authority", default=None, help="CA of the kubelets' serving certificates")
    p.add_argument("--enable-admission-plugins", default="",
                   help="admission plugins to enable besides the default ones (comma-separated upstream names)")
    p.add_argument("--disable-admission-plugins", default="",
                   help="admission plugins to disable though on by default (comma-separated upstream names)")
    auth_options.add_flags(p)
    p.add_argument("--encryption-provider-config", default=None,
                   help="EncryptionConfiguration file (apiserver.config.k8s.io/v1): resources encrypted at rest")
    p.add_argument("-v", "--v", type=int, default=1, help="log verbosity (0-4)")
    a = p.parse_args(argv)
    try:
        auth = auth_options.from_args(a)
    except ValueError as e:
        p.error(str(e))
    enable, disable = split_names(a.enable_admission_plugins), split_names(a.disable_admission_plugins)
    try:
        enabled_plugins(enable, disable)
    except ValueError as e:
        sys.exit(f"python -m apiserver: error: {e}")  # one line, no usage block
    if a.encryption_provider_config:
        try:
            EncryptionConfig.load(a.encryption_provider_config)
        except EncryptionConfigError as e:
            sys.exit(f"python -m apiserver: error: --encryption-provider-config: {e}")
    for flag in ("tls_cert_file", "tls_private_key_file", "client_ca_file", "etcd_cafile", "etcd_certfile",
                 "etcd_keyfile", "kubelet_client_certificate", "kubelet_client_key", "kubelet_certificate_authority"):
        path = getattr(a, flag)
        if path is not None and not os.path.isfile(path):
            p.error(f"--{flag.replace('_', '-')}: {path}: no such file")
    if bool(a.tls_cert_file) != bool(a.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file must be given together")
    if bool(a.etcd_certfile) != bool(a.etcd_keyfile):
        p.error("--etcd-certfile and --etcd-keyfile must be given together")
    if bool(a.kubelet_client_certificate) != bool(a.kubelet_client_key):
        p.error("--kubelet-client-certificate and --kubelet-client-key must be given together")
    try:
        ipaddress.ip_network(a.service_cluster_ip_range, strict=False)
    except ValueError as e:
        p.error(f"--service-cluster-ip-range: {e}")
    if not 0 < a.secure_port < 65536:
        p.error("--secure-port must be between 1 and 65535")
    klog.setup("apiserver", level=logging.DEBUG if a.v >= 4 else logging.INFO if a.v >= 1 else logging.WARNING)
    binds = [b.strip() for b in a.bind_address.split(",") if b.strip()]
    for b in binds:
        try:
            ipaddress.ip_address(b)
        except ValueError:
            p.error(f"--bind-address: {b!r} is not an IP address")
    if not binds:
        p.error("--bind-address: empty")
    return Config(etcd_servers=[s.strip() for s in a.etcd_servers.split(",") if s.strip()],
                  bind_address=binds[0], extra_bind_addresses=binds[1:], secure_port=a.secure_port,
                  service_cluster_ip_range=a.service_cluster_ip_range, advertise_address=a.advertise_address,
                  watch_cache_size=a.watch_cache_size,
                  default_not_ready_toleration_seconds=a.default_not_ready_toleration_seconds,
                  default_unreachable_toleration_seconds=a.default_unreachable_toleration_seconds,
                  enable_admission_plugins=enable, disable_admission_plugins=disable,
                  encryption_provider_config=a.encryption_provider_config,
                  tls_cert_file=a.tls_cert_file, tls_private_key_file=a.tls_private_key_file,
                  client_ca_file=a.client_ca_file, etcd_cafile=a.etcd_cafile, etcd_certfile=a.etcd_certfile,
                  etcd_keyfile=a.etcd_keyfile,
                  auth=auth,
                  kubelet=KubeletClientConfig(client_certificate=a.kubelet_client_certificate,
                                              client_key=a.kubelet_client_key,
                                              certificate_authority=a.kubelet_certificate_authority))


class _Server(uvicorn.Server):
    """uvicorn server that ends open watches first on SIGTERM (else they hold the graceful shutdown)."""

    apiserver = None

    def handle_exit(self, sig, frame) -> None:
        """Stop open watches, then let uvicorn's own SIGINT/SIGTERM handling begin the graceful shutdown."""
        if self.apiserver is not None:
            self.apiserver.stop_watches()
        super().handle_exit(sig, frame)


def _listen(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address:port`` (IPv4 or IPv6), as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    """Run the apiserver until SIGTERM/SIGINT."""
    config = parse_args(argv)
    try:
        # wsproto: the websockets library refuses kubectl port-forward's subprotocol
        # "SPDY/3.1+portforward.k8s.io" ('/' is not a token character); Go's servers take it.
        tls = {"ws": "wsproto", **serving.uvicorn_tls_kwargs(
            cert_file=config.tls_cert_file, key_file=config.tls_private_key_file,
            client_ca_file=config.client_ca_file, ws="wsproto")}
    except (ssl.SSLError, OSError, ValueError) as e:
        print(f"apiserver: cannot serve TLS: {e}", file=sys.stderr)
        return 1
    try:
        app, server = build_app(config)
    except (ssl.SSLError, OSError, ValueError) as e:
        print(f"apiserver: {e}", file=sys.stderr)
        return 1
    uv = _Server(uvicorn.Config(app, host=config.bind_address, port=config.secure_port, log_level="warning",
                                timeout_graceful_shutdown=5, access_log=False, **tls))
    uv.apiserver = server
    if config.extra_bind_addresses:
        uv.run(sockets=[_listen(a, config.secure_port) for a in [config.bind_address, *config.extra_bind_addresses]])
    else:
        uv.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
