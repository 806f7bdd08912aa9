"""The control plane over TLS as kubeadm wires it: etcdlite (client mTLS) <- apiserver (HTTPS,
optional client certs) <- kubectl / kubeling with kubeconfigs embedding the certificates;
apiserver -> kubelet over mutual TLS.

Real processes on free ports; certificates from kubeling.pki; the real /usr/bin/kubectl.
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys

import httpx
import pytest

import support
from kubeling import pki
from kubeling.client import ApiError, Client
from kubeling.pki import certs, flags

KUBECTL = "/usr/bin/kubectl"
NODE = "tlsnode"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """etcdlite + apiserver + a kubelet (no container runtime: only its HTTPS API matters), all TLS."""
    tmp = tmp_path_factory.mktemp("tls-cp")
    p = tmp / "pki"
    pki.ensure(p, nodes=[NODE], etcd_members=["default"])
    etcd_port, peer_port, api_port = support.free_port(), support.free_port(), support.free_port()
    kubelet_port, healthz_port = support.free_port(), support.free_port()
    server = f"https://127.0.0.1:{api_port}"
    pki.write_kubeconfigs(tmp, server=server, nodes=[NODE], pki_dir=p)
    etcd_url = f"https://127.0.0.1:{etcd_port}"
    with support.ProcessGroup(tmp) as procs:
        procs.spawn("etcdlite", [
            sys.executable, "-m", "etcdlite", "--name", "default", "--data-dir", str(tmp / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"https://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=https://127.0.0.1:{peer_port}",
            *flags.etcd_flags(p)])
        procs.wait_ready("etcdlite", port=etcd_port)
        procs.spawn("apiserver", [
            sys.executable, "-m", "apiserver", "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--secure-port", str(api_port),
            *flags.apiserver_flags(p)])
        ca = ssl.create_default_context(cafile=str(p / "ca.crt"))

        def ready() -> bool:
            if procs.get("apiserver").poll() is not None:
                raise AssertionError(procs.log("apiserver"))
            return httpx.get(f"{server}/readyz", verify=ca, timeout=2, trust_env=False).status_code == 200
        try:
            support.wait_for("apiserver ready over HTTPS", ready, 40, 0.2, errors=(httpx.HTTPError,))
        except AssertionError:
            raise AssertionError(procs.log("apiserver") + procs.log("etcdlite")) from None
        procs.spawn("kubelet", [
            sys.executable, "-m", "kubelet", "--kubeconfig", str(tmp / "nodes" / NODE / "kubelet.kubeconfig"),
            "--hostname-override", NODE, "--node-ip", "127.0.0.1",
            "--container-runtime-endpoint", f"unix://{tmp}/no-runtime.sock", "--root-dir", str(tmp / "node"),
            "--port", str(kubelet_port), "--healthz-port", str(healthz_port), "--bridge-name", "kltls0",
            *flags.kubelet_flags(p, NODE)])
        procs.wait_ready("kubelet", port=kubelet_port)
        yield {"etcd": etcd_url, "tmp": tmp, "pki": p, "server": server, "ca": ca, "procs": procs, "kubelet_port": kubelet_port,
               "healthz_port": healthz_port, "admin": tmp / "admin.kubeconfig"}


def ctx(p, cert: str | None, *, ca: str = "ca.crt") -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=str(p / ca))
    if cert:
        c.load_cert_chain(str(p / f"{cert}.crt"), str(p / f"{cert}.key"))
    return c


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
def test_real_kubectl_with_the_admin_kubeconfig(cluster):
    """kubectl 1.32 with the admin kubeconfig (embedded CA, client cert and key) lists namespaces."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run([KUBECTL, "--kubeconfig", str(cluster["admin"]), "get", "ns", "-o", "name"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert "namespace/kube-system" in r.stdout.split()


