"""TLS bootstrap end to end with real processes: etcd, an HTTPS apiserver under Node,RBAC with bootstrap-token
authentication, a controller-manager running csrapproving + csrsigning, the kubeling CLI (token create, join)
and the real kubectl (get csr, certificate approve). The kubelet's bootstrap (kubelet/certificate/bootstrap.py)
runs against them and its certificate registers the Node; the real kubelet process over the CRI shim is in
tests/e2e/test_join_kubelet.py (needs Docker).
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import subprocess
import sys
import time

import pytest
from cryptography import x509

import support
from kubeling.cli.token import token_secret
from kubeling.client import ApiError, Client, kubeconfig
from kubeling.pki import pubkeypin

KUBECTL = "/usr/bin/kubectl"
KUBELING = [os.path.join(os.path.dirname(sys.executable), "kubeling")]


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with support.secure_control_plane(tmp_path_factory.mktemp("tlsboot"),
                                      controllers="csrapproving,csrsigning,tokencleaner,bootstrapsigner") as cp:
        yield cp


def kubeling(cp, *args, timeout=60, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([*KUBELING, "--kubeconfig", str(cp.kubeconfig), *args], capture_output=True, text=True,
                       timeout=timeout, cwd=support.REPO)
    if check and r.returncode != 0:
        raise AssertionError(f"kubeling {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def kubectl(cp, *args, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), *args], capture_output=True, text=True,
                          timeout=timeout)


def join_argv(cp, token: str, home, node: str, *extra: str, pin: str | None = None) -> list[str]:
    ca_pem = (cp.extra["pki"] / "ca.crt").read_bytes()
    pin = pin or pubkeypin.hash_cert(x509.load_pem_x509_certificate(ca_pem))
    return [*KUBELING, "join", cp.server.removeprefix("https://"), "--token", token,
            "--discovery-token-ca-cert-hash", pin, "--node-name", node, "--node-ip", "127.0.0.1",
            "--home", str(home), "--units-dir", str(home / "units"), *extra]


def test_token_create_list_delete(cp):
    """create prints <id>.<secret> and writes the kubeadm Secret; list shows it with its TTL; delete removes it."""
    token = kubeling(cp, "token", "create", "--ttl", "2h", "--description", "for w0").stdout.strip()
    assert len(token) == 23 and token[6] == "."
    listed = kubeling(cp, "token", "list").stdout
    assert token in listed and "authentication,signing" in listed and "for w0" in listed
    assert "system:bootstrappers:kubeadm:default-node-token" in listed
    line = next(ln for ln in listed.splitlines() if token in ln)
    assert line.split()[1] in ("1h", "2h", "119m", "1h59m"), line
    r = kubectl(cp, "get", "secret", "-n", "kube-system", f"bootstrap-token-{token[:6]}", "-o", "json")
    secret = json.loads(r.stdout)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert base64.b64decode(secret["data"]["token-secret"]).decode() == token[7:]
    assert kubeling(cp, "token", "delete", token[:6]).stdout.strip() == f'bootstrap token "{token[:6]}" deleted'
    assert token not in kubeling(cp, "token", "list").stdout
    r = kubeling(cp, "token", "delete", token[:6], check=False)
    assert r.returncode == 1 and r.stderr.strip() == f'error: bootstrap token "{token[:6]}" not found'


def _pending_csrs(cp, requester: str) -> list[str]:
    r = kubectl(cp, "get", "csr", "-o", "json")
    items = json.loads(r.stdout)["items"] if r.returncode == 0 else []
    return [c["metadata"]["name"] for c in items if c["spec"].get("username") == requester
            and not (c.get("status") or {}).get("conditions")]


def test_join_then_kubelet_bootstrap(cp, tmp_path):
    """join verifies the CA, writes the bootstrap kubeconfig and the worker's units, and gets its serving and
    kube-proxy certificates once kubectl approves them; the kubelet's bootstrap then obtains an auto-approved
    client certificate, writes its kubeconfig, and the Node registers with it."""
    line = kubeling(cp, "token", "create", "--print-join-command").stdout.strip()
    words = line.split()
    assert words[:2] == ["kubeling", "join"] and words[2] == cp.server.removeprefix("https://")
    token, pin = words[words.index("--token") + 1], words[words.index("--discovery-token-ca-cert-hash") + 1]
    assert pin.startswith("sha256:") and len(pin) == 71
    home = tmp_path / "w1"
    log = open(tmp_path / "join.log", "w+")
    join = subprocess.Popen(join_argv(cp, token, home, "w1", "--certificate-timeout", "60s"), stdout=log,
                            stderr=subprocess.STDOUT, cwd=support.REPO)
    try:
        requester = f"system:bootstrap:{token[:6]}"
        support.wait_for("join's two CSRs", lambda: len(_pending_csrs(cp, requester)) == 2 or join.poll() is not None,
                         30, 0.3)
        names = _pending_csrs(cp, requester)
        assert len(names) == 2, (tmp_path / "join.log").read_text()
        r = kubectl(cp, "certificate", "approve", *names)
        assert r.returncode == 0, r.stderr
        assert join.wait(timeout=30) == 0, (tmp_path / "join.log").read_text()
    finally:
        if join.poll() is None:
            support.stop_process(join)
        log.close()
    out = (tmp_path / "join.log").read_text()
    assert "systemctl daemon-reload && systemctl enable --now kubeling-cri-shim-w1 kubeling-kubelet-w1 " \
           "kubeling-kube-proxy-w1 kubeling-hostgw-w1" in out, out
    assert (home / "pki" / "ca.crt").read_bytes() == (cp.extra["pki"] / "ca.crt").read_bytes()
    unit = (home / "units" / "kubeling-kubelet-w1.service").read_text()
    assert f"--bootstrap-kubeconfig {home}/nodes/w1/bootstrap-kubelet.kubeconfig" in unit
    assert f"--tls-cert-file {home}/pki/nodes/w1/kubelet.crt" in unit
    serving = x509.load_pem_x509_certificate((home / "pki" / "nodes" / "w1" / "kubelet.crt").read_bytes())
    assert serving.subject.rfc4514_string() == "CN=system:node:w1,O=system:nodes"
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    # kube-proxy's approved identity may list services, and nothing it is not granted
    async def as_proxy():
        async with Client.from_kubeconfig(home / "nodes" / "w1" / "kube-proxy.kubeconfig") as c:
            await c.list("services")
            with pytest.raises(ApiError) as e:
                await c.list("secrets")
            assert e.value.code == 403
    asyncio.run(as_proxy())

    from kubelet.certificate import bootstrap
    kc_path = home / "nodes" / "w1" / "kubelet.kubeconfig"
    assert not kc_path.exists()
    t0 = time.monotonic()
    assert asyncio.run(bootstrap.load_client_cert(kc_path, home / "nodes" / "w1" / "bootstrap-kubelet.kubeconfig",
                                                  home / "nodes" / "w1" / "pki", "w1", timeout=30))
    took = time.monotonic() - t0
    current = home / "nodes" / "w1" / "pki" / "kubelet-client-current.pem"
    assert current.is_symlink() and os.stat(current.resolve()).st_mode & 0o777 == 0o600
    client_cert = x509.load_pem_x509_certificates(current.read_bytes())[0]
    assert client_cert.subject.rfc4514_string() == "CN=system:node:w1,O=system:nodes"
    print(f"kubelet TLS bootstrap: certificate issued in {took:.2f}s")
    # a second start finds the valid kubeconfig and does nothing
    assert not asyncio.run(bootstrap.load_client_cert(kc_path, home / "x", home / "nodes" / "w1" / "pki", "w1"))

    async def register():
        async with Client.from_kubeconfig(kc_path) as c:
            await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}})
            with pytest.raises(ApiError) as e:  # NodeRestriction: only its own Node
                await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w2"}})
            assert e.value.code == 403
    asyncio.run(register())
    asyncio.run(rotate(kc_path, home / "nodes" / "w1" / "pki", client_cert))
    r = kubectl(cp, "get", "csr")
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    kubelet_rows = [row for row in rows if row[2] == "kubernetes.io/kube-apiserver-client-kubelet"
                    and row[3] == requester]
    assert kubelet_rows and kubelet_rows[-1][-1] == "Approved,Issued", r.stdout
    assert sum(row[-1] == "Approved,Issued" and row[3] == requester for row in rows) == 3, r.stdout
    assert [row[-1] for row in rows if row[3] == "system:node:w1"] == ["Approved,Issued"], r.stdout
    assert kubectl(cp, "get", "node", "w1").returncode == 0


async def rotate(kc_path, cert_dir, old_cert):
    """--rotate-certificates: once due, the node renews as itself (selfnodeclient auto-approval), the pair
    is replaced and the running client's TLS context reloaded; the new certificate works."""
    from kubelet.certificate import manager
    stop = asyncio.Event()
    reloaded = []

    def reload(path):
        reloaded.append(path)
        stop.set()
    far = old_cert.not_valid_after_utc
    await asyncio.wait_for(manager.run(kc_path, cert_dir, "w1", reload=reload, stop=stop, timeout=30,
                                       now=lambda: far), 40)
    assert reloaded == [cert_dir / "kubelet-client-current.pem"]
    new = x509.load_pem_x509_certificates(reloaded[0].read_bytes())[0]
    assert new.serial_number != old_cert.serial_number and new.subject == old_cert.subject
    async with Client.from_kubeconfig(kc_path) as c:
        csrs = (await c.list("certificatesigningrequests"))["items"]
        mine = [x for x in csrs if x["spec"]["username"] == "system:node:w1"]
        assert [x["status"]["conditions"][0]["message"] for x in mine] == [
            "Auto approving self kubelet client certificate after SubjectAccessReview."]
        await c.get("nodes", "w1")


