"""The cluster's certificates and where they live: kubeadm's certs and kubeconfig phases.

Mirrors cmd/kubeadm/app/phases/certs/certlist.go (which certificate, signed by which
CA, with which subject, SANs and usages, under which file name) and
phases/kubeconfig (a kubeconfig per identity with the CA and the client certificate
embedded). Everything sits under one directory in kubeadm's layout::

    ca.crt/.key                      cluster CA (CN=kubernetes)
    apiserver.crt/.key               serving cert of the apiserver
    apiserver-kubelet-client.crt     apiserver -> kubelet (O=system:masters)
    apiserver-etcd-client.crt        apiserver -> etcd (signed by etcd/ca)
    front-proxy-ca.crt, front-proxy-client.crt
    sa.key/sa.pub                    service-account token signing key (RSA-2048)
    etcd/ca.crt/.key                 etcd CA (CN=etcd-ca)
    etcd/server.crt, etcd/peer.crt   one member; else etcd/server-<member>.crt, etcd/peer-<member>.crt
    etcd/healthcheck-client.crt
    admin.crt, scheduler.crt, controller-manager.crt, kube-proxy.crt   (kubeadm embeds these in
                                     admin.conf etc. only; kubeling keeps the files too)
    nodes/<node>/kubelet.crt         kubelet serving cert (upstream: /var/lib/kubelet/pki/kubelet.crt)
    nodes/<node>/kubelet-client.crt  the node's identity, CN=system:node:<node>, O=system:nodes

``ensure()`` is idempotent: a file that is still right (see certs.usable) is kept, so a
second ``make up`` does not invalidate the kubeconfigs already handed out.
"""
from __future__ import annotations

import dataclasses
import pathlib
import socket

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeling.client import kubeconfig as kc
from kubeling.pki import certs
from kubeling.pki.certs import CLIENT_AUTH, SERVER_AUTH, CertSpec

# The apiserver's in-cluster names (kubeadm GetAPIServerAltNames).
APISERVER_DNS = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
APISERVER_IPS = ("127.0.0.1", "10.96.0.1")

# Client identities other than the nodes: file base -> (CN, O). Names as upstream's
# bootstrap RBAC expects them (system:kube-scheduler, system:kube-controller-manager,
# system:kube-proxy -> system:node-proxier, kubernetes-admin in system:masters).
IDENTITIES = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "scheduler": ("system:kube-scheduler", ()),
    "controller-manager": ("system:kube-controller-manager", ()),
    "kube-proxy": ("system:kube-proxy", ()),
}


@dataclasses.dataclass
class Result:
    """What ``ensure`` did: file bases created (or renewed) and kept."""

    created: list[str] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)


def _split_ips(values) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import ipaddress
    ips, dns = [], []
    for v in values:
        try:
            ips.append(str(ipaddress.ip_address(v)))
        except ValueError:
            dns.append(v)
    return tuple(dict.fromkeys(ips)), tuple(dict.fromkeys(dns))


def etcd_file(kind: str, member: str, members: list[str]) -> str:
    """File base of an etcd member's ``kind`` ("server" | "peer") cert: ``etcd/server`` for a
    one-member cluster (kubeadm's name), ``etcd/server-<member>`` otherwise."""
    return f"etcd/{kind}" if len(members) == 1 else f"etcd/{kind}-{member}"


def cert_specs(*, apiserver_sans=(), nodes: dict[str, list[str]] | None = None,
               etcd_members=("default",), etcd_sans=(), front_proxy: bool = True) -> list[CertSpec]:
    """Every leaf certificate of the cluster (kubeadm GetDefaultCertList plus per-node and per-identity
    client certs). ``nodes`` maps a node name to the addresses its kubelet serves on."""
    host = socket.gethostname()
    ips, dns = _split_ips([*APISERVER_IPS, *apiserver_sans])
    specs = [
        CertSpec("apiserver", "kube-apiserver", "ca", (SERVER_AUTH,),
                 dns_names=tuple(dict.fromkeys([*APISERVER_DNS, host, *dns])), ips=ips),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "ca",
                 organizations=("system:masters",)),
        CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", "etcd/ca"),
        CertSpec("etcd/healthcheck-client", "kube-etcd-healthcheck-client", "etcd/ca"),
    ]
    if front_proxy:
        specs.append(CertSpec("front-proxy-client", "front-proxy-client", "front-proxy-ca"))
    e_ips, e_dns = _split_ips(["127.0.0.1", "::1", *etcd_sans])
    members = list(dict.fromkeys(etcd_members))
    for m in members:
        for kind in ("server", "peer"):
            specs.append(CertSpec(etcd_file(kind, m, members), m if kind == "peer" else host, "etcd/ca",
                                  (SERVER_AUTH, CLIENT_AUTH), dns_names=tuple(dict.fromkeys(
                                      ["localhost", host, m, *e_dns])), ips=e_ips))
    for name, (cn, orgs) in IDENTITIES.items():
        specs.append(CertSpec(name, cn, "ca", organizations=orgs))
    for node, addrs in (nodes or {}).items():
        n_ips, n_dns = _split_ips(["127.0.0.1", *addrs])
        specs.append(CertSpec(f"nodes/{node}/kubelet", node, "ca", (SERVER_AUTH,),
                              dns_names=tuple(dict.fromkeys([node, "localhost", *n_dns])), ips=n_ips))
        specs.append(CertSpec(f"nodes/{node}/kubelet-client", f"system:node:{node}", "ca",
                              organizations=("system:nodes",)))
    return specs


CAS = {"ca": "kubernetes", "etcd/ca": "etcd-ca", "front-proxy-ca": "front-proxy-ca"}