def test_kubeling_cli_and_client_over_https(cluster):
    """The bundled CLI and kubeling.client read the same kubeconfig and speak HTTPS."""
    cli = [sys.executable, "-c", "import sys; from kubeling.cli.main import main; sys.exit(main())"]
    r = subprocess.run([*cli, "--kubeconfig", str(cluster["admin"]), "get", "pods", "-A"],
                       capture_output=True, text=True, timeout=30, cwd=support.REPO)
    assert r.returncode == 0, r.stderr
    import asyncio

    async def names():
        async with Client.from_kubeconfig(cluster["admin"]) as c:
            return {n["metadata"]["name"] for n in (await c.list("namespaces"))["items"]}
    assert "default" in asyncio.run(names())


def test_wrong_ca_fails_the_handshake(cluster):
    """A client trusting another CA (etcd's), curl without the CA, or plain HTTP: no answer from the apiserver."""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{cluster['server']}/version", verify=ctx(cluster["pki"], None, ca="etcd/ca.crt"), timeout=5,
                  trust_env=False)
    if shutil.which("curl"):
        r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "5", f"{cluster['server']}/version"],
                           capture_output=True, text=True, timeout=15)
        assert r.returncode == 60, r  # curl: peer certificate cannot be authenticated with known CA certificates
    with pytest.raises(httpx.HTTPError):
        httpx.get(cluster["server"].replace("https://", "http://") + "/version", timeout=5, trust_env=False)


def test_client_cert_of_another_ca_fails(cluster, tmp_path):
    """A client certificate not signed by --client-ca-file fails the handshake (not a 401)."""
    ca, key = certs.new_ca("kubernetes")
    spec = next(s for s in pki.cert_specs() if s.name == "admin")
    certs.write_cert_and_key(tmp_path / "evil", *certs.new_signed_cert(spec, ca, key))
    c = ssl.create_default_context(cafile=str(cluster["pki"] / "ca.crt"))
    c.load_cert_chain(str(tmp_path / "evil.crt"), str(tmp_path / "evil.key"))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{cluster['server']}/version", verify=c, timeout=5, trust_env=False)


def test_kubelet_https_requires_a_cluster_client_cert(cluster):
    """The kubelet's API on its port: HTTPS with the node's serving cert; the apiserver's kubelet-client
    cert gets in, no cert gets 401 (--anonymous-auth=false), another CA's cert fails the handshake;
    /healthz on --healthz-port stays plain HTTP."""
    p, url = cluster["pki"], f"https://127.0.0.1:{cluster['kubelet_port']}/pods"
    r = httpx.get(url, verify=ctx(p, "apiserver-kubelet-client"), timeout=5, trust_env=False)
    assert r.status_code == 200 and r.json()["kind"] == "PodList"
    assert httpx.get(url, verify=ctx(p, None), timeout=5, trust_env=False).status_code == 401
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=ctx(p, "apiserver-etcd-client", ca="ca.crt"), timeout=5, trust_env=False)
    h = httpx.get(f"http://127.0.0.1:{cluster['healthz_port']}/healthz", timeout=5, trust_env=False)
    assert h.status_code in (200, 503)  # 503 while it has no container runtime; it answers plain HTTP


async def ensure_node(c: Client, kubelet_port: int) -> None:
    """The Node the kubelet would register (it cannot here: no runtime) with its address and port."""
    try:
        node = await c.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    except ApiError as e:
        if e.code != 409:
            raise
        node = await c.get("nodes", NODE)
    node["status"] = {**(node.get("status") or {}),
                      "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}
    await c.replace_status("nodes", node)


async def test_apiserver_reaches_the_kubelet_over_mtls(cluster):
    """pods/NAME/log goes apiserver -> kubelet over HTTPS with apiserver-kubelet-client: the kubelet's own
    answer (pod not on this node) comes back, not a TLS error nor the kubelet's 401."""
    async with Client.from_kubeconfig(cluster["admin"]) as c:
        await ensure_node(c, cluster["kubelet_port"])
        await c.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tls-log"},
                                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1.35"}]}},
                       namespace="default")
        try:
            with pytest.raises(Exception) as e:
                await c.request("GET", "/api/v1/namespaces/default/pods/tls-log/log")
            assert "not found on this node" in str(e.value), str(e.value)
        finally:
            await c.delete("pods", "tls-log", namespace="default")