def test_wrong_ca_hash_is_one_line(cp, tmp_path):
    """A pin that is not the cluster CA's: exit 1, one line naming the hash found, nothing written."""
    token = kubeling(cp, "token", "create").stdout.strip()
    r = subprocess.run(join_argv(cp, token, tmp_path / "w", "w9", pin="sha256:" + "ab" * 32),
                       capture_output=True, text=True, timeout=60, cwd=support.REPO)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cluster CA found in cluster-info ConfigMap is invalid: "
                                                   "none of the public keys \"sha256:"), r.stderr
    assert not (tmp_path / "w").exists()


def test_deleted_and_expired_tokens_are_refused(cp, tmp_path):
    """A deleted token and an expired one get 401 from the apiserver: join says so in one line; the
    tokencleaner deletes the expired token's Secret."""
    token = kubeling(cp, "token", "create").stdout.strip()
    kubeling(cp, "token", "delete", token)
    expired = "abcdef.0123456789abcdef"

    async def create_expired():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
            await c.create("secrets", token_secret(expired, ttl=3600, usages=["authentication", "signing"],
                                                   groups=[], now=past), namespace="kube-system")
    asyncio.run(create_expired())
    for t in (token, expired):
        r = subprocess.run(join_argv(cp, t, tmp_path / "w", "w8"), capture_output=True, text=True, timeout=60,
                           cwd=support.REPO)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            f"error: the apiserver at {cp.server} refused the bootstrap token (401 Unauthorized): it is unknown, "
            f"expired or deleted; create one with `kubeling token create` on the control plane"], r.stderr
    support.wait_for("tokencleaner deleting the expired token's Secret", lambda: kubectl(
        cp, "get", "secret", "-n", "kube-system", f"bootstrap-token-{expired[:6]}").returncode != 0, 15, 0.3)