def _ensure_ca(root: pathlib.Path, name: str, result: Result):
    loaded = certs.load_cert_and_key(root / name)
    if loaded is not None:
        cert, key = loaded
        try:
            ok = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ok = False
        if ok and cert.not_valid_after_utc - certs._now() > certs.RENEW_BEFORE:
            result.kept.append(name)
            return cert, key
    cert, key = certs.new_ca(CAS[name])
    certs.write_cert_and_key(root / name, cert, key)
    result.created.append(name)
    return cert, key


def ensure(pki_dir: str | pathlib.Path, *, apiserver_sans=(), nodes: dict[str, list[str]] | list[str] | None = None,
           etcd_members=("default",), etcd_sans=(), front_proxy: bool = True) -> Result:
    """Create whatever certificate, key or CA under ``pki_dir`` is missing or no longer right;
    keep the rest (kubeadm ``init phase certs all``). ``nodes``: names, or name -> addresses
    the kubelet serves on (127.0.0.1 is always included). Raises certs.PKIError on an
    unreadable file or a bad address."""
    root = pathlib.Path(pki_dir)
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(nodes, (list, tuple)):
        nodes = {n: [] for n in nodes}
    result = Result()
    cas = {}
    wanted = cert_specs(apiserver_sans=apiserver_sans, nodes=nodes, etcd_members=etcd_members,
                        etcd_sans=etcd_sans, front_proxy=front_proxy)
    for name in dict.fromkeys(s.ca for s in wanted):
        cas[name] = _ensure_ca(root, name, result)
    for spec in wanted:
        ca_cert, ca_key = cas[spec.ca]
        loaded = certs.load_cert_and_key(root / spec.name)
        if loaded is not None and certs.usable(*loaded, spec, ca_cert):
            result.kept.append(spec.name)
            continue
        cert, key = certs.new_signed_cert(spec, ca_cert, ca_key)
        certs.write_cert_and_key(root / spec.name, cert, key)
        result.created.append(spec.name)
    _ensure_sa(root, result)
    return result


def _ensure_sa(root: pathlib.Path, result: Result) -> None:
    sa_key = root / "sa.key"
    if sa_key.exists():
        try:
            key = serialization.load_pem_private_key(sa_key.read_bytes(), password=None)
        except (ValueError, TypeError) as e:
            raise certs.PKIError(f"{sa_key}: {e}") from None
        if not (root / "sa.pub").exists():
            certs.write_file(root / "sa.pub", certs.public_key_pem(key), private=False)
        result.kept.append("sa")
        return
    key = certs.new_rsa_key()
    certs.write_file(sa_key, certs.key_pem(key), private=True)
    certs.write_file(root / "sa.pub", certs.public_key_pem(key), private=False)
    result.created.append("sa")


def write_kubeconfig(path: str | pathlib.Path, *, pki_dir: str | pathlib.Path, identity: str, server: str,
                     user: str | None = None, cluster: str = "kubeling") -> None:
    """Write a kubeconfig for ``identity`` (a file base under ``pki_dir``: ``admin``, ``scheduler``,
    ``nodes/node1/kubelet-client`` ...) with ca.crt, the client certificate and key embedded
    (kubeadm phases/kubeconfig). Mode 0600. Raises certs.PKIError if a file is missing."""
    root = pathlib.Path(pki_dir)
    try:
        ca = (root / "ca.crt").read_bytes()
        cert = (root / f"{identity}.crt").read_bytes()
        key = (root / f"{identity}.key").read_bytes()
    except OSError as e:
        raise certs.PKIError(f"cannot write kubeconfig for {identity}: {e}") from None
    name = user or x509.load_pem_x509_certificate(cert).subject.get_attributes_for_oid(
        x509.oid.NameOID.COMMON_NAME)[0].value
    kc.write(path, server=server, user=name, cluster=cluster, ca_data=ca, client_cert_data=cert,
             client_key_data=key)


def write_kubeconfigs(home: str | pathlib.Path, *, server: str, nodes=(), pki_dir: str | pathlib.Path | None = None
                      ) -> list[pathlib.Path]:
    """The launcher's kubeconfigs with embedded certificates: ``home``/admin.kubeconfig,
    scheduler.kubeconfig, controller-manager.kubeconfig and, per node,
    nodes/<node>/kubelet.kubeconfig and nodes/<node>/kube-proxy.kubeconfig. Returns the paths."""
    home = pathlib.Path(home)
    root = pathlib.Path(pki_dir) if pki_dir else home / "pki"
    plan = [(home / "admin.kubeconfig", "admin"), (home / "scheduler.kubeconfig", "scheduler"),
            (home / "controller-manager.kubeconfig", "controller-manager")]
    for node in nodes:
        plan += [(home / "nodes" / node / "kubelet.kubeconfig", f"nodes/{node}/kubelet-client"),
                 (home / "nodes" / node / "kube-proxy.kubeconfig", "kube-proxy")]
    for path, identity in plan:
        write_kubeconfig(path, pki_dir=root, identity=identity, server=server)
    return [p for p, _ in plan]


def check_expiration(pki_dir: str | pathlib.Path) -> list[dict]:
    """Every certificate under ``pki_dir`` with its expiry (kubeadm ``certs check-expiration``):
    [{"name": file base, "expires": datetime (UTC), "residual_days": int, "ca": bool}], sorted by name.
    Raises certs.PKIError when a .crt file does not parse."""
    root = pathlib.Path(pki_dir)
    out = []
    for crt in sorted(root.rglob("*.crt")):
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
        except ValueError as e:
            raise certs.PKIError(f"{crt}: {e}") from None
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        expires = cert.not_valid_after_utc
        out.append({"name": crt.relative_to(root).with_suffix("").as_posix(), "expires": expires,
                    "residual_days": (expires - certs._now()).days, "ca": is_ca})
    return out
