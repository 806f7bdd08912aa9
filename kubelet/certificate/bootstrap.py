"""TLS bootstrap: a kubelet with only a bootstrap token obtains its client certificate from the cluster.

Mirrors pkg/kubelet/certificate/bootstrap (``LoadClientCert``): when the
``--kubeconfig`` file is missing or its client certificate is expired, the
kubelet reads ``--bootstrap-kubeconfig`` (server, CA, bootstrap token),
makes a key (kept in ``<cert-dir>/kubelet-client.key.tmp`` so a restart
reuses it and so finds its own pending request), POSTs a
CertificateSigningRequest for ``CN=system:node:<node>, O=system:nodes``
to the signer ``kubernetes.io/kube-apiserver-client-kubelet``, waits
(bounded) until the csrapproving and csrsigning controllers approved and
issued it, writes key and certificate into
``<cert-dir>/kubelet-client-<timestamp>.pem`` with the symlink
``kubelet-client-current.pem`` (the certificate store's layout) and
writes ``--kubeconfig`` pointing at that file. The kubelet then starts as
with any kubeconfig.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeling.api import certificates as certs
from kubeling.client import Client, kubeconfig
from kubeling.client.csr import make_csr, request_certificate, wait_for_certificate
from kubeling.pki.certs import key_pem, new_private_key

log = logging.getLogger(__name__)

PAIR_PREFIX = "kubelet-client"
CURRENT = f"{PAIR_PREFIX}-current.pem"
KEY_TMP = f"{PAIR_PREFIX}.key.tmp"
USAGES = ["digital signature", "client auth"]
DEFAULT_TIMEOUT = 300.0


def _cert_valid(path: str | None, *, now: datetime.datetime) -> bool:
    if not path:
        return False
    try:
        certs_in = x509.load_pem_x509_certificates(pathlib.Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return bool(certs_in) and certs_in[0].not_valid_before_utc <= now < certs_in[0].not_valid_after_utc


def kubeconfig_valid(path: str | os.PathLike) -> bool:
    """The kubeconfig at ``path`` exists and its client certificate (if it uses one) is currently valid
    (isClientConfigStillValid). A token-only kubeconfig counts as valid."""
    try:
        cfg = kubeconfig.load(path)
    except kubeconfig.KubeconfigError:
        return False
    if cfg.token and not cfg.client_cert_file:
        return True
    return _cert_valid(cfg.client_cert_file, now=datetime.datetime.now(datetime.timezone.utc))


def csr_name(key, node_name: str) -> str:
    """A name that is the same for the same key and node, so a restarted kubelet finds its own request
    (upstream's digestedName: ``node-csr-`` + a digest of the public key and the subject)."""
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha512(pub + f"|system:nodes|system:node:{node_name}|".encode()).digest()
    return "node-csr-" + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:43]


def _load_or_make_key(path: pathlib.Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        key = new_private_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem(key))
        return key


def store_pair(cert_dir: pathlib.Path, cert_pem: bytes, key_pem_bytes: bytes) -> pathlib.Path:
    """Write ``kubelet-client-<timestamp>.pem`` (certificate then key, mode 0600) and point
    ``kubelet-client-current.pem`` at it (certificate.FileStore.Update); returns the current path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    pem = cert_dir / f"{PAIR_PREFIX}-{stamp}.pem"
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem_bytes)
    current = cert_dir / CURRENT
    tmp = cert_dir / f".{CURRENT}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(pem.name)
    os.replace(tmp, current)
    return current


def write_kubeconfig(path: pathlib.Path, *, bootstrap: kubeconfig.ClusterConfig, pem: pathlib.Path,
                     node_name: str) -> None:
    """The kubelet's kubeconfig: the bootstrap kubeconfig's server and CA, the cert-dir pair as
    client-certificate and client-key (as upstream writes it)."""
    ca_data = pathlib.Path(bootstrap.ca_file).read_bytes() if bootstrap.ca_file else None
    kubeconfig.write(path, server=bootstrap.server, user=f"system:node:{node_name}", cluster="default-cluster",
                     ca_data=ca_data, client_cert_file=str(pem.resolve().parent / CURRENT),
                     client_key_file=str(pem.resolve().parent / CURRENT),
                     insecure_skip_tls_verify=bootstrap.insecure_skip_tls_verify)


async def load_client_cert(kubeconfig_path: str | os.PathLike, bootstrap_path: str | os.PathLike,
                           cert_dir: str | os.PathLike, node_name: str, *,
                           timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Make sure ``kubeconfig_path`` holds a valid client identity, bootstrapping one if needed.

    Returns False when the kubeconfig was already valid (nothing done), True
    when it was written. Raises KubeconfigError (unreadable bootstrap
    kubeconfig), kubeling.client.csr.CSRError (denied, failed, timed out),
    ApiError (e.g. 401 for an expired or deleted token) or httpx errors.
    """
    kc_path, cert_dir = pathlib.Path(kubeconfig_path), pathlib.Path(cert_dir)
    if kubeconfig_valid(kc_path):
        return False
    bootstrap = kubeconfig.load(bootstrap_path)
    cert_dir.mkdir(parents=True, exist_ok=True)
    current = cert_dir / CURRENT
    if _cert_valid(str(current), now=datetime.datetime.now(datetime.timezone.utc)):
        log.info("using the existing client certificate %s", current)
        write_kubeconfig(kc_path, bootstrap=bootstrap, pem=current, node_name=node_name)
        return True
    key_path = cert_dir / KEY_TMP
    key = _load_or_make_key(key_path)
    request = make_csr(key, common_name=f"{certs.NODE_USER_PREFIX}{node_name}", organizations=(certs.NODES_GROUP,))
    name = csr_name(key, node_name)
    async with Client(bootstrap, user_agent="kubelet/kubeling (bootstrap)") as client:
        csr = await request_certificate(client, request, signer_name=certs.KUBE_APISERVER_CLIENT_KUBELET,
                                        usages=USAGES, name=name)
        log.info("waiting for certificate signing request %s to be approved and issued", name)
        cert_pem = await wait_for_certificate(client, name, csr["metadata"].get("uid", ""), timeout=timeout)
    pem = store_pair(cert_dir, cert_pem, key_pem(key))
    key_path.unlink(missing_ok=True)
    write_kubeconfig(kc_path, bootstrap=bootstrap, pem=pem, node_name=node_name)
    log.info("bootstrapped client certificate %s; wrote %s", pem.resolve(), kc_path)
    return True