def test_bootstrap_token_rbac_is_tight(cp, tmp_path):
    """The bootstrap identity may create/get/list/watch CSRs and read cluster-info; not other configmaps,
    secrets or nodes, and it cannot approve its own request."""
    token = kubeling(cp, "token", "create").stdout.strip()
    kc = tmp_path / "bootstrap.kubeconfig"
    kubeconfig.write(kc, server=cp.server, user="bootstrap", ca_file=str(cp.extra["pki"] / "ca.crt"), token=token)

    async def probe():
        from kubeling.client.csr import make_csr, request_certificate
        from kubeling.pki.certs import new_private_key
        async with Client.from_kubeconfig(kc) as c:
            await c.get("configmaps", "cluster-info", namespace="kube-public")
            await c.list("certificatesigningrequests")
            for call in (c.get("configmaps", "kube-root-ca.crt", namespace="kube-public"),
                         c.list("secrets", namespace="kube-system"), c.list("nodes"),
                         c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "evil"}})):
                with pytest.raises(ApiError) as e:
                    await call
                assert e.value.code == 403
            with pytest.raises(ApiError) as e:  # CertificateSubjectRestriction
                await request_certificate(c, make_csr(new_private_key(), common_name="system:admin",
                                                      organizations=("system:masters",)),
                                          signer_name="kubernetes.io/kube-apiserver-client", usages=["client auth"])
            assert e.value.code == 403 and "system:masters group is not allowed" in e.value.message
            csr = await request_certificate(c, make_csr(new_private_key(), common_name="system:admin"),
                                            signer_name="kubernetes.io/kube-apiserver-client",
                                            usages=["client auth"])
            assert csr["spec"]["username"] == f"system:bootstrap:{token[:6]}"
            csr.setdefault("status", {})["conditions"] = [{"type": "Approved", "status": "True"}]
            with pytest.raises(ApiError) as e:
                await c.replace("certificatesigningrequests", csr, subresource="approval")
            assert e.value.code == 403
            await asyncio.sleep(1)  # the approver leaves it alone: not a kubelet client request
            got = await c.get("certificatesigningrequests", csr["metadata"]["name"])
            assert not (got.get("status") or {}).get("conditions")
        # CertificateApproval: the controller-manager may approve only kubelet client requests
        async with Client.from_kubeconfig(cp.tmp / "controller-manager.kubeconfig") as cm:
            got.setdefault("status", {})["conditions"] = [{"type": "Approved", "status": "True"}]
            with pytest.raises(ApiError) as e:
                await cm.replace("certificatesigningrequests", got, subresource="approval")
            assert e.value.code == 403 and e.value.message.endswith(
                'user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"')
    asyncio.run(probe())


