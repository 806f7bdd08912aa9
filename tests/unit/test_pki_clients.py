"""TLS on the client side of kubeling's components: the apiserver's etcd and kubelet clients and
etcdlite's TLS flags, checked without starting processes."""
from __future__ import annotations

import ssl

import pytest

from apiserver.kubeletlocation import KubeletClientConfig, kubelet_url
from apiserver.storage import etcd3
from etcdlite import config as etcd_config
from kubeling import pki
from kubeling.pki import flags


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    pki.ensure(d, nodes=["node1"], etcd_members=["default"])
    return d


def store(pki_dir, endpoints):
    return etcd3.Etcd3Store(endpoints, cafile=str(pki_dir / "etcd/ca.crt"),
                            certfile=str(pki_dir / "apiserver-etcd-client.crt"),
                            keyfile=str(pki_dir / "apiserver-etcd-client.key"))


def test_etcd3_plain_by_default():
    """http:// endpoints and no TLS flags: an insecure channel, as before."""
    s = etcd3.Etcd3Store(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    assert s._credentials is None and s._balanced


def test_etcd3_tls_balances_over_one_host(pki_dir):
    """Members on one host: one balanced TLS channel whose certificate check uses that host."""
    s = store(pki_dir, ["https://127.0.0.1:1", "https://127.0.0.1:2"])
    assert s._credentials is not None and s._balanced and s._tls_name == "127.0.0.1"


def test_etcd3_tls_members_on_several_hosts_dialed_one_at_a_time(pki_dir):
    """Members on different hosts: no shared authority, so members are dialed one by one (each checked
    against its own address)."""
    s = store(pki_dir, ["https://10.0.0.1:2379", "https://10.0.0.2:2379"])
    assert not s._balanced and s._target == "10.0.0.1:2379"


def test_etcd3_cert_without_key_is_an_error(pki_dir):
    with pytest.raises(ValueError, match="etcd-keyfile"):
        etcd3.Etcd3Store(["https://127.0.0.1:1"], certfile=str(pki_dir / "apiserver-etcd-client.crt"))


def test_kubelet_client_config(pki_dir):
    """No --kubelet-* flags: plain HTTP; with them HTTPS, our client cert, the kubelet CA checked."""
    plain = KubeletClientConfig()
    assert plain.scheme == "http" and plain.ssl_context() is None
    assert kubelet_url(plain.http_client(), "127.0.0.1:10250", "/pods") == "http://127.0.0.1:10250/pods"
    tls = KubeletClientConfig(client_certificate=str(pki_dir / "apiserver-kubelet-client.crt"),
                              client_key=str(pki_dir / "apiserver-kubelet-client.key"),
                              certificate_authority=str(pki_dir / "ca.crt"))
    ctx = tls.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    client = tls.http_client()
    assert kubelet_url(client, "10.0.0.5:10250", "/stats/summary") == "https://10.0.0.5:10250/stats/summary"
    assert client.ssl_context is not None
    unverified = KubeletClientConfig(client_certificate=str(pki_dir / "apiserver-kubelet-client.crt"),
                                     client_key=str(pki_dir / "apiserver-kubelet-client.key")).ssl_context()
    assert unverified.verify_mode == ssl.CERT_NONE  # upstream without --kubelet-certificate-authority


def test_etcdlite_tls_flags(pki_dir, tmp_path):
    """etcd's flags parse into the client and peer TLSInfo; https:// listeners are marked."""
    ns = etcd_config.build_parser().parse_args([
        "--name", "default", "--data-dir", str(tmp_path),
        "--listen-client-urls", "https://127.0.0.1:2379,http://127.0.0.1:22379",
        "--listen-peer-urls", "https://127.0.0.1:2380", "--initial-cluster", "default=https://127.0.0.1:2380",
        *flags.etcd_flags(pki_dir)])
    cfg = etcd_config.from_args(ns)
    assert cfg.listen_client_tls == [True, False]
    assert cfg.client_tls.client_cert_auth and cfg.peer_tls.client_cert_auth
    assert cfg.client_tls.server_credentials() is not None
    assert cfg.peer_tls.channel_credentials() is not None


@pytest.mark.parametrize("argv,message", [
    pytest.param(["--listen-client-urls", "https://127.0.0.1:2379"], "--cert-file", id="https-without-cert"),
    pytest.param(["--listen-peer-urls", "https://127.0.0.1:2380", "--initial-cluster",
                  "default=https://127.0.0.1:2380"], "--peer-cert-file", id="peer-https-without-cert"),
    pytest.param(["--cert-file", "x.crt"], "--key-file", id="cert-without-key"),
    pytest.param(["--cert-file", "/nonexistent.crt", "--key-file", "/nonexistent.key"], "cannot read",
                 id="unreadable"),
    pytest.param(["--client-cert-auth", "--cert-file", "{pki}/etcd/server.crt", "--key-file",
                  "{pki}/etcd/server.key"], "--trusted-ca-file", id="client-cert-auth-without-ca"),
])
def test_etcdlite_bad_tls_flags(pki_dir, tmp_path, argv, message):
    """Bad TLS flags: a ConfigError naming the flag (printed as one line by python -m etcdlite)."""
    argv = [a.replace("{pki}", str(pki_dir)) for a in argv]
    ns = etcd_config.build_parser().parse_args(["--name", "default", "--data-dir", str(tmp_path), *argv])
    with pytest.raises(etcd_config.ConfigError, match=message):
        etcd_config.from_args(ns)