@pytest.mark.skipif(not os.path.exists(support.ETCDCTL), reason="etcdctl 3.4 is not installed")
def test_etcdctl_with_the_healthcheck_client_reads_what_the_apiserver_wrote(cluster):
    """The apiserver wrote through mutual TLS: etcdctl with kubeadm's healthcheck-client cert sees its keys."""
    r = support.etcdctl(cluster["etcd"], *flags.etcdctl_flags(cluster["pki"]), "get", "/registry/namespaces/",
                        "--prefix", "--keys-only")
    assert "/registry/namespaces/kube-system" in r.stdout.split()


async def test_watch_streams_over_https(cluster):
    """A watch (what every informer runs on) streams events over TLS: a ConfigMap created after the
    watch started arrives as ADDED."""
    import asyncio
    async with Client.from_kubeconfig(cluster["admin"]) as c:
        rv = (await c.list("configmaps", namespace="default"))["metadata"]["resourceVersion"]
        events = c.watch("configmaps", namespace="default", resource_version=rv, timeout_seconds=20)
        await c.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tls-watch"}},
                       namespace="default")
        async with asyncio.timeout(15):
            async for kind, obj in events:
                if kind == "ADDED" and obj["metadata"]["name"] == "tls-watch":
                    break
        await events.aclose()


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
@pytest.mark.parametrize("kubeconfig,user,group", [
    pytest.param("admin.kubeconfig", "kubernetes-admin", "system:masters", id="admin"),
    pytest.param(f"nodes/{NODE}/kubelet.kubeconfig", f"system:node:{NODE}", "system:nodes", id="node"),
])
def test_client_cert_subject_reaches_authentication(cluster, kubeconfig, user, group):
    """kubectl auth whoami: the client certificate travelled through the TLS handshake and the ASGI TLS
    extension to the x509 authenticator (CN -> user, O -> groups)."""
    import json
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run([KUBECTL, "--kubeconfig", str(cluster["tmp"] / kubeconfig), "auth", "whoami", "-o", "json"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)["status"]["userInfo"]
    assert info["username"] == user and group in info["groups"]


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
async def test_exec_relayed_to_the_kubelet_over_wss(cluster):
    """kubectl exec: kubectl -> apiserver (HTTPS websocket) -> kubelet (wss with apiserver-kubelet-client);
    the kubelet's own refusal (the pod is not on it: no runtime here) reaches kubectl."""
    import asyncio
    async with Client.from_kubeconfig(cluster["admin"]) as c:
        await ensure_node(c, cluster["kubelet_port"])
        await c.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tls-exec"},
                                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1.35"}]}},
                       namespace="default")
        try:
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            proc = await asyncio.create_subprocess_exec(
                KUBECTL, "--kubeconfig", str(cluster["admin"]), "exec", "tls-exec", "--", "echo", "hi",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode != 0
            assert "not found on this node" in err.decode(), err.decode()
        finally:
            await c.delete("pods", "tls-exec", namespace="default")


def test_cli_with_the_wrong_ca_prints_one_line(cluster, tmp_path):
    """kubeling with a kubeconfig trusting another CA: a readable one-line error, no traceback."""
    p = cluster["pki"]
    from kubeling.client import kubeconfig
    kc = tmp_path / "wrong-ca.kubeconfig"
    kubeconfig.write(kc, server=cluster["server"], user="kubernetes-admin", ca_data=(p / "etcd/ca.crt").read_bytes(),
                     client_cert_data=(p / "admin.crt").read_bytes(), client_key_data=(p / "admin.key").read_bytes())
    cli = [sys.executable, "-c", "import sys; from kubeling.cli.main import main; sys.exit(main())"]
    r = subprocess.run([*cli, "--kubeconfig", str(kc), "get", "ns"], capture_output=True, text=True, timeout=30,
                       cwd=support.REPO)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "certificate" in r.stderr.lower(), r.stderr
