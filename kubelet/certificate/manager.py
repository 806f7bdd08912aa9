"""Client certificate rotation: the kubelet renews its certificate before it expires, as itself.

Mirrors client-go's util/certificate (certificate_manager.go, ``nextRotationDeadline``)
as the kubelet uses it with ``--rotate-certificates``: the renewal is due at a
random point between 70 % and 90 % of the current certificate's lifetime
(jitter, so a fleet issued together does not renew together); then a new key
and a CSR for the same subject go out under the node's own identity, which
the csrapproving controller approves as ``selfnodeclient`` (the requester is
the certificate's CN; kubeadm binds ``system:nodes`` to that role), csrsigning
issues it, and the pair replaces ``kubelet-client-current.pem``. The running
kubelet's TLS context loads it, so new connections present the new
certificate without a restart.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import pathlib
import random
from typing import Callable

from cryptography import x509

from kubelet.certificate.bootstrap import CURRENT, USAGES, csr_name, store_pair
from kubeling.api import certificates as certs
from kubeling.client import Client, kubeconfig
from kubeling.client.csr import make_csr, request_certificate, wait_for_certificate
from kubeling.pki.certs import key_pem, new_private_key

log = logging.getLogger(__name__)

RETRY_INTERVAL = 30.0


def rotation_deadline(cert: x509.Certificate, *, rng: random.Random | None = None) -> datetime.datetime:
    """When to renew ``cert``: NotBefore + (70..90 %) of its lifetime (nextRotationDeadline's jitter)."""
    r = (rng or random).uniform(0.7, 0.9)
    return cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) * r


async def renew(kubeconfig_path: str | pathlib.Path, cert_dir: str | pathlib.Path, node_name: str, *,
                timeout: float) -> pathlib.Path:
    """Request a new client certificate as the node itself and store it as the current pair; returns the
    ``kubelet-client-current.pem`` path. Raises CSRError, ApiError, httpx errors."""
    key = new_private_key()
    request = make_csr(key, common_name=f"{certs.NODE_USER_PREFIX}{node_name}", organizations=(certs.NODES_GROUP,))
    name = csr_name(key, node_name)
    async with Client(kubeconfig.load(kubeconfig_path), user_agent=f"kubelet/{node_name} (rotation)") as client:
        csr = await request_certificate(client, request, signer_name=certs.KUBE_APISERVER_CLIENT_KUBELET,
                                        usages=USAGES, name=name)
        pem = await wait_for_certificate(client, name, csr["metadata"].get("uid", ""), timeout=timeout)
    return store_pair(pathlib.Path(cert_dir), pem, key_pem(key))


async def run(kubeconfig_path: str | pathlib.Path, cert_dir: str | pathlib.Path, node_name: str, *,
              reload: Callable[[pathlib.Path], None], stop: asyncio.Event, timeout: float = 300.0,
              now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc)) -> None:
    """Renew the certificate in ``cert_dir`` whenever it is due, until ``stop``; ``reload(path)`` makes the
    running clients use the new pair. Failures are logged and retried every 30 s."""
    current = pathlib.Path(cert_dir) / CURRENT
    while not stop.is_set():
        try:
            cert = x509.load_pem_x509_certificates(current.read_bytes())[0]
        except (OSError, ValueError, IndexError) as e:
            log.warning("certificate rotation: cannot read %s: %s", current, e)
            return
        wait = (rotation_deadline(cert) - now()).total_seconds()
        log.info("client certificate expires %s; rotation in %.0fs", cert.not_valid_after_utc.isoformat(),
                 max(wait, 0))
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return
            except asyncio.TimeoutError:
                pass
        try:
            path = await renew(kubeconfig_path, cert_dir, node_name, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - any failure (CSRError, ApiError, transport): keep the old one
            log.warning("certificate rotation failed (retrying in %.0fs): %s", RETRY_INTERVAL, e)
            try:
                await asyncio.wait_for(stop.wait(), timeout=RETRY_INTERVAL)
                return
            except asyncio.TimeoutError:
                continue
        reload(path)
        log.info("rotated the client certificate: %s", path.resolve())
