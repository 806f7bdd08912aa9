"""kubeling.pki: kubeadm's layout, subjects, SANs, key modes, idempotency, kubeconfigs with embedded certs."""
from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeling import pki
from kubeling.client import kubeconfig
from kubeling.pki import certs


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _subject(cert) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return cn, [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _sans(cert) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def _eku(cert) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    """One PKI made by the command line, as `make up` would run it."""
    d = tmp_path_factory.mktemp("pki") / "pki"
    r = subprocess.run([sys.executable, "-m", "kubeling.pki", "init", "--dir", str(d),
                        "--apiserver-san", "192.168.50.10", "--apiserver-san", "api.example.test",
                        "--node", "node1", "--node", "node2=10.200.0.2,node2.internal",
                        "--etcd-member", "n1", "--etcd-member", "n2", "--etcd-member", "n3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return d


KUBEADM_FILES = ["ca", "apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-ca",
                 "front-proxy-client", "etcd/ca", "etcd/healthcheck-client", "etcd/server-n1", "etcd/peer-n1",
                 "etcd/server-n3", "etcd/peer-n3", "admin", "scheduler", "controller-manager", "kube-proxy",
                 "nodes/node1/kubelet", "nodes/node1/kubelet-client", "nodes/node2/kubelet",
                 "nodes/node2/kubelet-client"]


def test_layout_and_key_modes(pki_dir):
    """Every file sits where kubeadm puts it; keys are 0600, certificates 0644, sa.key/sa.pub exist."""
    for base in KUBEADM_FILES:
        crt, key = pki_dir / f"{base}.crt", pki_dir / f"{base}.key"
        assert crt.is_file(), crt
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(crt.stat().st_mode) == 0o644, crt
    assert stat.S_IMODE((pki_dir / "sa.key").stat().st_mode) == 0o600
    assert (pki_dir / "sa.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_algorithms(pki_dir):
    """Leaves and CAs are ECDSA P-256; the service-account key is RSA-2048 (RS256 tokens)."""
    assert isinstance(_cert(pki_dir / "apiserver.crt").public_key(), ec.EllipticCurvePublicKey)
    from cryptography.hazmat.primitives import serialization
    sa = serialization.load_pem_private_key((pki_dir / "sa.key").read_bytes(), password=None)
    assert isinstance(sa, rsa.RSAPrivateKey) and sa.key_size == 2048


def test_apiserver_sans(pki_dir):
    """The apiserver's SANs: kubernetes.default.svc..., 127.0.0.1, 10.96.0.1 and the extra ones."""
    cert = _cert(pki_dir / "apiserver.crt")
    dns, ips = _sans(cert)
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", "api.example.test"} <= dns
    assert {"127.0.0.1", "10.96.0.1", "192.168.50.10"} <= ips
    assert _eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert _subject(cert) == ("kube-apiserver", [])


@pytest.mark.parametrize("base,cn,orgs", [
    pytest.param("admin", "kubernetes-admin", ["system:masters"], id="admin"),
    pytest.param("scheduler", "system:kube-scheduler", [], id="scheduler"),
    pytest.param("controller-manager", "system:kube-controller-manager", [], id="controller-manager"),
    pytest.param("kube-proxy", "system:kube-proxy", [], id="kube-proxy"),
    pytest.param("nodes/node2/kubelet-client", "system:node:node2", ["system:nodes"], id="node"),
    pytest.param("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"], id="kubelet-client"),
    pytest.param("apiserver-etcd-client", "kube-apiserver-etcd-client", [], id="etcd-client"),
])
def test_client_identities(pki_dir, base, cn, orgs):
    """Client certificates carry upstream's user (CN) and groups (O) and clientAuth only."""
    cert = _cert(pki_dir / f"{base}.crt")
    assert _subject(cert) == (cn, orgs)
    assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_signed_by_the_right_ca(pki_dir):
    """Cluster identities chain to ca.crt, etcd ones to etcd/ca.crt, never the other way round."""
    ca, etcd_ca = _cert(pki_dir / "ca.crt"), _cert(pki_dir / "etcd/ca.crt")
    for base in ("apiserver", "admin", "nodes/node1/kubelet", "apiserver-kubelet-client"):
        _cert(pki_dir / f"{base}.crt").verify_directly_issued_by(ca)
    for base in ("apiserver-etcd-client", "etcd/server-n2", "etcd/peer-n2", "etcd/healthcheck-client"):
        _cert(pki_dir / f"{base}.crt").verify_directly_issued_by(etcd_ca)
    with pytest.raises(Exception):
        _cert(pki_dir / "apiserver-etcd-client.crt").verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_etcd_and_kubelet_serving(pki_dir):
    """etcd member certs serve and dial (server+client auth) on loopback; a kubelet's serving cert
    names the node and its addresses."""
    peer = _cert(pki_dir / "etcd/peer-n1.crt")
    assert _eku(peer) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    dns, ips = _sans(peer)
    assert "localhost" in dns and {"127.0.0.1", "::1"} <= ips
    dns, ips = _sans(_cert(pki_dir / "nodes/node2/kubelet.crt"))
    assert {"node2", "node2.internal"} <= dns and {"127.0.0.1", "10.200.0.2"} <= ips


def test_one_etcd_member_uses_kubeadm_names(tmp_path):
    """A one-member cluster gets etcd/server.crt and etcd/peer.crt, as kubeadm's stacked etcd."""
    pki.ensure(tmp_path, etcd_members=["default"])
    assert (tmp_path / "etcd/server.crt").is_file() and (tmp_path / "etcd/peer.crt").is_file()


def test_idempotent_and_renews_only_what_changed(tmp_path):
    """A second ensure keeps every file; a new apiserver SAN replaces only the apiserver cert;
    a certificate signed by another CA is replaced."""
    first = pki.ensure(tmp_path, nodes=["node1"])
    assert "ca" in first.created and not first.kept
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.crt")}
    again = pki.ensure(tmp_path, nodes=["node1"])
    assert not again.created
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.crt")} == before
    changed = pki.ensure(tmp_path, nodes=["node1"], apiserver_sans=["10.1.2.3"])
    assert changed.created == ["apiserver"]
    assert "10.1.2.3" in _sans(_cert(tmp_path / "apiserver.crt"))[1]
    # admin.crt replaced by one from a foreign CA: the next ensure notices and re-issues it.
    other_ca, other_key = certs.new_ca("other")
    spec = next(s for s in pki.cert_specs() if s.name == "admin")
    certs.write_cert_and_key(tmp_path / "admin", *certs.new_signed_cert(spec, other_ca, other_key))
    assert pki.ensure(tmp_path, nodes=["node1"], apiserver_sans=["10.1.2.3"]).created == ["admin"]


def test_broken_file_is_a_clear_error(tmp_path):
    """A certificate file that does not parse is a PKIError naming it; the CLI prints one line and exits 1."""
    pki.ensure(tmp_path, nodes=["node1"])
    (tmp_path / "admin.crt").write_text("not a certificate")
    with pytest.raises(pki.PKIError, match="admin"):
        pki.ensure(tmp_path, nodes=["node1"])
    r = subprocess.run([sys.executable, "-m", "kubeling.pki", "init", "--dir", str(tmp_path), "--node", "node1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "kubeling.pki:" in r.stderr and "Traceback" not in r.stderr


def test_kubeconfigs_embed_certificates(pki_dir, tmp_path):
    """write_kubeconfigs: the launcher's files, 0600, CA + client cert/key embedded, loadable into a TLS context."""
    paths = pki.write_kubeconfigs(tmp_path, server="https://127.0.0.1:6443", nodes=["node1"], pki_dir=pki_dir)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "admin.kubeconfig", "controller-manager.kubeconfig", "nodes/node1/kube-proxy.kubeconfig",
        "nodes/node1/kubelet.kubeconfig", "scheduler.kubeconfig"]
    doc = yaml.safe_load((tmp_path / "nodes/node1/kubelet.kubeconfig").read_text())
    assert doc["users"][0]["name"] == "system:node:node1"
    assert set(doc["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
    assert "certificate-authority-data" in doc["clusters"][0]["cluster"]
    assert stat.S_IMODE((tmp_path / "admin.kubeconfig").stat().st_mode) == 0o600
    cfg = kubeconfig.load(tmp_path / "admin.kubeconfig")
    assert _subject(x509.load_pem_x509_certificate(open(cfg.client_cert_file, "rb").read())) == \
        ("kubernetes-admin", ["system:masters"])
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.check_hostname
    assert cfg.httpx_kwargs()["verify"] is not None


def test_kubeconfig_token_file_and_insecure(tmp_path):
    """tokenFile is read relative to the kubeconfig; insecure-skip-tls-verify turns verification off;
    plain http needs no TLS context; a missing tokenFile is a KubeconfigError."""
    (tmp_path / "tok").write_text("abc.def\n")
    path = tmp_path / "kc"
    kubeconfig.write(path, server="https://127.0.0.1:1", user="u", insecure_skip_tls_verify=True)
    doc = yaml.safe_load(path.read_text())
    doc["users"][0]["user"]["tokenFile"] = "tok"
    path.write_text(yaml.safe_dump(doc))
    cfg = kubeconfig.load(path)
    assert cfg.token == "abc.def" and cfg.insecure_skip_tls_verify
    assert cfg.httpx_kwargs()["headers"] == {"Authorization": "Bearer abc.def"}
    assert not cfg.ssl_context().check_hostname
    kubeconfig.write(path, server="http://127.0.0.1:1", user="u")
    assert kubeconfig.load(path).ssl_context() is None
    doc["users"][0]["user"]["tokenFile"] = "missing"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(kubeconfig.KubeconfigError, match="tokenFile"):
        kubeconfig.load(path)


def test_ip_sans_are_ip_addresses(pki_dir):
    """IP SANs are encoded as IP addresses (kubectl and gRPC match 127.0.0.1 against iPAddress entries)."""
    ext = _cert(pki_dir / "apiserver.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.96.0.1") in ext.get_values_for_type(x509.IPAddress)


def test_check_expiration(pki_dir):
    """check-expiration lists every certificate: CAs ~10 years, leaves ~1 year (kubeadm's validity)."""
    rows = {r["name"]: r for r in pki.check_expiration(pki_dir)}
    assert rows["ca"]["ca"] and 3640 <= rows["ca"]["residual_days"] <= 3650
    assert not rows["apiserver"]["ca"] and 360 <= rows["apiserver"]["residual_days"] <= 365
    assert "etcd/peer-n2" in rows and "nodes/node1/kubelet-client" in rows
    r = subprocess.run([sys.executable, "-m", "kubeling.pki", "check-expiration", "--dir", str(pki_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "RESIDUAL TIME" in r.stdout and "front-proxy-ca" in r.stdout