def test_kubectl_deny_is_final(cp, tmp_path):
    """kubectl certificate deny (a protobuf PUT to /approval) marks the request Denied; the signer leaves it,
    and a later approve is refused."""
    from kubeling.client.csr import make_csr, request_certificate
    from kubeling.pki.certs import new_private_key

    async def create():
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            return await request_certificate(c, make_csr(new_private_key(), common_name="jane"), name="jane-deny",
                                             signer_name="kubernetes.io/kube-apiserver-client",
                                             usages=["client auth"])
    asyncio.run(create())
    r = kubectl(cp, "certificate", "deny", "jane-deny")
    assert r.returncode == 0 and "denied" in r.stdout, r.stderr
    time.sleep(0.5)
    r = kubectl(cp, "get", "csr", "jane-deny", "--no-headers")
    assert r.stdout.split()[-1] == "Denied", r.stdout
    r = kubectl(cp, "certificate", "approve", "jane-deny")
    assert r.returncode == 1 and r.stderr.strip() == 'error: certificate signing request "jane-deny" is already Denied'

    async def approve_anyway():  # what kubectl checks on its side, the apiserver enforces
        async with Client.from_kubeconfig(cp.kubeconfig) as c:
            csr = await c.get("certificatesigningrequests", "jane-deny")
            csr["status"]["conditions"].append({"type": "Approved", "status": "True"})
            with pytest.raises(ApiError) as e:
                await c.replace("certificatesigningrequests", csr, subresource="approval")
            assert e.value.code == 422 and "mutually exclusive" in e.value.message
            assert "certificate" not in (await c.get("certificatesigningrequests", "jane-deny"))["status"]
    asyncio.run(approve_anyway())


def test_join_unapproved_times_out_in_one_line(cp, tmp_path):
    """Nobody approves the serving and kube-proxy requests: join gives up after --certificate-timeout, one line."""
    token = kubeling(cp, "token", "create").stdout.strip()
    r = subprocess.run(join_argv(cp, token, tmp_path / "w", "w7", "--certificate-timeout", "1s"),
                       capture_output=True, text=True, timeout=60, cwd=support.REPO)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: timed out after 1s waiting for certificate signing request csr-") and \
        last.endswith("to be approved"), r.stderr
    assert "kubectl certificate approve csr-" in r.stderr


def test_cluster_info_is_signed_per_token(cp, tmp_path):
    """The bootstrapsigner signs cluster-info with each signing token and drops the signature when the token
    goes; join refuses a token that is not for signing, in one line."""
    from kubeling.pki import jws
    token = kubeling(cp, "token", "create").stdout.strip()

    def signature() -> str | None:
        r = kubectl(cp, "get", "configmap", "-n", "kube-public", "cluster-info", "-o", "json")
        return json.loads(r.stdout)["data"].get(f"jws-kubeconfig-{token[:6]}") if r.returncode == 0 else None
    support.wait_for("cluster-info signed", lambda: signature() is not None, 15, 0.2)
    cm = json.loads(kubectl(cp, "get", "configmap", "-n", "kube-public", "cluster-info", "-o", "json").stdout)
    assert jws.detached_token_is_valid(signature(), cm["data"]["kubeconfig"], token[:6], token[7:])
    kubeling(cp, "token", "delete", token[:6])
    support.wait_for("signature removed", lambda: signature() is None, 15, 0.2)
    auth_only = kubeling(cp, "token", "create", "--usages", "authentication").stdout.strip()
    r = subprocess.run(join_argv(cp, auth_only, tmp_path / "w", "w6", "--discovery-timeout", "2s"),
                       capture_output=True, text=True, timeout=60, cwd=support.REPO)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f'error: token id "{auth_only[:6]}" is invalid for this cluster or it has expired: cluster-info has no '
        f"signature for it (is the controller-manager's bootstrapsigner running?)"], r.stderr
