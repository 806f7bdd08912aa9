"""etcdlite with TLS, as kubeadm runs etcd: clients need a certificate of the etcd CA
(--client-cert-auth), members talk to each other over mutual TLS (--peer-client-cert-auth).

Real etcdlite processes on free ports, the real etcdctl 3.4, certificates from kubeling.pki.
"""
from __future__ import annotations

import asyncio
import os
import sys

import grpc
import pytest

import support
from apiserver.storage import etcd3
from kubeling import pki
from kubeling.pki import certs
from proto.etcdlite_peer import peer_pb2 as peerpb
from proto.etcdlite_peer import peer_pb2_grpc

pytestmark = pytest.mark.skipif(not os.path.exists(support.ETCDCTL), reason="etcdctl 3.4 is not installed")

MEMBERS = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    pki.ensure(d, etcd_members=MEMBERS)
    # A client certificate with the right name but from a CA etcd does not trust.
    ca, key = certs.new_ca("etcd-ca")
    spec = next(s for s in pki.cert_specs() if s.name == "apiserver-etcd-client")
    certs.write_cert_and_key(d / "foreign-client", *certs.new_signed_cert(spec, ca, key))
    return d


def tls_flags(pki_dir, member: str) -> list[str]:
    """etcd's TLS flags with ``member``'s files (as kubeadm's etcd static pod)."""
    server, peer = pki_dir / f"etcd/server-{member}", pki_dir / f"etcd/peer-{member}"
    ca = str(pki_dir / "etcd/ca.crt")
    return ["--cert-file", f"{server}.crt", "--key-file", f"{server}.key", "--trusted-ca-file", ca,
            "--client-cert-auth", "--peer-cert-file", f"{peer}.crt", "--peer-key-file", f"{peer}.key",
            "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]


def client_flags(pki_dir, cert: str | None = "apiserver-etcd-client", *, ca: str = "etcd/ca.crt") -> list[str]:
    flags = ["--cacert", str(pki_dir / ca)]
    if cert:
        flags += ["--cert", str(pki_dir / f"{cert}.crt"), "--key", str(pki_dir / f"{cert}.key")]
    return flags


def member_argv(pki_dir, tmp, name: str, client: int, peer: int, initial: str, *, certs_of: str = "") -> list[str]:
    c, p = f"https://127.0.0.1:{client}", f"https://127.0.0.1:{peer}"
    return [sys.executable, "-m", "etcdlite", "--name", name, "--data-dir", str(tmp / f"{name}.etcd"),
            "--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", p,
            "--initial-advertise-peer-urls", p, "--initial-cluster", initial,
            *tls_flags(pki_dir, certs_of or name)]


@pytest.fixture(scope="module")
def single(pki_dir, tmp_path_factory):
    """One etcdlite member, client and peer URLs https://; yields its client endpoint."""
    tmp = tmp_path_factory.mktemp("etcdlite-tls")
    client, peer = support.free_port(), support.free_port()
    with support.ProcessGroup(tmp) as procs:
        procs.spawn("etcdlite", member_argv(pki_dir, tmp, "default", client, peer,
                                            f"default=https://127.0.0.1:{peer}", certs_of="n1"))
        procs.wait_ready("etcdlite", port=client)
        ep = f"https://127.0.0.1:{client}"
        support.wait_for("etcdlite answers over TLS", lambda: support.etcdctl(
            ep, *client_flags(pki_dir), "endpoint", "health", check=False).returncode == 0, 20)
        yield ep


def test_put_get_with_the_client_cert(pki_dir, single):
    """etcdctl --cacert --cert --key https://...: put and get work."""
    support.etcdctl(single, *client_flags(pki_dir), "put", "/tls/k", "v1")
    out = support.etcdctl(single, *client_flags(pki_dir), "get", "/tls/k", "--print-value-only").stdout
    assert out.strip() == "v1"


@pytest.mark.parametrize("flags", [
    pytest.param(["--cacert", "etcd/ca.crt"], id="no-client-cert"),
    pytest.param(["--cacert", "etcd/ca.crt", "--cert", "foreign-client.crt", "--key", "foreign-client.key"],
                 id="cert-from-another-ca"),
    pytest.param(["--cacert", "etcd/ca.crt", "--cert", "admin.crt", "--key", "admin.key"],
                 id="cluster-ca-cert-not-etcd-ca"),
])
def test_refused_without_a_cert_of_the_etcd_ca(pki_dir, single, flags):
    """--client-cert-auth: no certificate, or one from another CA, fails the TLS handshake."""
    flags = [f if f.startswith("--") else str(pki_dir / f) for f in flags]
    r = support.etcdctl(single, *flags, "--dial-timeout=1s", "get", "/tls/k", check=False, command_timeout="2s")
    assert r.returncode != 0
    assert "v1" not in r.stdout


def test_plain_http_client_refused(pki_dir, single):
    """An http:// (no TLS) client cannot talk to an https:// listener."""
    r = support.etcdctl(single.replace("https://", "http://"), "--dial-timeout=1s", "get", "/tls/k",
                        check=False, command_timeout="3s")
    assert r.returncode != 0


def test_three_members_over_peer_mtls(pki_dir, tmp_path):
    """Three members with --peer-client-cert-auth elect a leader and replicate a write; the peer
    port refuses a caller without a peer certificate."""
    ports = {m: (support.free_port(), support.free_port()) for m in MEMBERS}
    initial = ",".join(f"{m}=https://127.0.0.1:{p}" for m, (_, p) in ports.items())
    eps = {m: f"https://127.0.0.1:{c}" for m, (c, _) in ports.items()}
    with support.ProcessGroup(tmp_path) as procs:
        for m, (c, p) in ports.items():
            procs.spawn(m, member_argv(pki_dir, tmp_path, m, c, p, initial))

        def all_healthy() -> bool:
            r = support.etcdctl(",".join(eps.values()), *client_flags(pki_dir), "endpoint", "health",
                                check=False, command_timeout="2s")
            return r.returncode == 0
        try:
            support.wait_for("3 TLS members healthy", all_healthy, 40, 0.5)
        except AssertionError:
            raise AssertionError("\n".join(f"{m}: {procs.log(m, 1500)}" for m in MEMBERS)) from None
        status = support.etcdctl(",".join(eps.values()), *client_flags(pki_dir), "endpoint", "status",
                                 "-w", "json").stdout
        assert status.count('"leader"') == 3
        support.etcdctl(eps["n1"], *client_flags(pki_dir), "put", "/replicated", "over-mtls")

        def on_n3() -> bool:
            r = support.etcdctl(eps["n3"], *client_flags(pki_dir), "get", "/replicated", "--print-value-only",
                                "--consistency=s", check=False)
            return r.stdout.strip() == "over-mtls"
        support.wait_for("write replicated to n3", on_n3, 15)

        # The apiserver's store client balances over all three https:// members with its etcd client cert.
        async def through_store():
            store = etcd3.Etcd3Store(list(eps.values()), cafile=str(pki_dir / "etcd/ca.crt"),
                                     certfile=str(pki_dir / "apiserver-etcd-client.crt"),
                                     keyfile=str(pki_dir / "apiserver-etcd-client.key"))
            try:
                await store.create("/registry/tls/balanced", {"kind": "Test"})
                return (await store.get("/registry/tls/balanced")).obj["kind"], store._balanced
            finally:
                await store.close()
        assert asyncio.run(through_store()) == ("Test", True)

        # The peer listener: a TLS caller without a client certificate is refused in the handshake.
        creds = grpc.ssl_channel_credentials(root_certificates=(pki_dir / "etcd/ca.crt").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{ports['n2'][1]}", creds) as ch:
            with pytest.raises(grpc.RpcError) as e:
                peer_pb2_grpc.PeerStub(ch).Members(peerpb.MembersRequest(), timeout=3)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        # ... and with the peer certificate the same call works.
        creds = grpc.ssl_channel_credentials(root_certificates=(pki_dir / "etcd/ca.crt").read_bytes(),
                                             private_key=(pki_dir / "etcd/peer-n1.key").read_bytes(),
                                             certificate_chain=(pki_dir / "etcd/peer-n1.crt").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{ports['n2'][1]}", creds) as ch:
            assert len(peer_pb2_grpc.PeerStub(ch).Members(peerpb.MembersRequest(), timeout=5).members) == 3


def test_https_url_without_cert_is_a_clear_error(tmp_path):
    """An https:// listen URL without --cert-file: one line, exit 1 (etcd refuses the same)."""
    import subprocess
    r = subprocess.run([sys.executable, "-m", "etcdlite", "--name", "x", "--data-dir", str(tmp_path / "x"),
                        "--listen-client-urls", "https://127.0.0.1:1", "--advertise-client-urls",
                        "https://127.0.0.1:1"], capture_output=True, text=True, timeout=30, cwd=support.REPO)
    assert r.returncode == 1 and "--cert-file" in r.stderr and "Traceback" not in r.stderr
