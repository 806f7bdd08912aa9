"""The TLS command-line flags of each component for a PKI in kubeadm's layout.

What kubeadm writes into its static-pod manifests (kube-apiserver.yaml, etcd.yaml) and the
kubelet's config, as argv fragments, so the launcher and the tests switch a cluster to TLS
with the same file names ``kubeling.pki.ensure`` created. Every path is absolute.
"""
from __future__ import annotations

import pathlib

from kubeling.pki.certlist import etcd_file


def _p(pki_dir, name: str) -> str:
    return str((pathlib.Path(pki_dir) / name).resolve())


def etcd_flags(pki_dir, member: str = "default", members=("default",)) -> list[str]:
    """etcd / etcdlite flags of ``member`` (kubeadm's etcd.yaml): server and peer certs, the etcd CA,
    client and peer certificate auth. Use with https:// client and peer URLs."""
    server, peer = etcd_file("server", member, list(members)), etcd_file("peer", member, list(members))
    ca = _p(pki_dir, "etcd/ca.crt")
    return ["--cert-file", _p(pki_dir, f"{server}.crt"), "--key-file", _p(pki_dir, f"{server}.key"),
            "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", _p(pki_dir, f"{peer}.crt"), "--peer-key-file", _p(pki_dir, f"{peer}.key"),
            "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]


def apiserver_flags(pki_dir) -> list[str]:
    """kube-apiserver flags (kubeadm's kube-apiserver.yaml): HTTPS serving with optional client certs,
    mutual TLS to etcd (use https:// --etcd-servers) and to kubelets."""
    return ["--tls-cert-file", _p(pki_dir, "apiserver.crt"), "--tls-private-key-file", _p(pki_dir, "apiserver.key"),
            "--client-ca-file", _p(pki_dir, "ca.crt"),
            "--etcd-cafile", _p(pki_dir, "etcd/ca.crt"), "--etcd-certfile", _p(pki_dir, "apiserver-etcd-client.crt"),
            "--etcd-keyfile", _p(pki_dir, "apiserver-etcd-client.key"),
            "--kubelet-client-certificate", _p(pki_dir, "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", _p(pki_dir, "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", _p(pki_dir, "ca.crt")]


def kubelet_flags(pki_dir, node: str, *, anonymous_auth: bool = False) -> list[str]:
    """kubelet flags: its serving cert, client certs verified against the cluster CA, anonymous
    requests refused (kubeadm sets authentication.anonymous.enabled=false)."""
    return ["--tls-cert-file", _p(pki_dir, f"nodes/{node}/kubelet.crt"),
            "--tls-private-key-file", _p(pki_dir, f"nodes/{node}/kubelet.key"),
            "--client-ca-file", _p(pki_dir, "ca.crt"), "--anonymous-auth", "true" if anonymous_auth else "false"]


def etcdctl_flags(pki_dir, *, identity: str = "etcd/healthcheck-client") -> list[str]:
    """etcdctl flags with an etcd-CA client certificate (kubeadm's healthcheck client by default)."""
    return ["--cacert", _p(pki_dir, "etcd/ca.crt"), "--cert", _p(pki_dir, f"{identity}.crt"),
            "--key", _p(pki_dir, f"{identity}.key")]
