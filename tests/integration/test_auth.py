"""Authentication and authorization end to end: real etcd + two real apiservers under --authorization-mode
Node,RBAC (one over HTTPS with client certificates and anonymous requests allowed, one over plain HTTP
with --anonymous-auth=false), static tokens, ServiceAccount tokens from the TokenRequest API, the real
kubectl, the scheduler and controller-manager under their own identities, and a bounded fuzz run.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import random
import ssl
import subprocess
import sys
import time

import grpc
import httpx
import pytest

import support
from kubeling import pki
from kubeling.client import ApiError, Client, kubeconfig
from kubeling.pki import flags
from proto.cri import api_pb2 as pb
from proto.cri import api_pb2_grpc as pb_grpc

KUBECTL = "/usr/bin/kubectl"
ISSUER = "https://kubernetes.default.svc.cluster.local"
TOKENS = {"jane": "jane-token-0123456789", "n1": "node1-token-0123456789", "n2": "node2-token-0123456789",
          "sched": "sched-token-0123456789", "cm": "cm-token-0123456789", "admin": "admin-token-0123456789",
          "n3": "node3-token-0123456789"}
TOKEN_FILE = f"""{TOKENS['jane']},jane,uid-jane,"dev"
{TOKENS['n1']},system:node:n1,uid-n1,system:nodes
{TOKENS['n2']},system:node:n2,uid-n2,system:nodes
{TOKENS['n3']},system:node:n3,uid-n3,system:nodes
{TOKENS['sched']},system:kube-scheduler,uid-sched
{TOKENS['cm']},system:kube-controller-manager,uid-cm
{TOKENS['admin']},token-admin,uid-admin,system:masters
"""
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """etcd 3.4; apiserver "tls" (HTTPS, client CA, anonymous on) and "noanon" (HTTP, anonymous off),
    both with static tokens, ServiceAccount keys and Node,RBAC."""
    tmp = tmp_path_factory.mktemp("auth")
    p = tmp / "pki"
    pki.ensure(p, etcd_members=["default"], front_proxy=False)
    (tmp / "tokens.csv").write_text(TOKEN_FILE)
    auth_flags = ["--token-auth-file", str(tmp / "tokens.csv"), "--service-account-issuer", ISSUER,
                  "--service-account-key-file", str(p / "sa.pub"),
                  "--service-account-signing-key-file", str(p / "sa.key"), "--authorization-mode", "Node,RBAC",
                  "--enable-bootstrap-token-auth", "--enable-admission-plugins", "NodeRestriction"]
    etcd_port, peer_port, tls_port, plain_port = (support.free_port() for _ in range(4))
    with support.ProcessGroup(tmp) as procs:
        procs.spawn("etcd", support.store_argv("etcd", tmp / "etcd", etcd_port, peer_port))
        procs.wait_ready("etcd", port=etcd_port)
        etcd = f"http://127.0.0.1:{etcd_port}"
        tls_flags = flags.apiserver_flags(p)[:6]  # serving cert, key and client CA only (plain etcd)
        common = [sys.executable, "-m", "apiserver", "--etcd-servers", etcd, "--bind-address", "127.0.0.1"]
        procs.spawn("tls", [*common, "--secure-port", str(tls_port), *tls_flags, *auth_flags])
        procs.spawn("noanon", [*common, "--secure-port", str(plain_port), *auth_flags, "--anonymous-auth=false"])
        ca = ssl.create_default_context(cafile=str(p / "ca.crt"))
        tls, plain = f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{plain_port}"

        def ready() -> bool:
            for name in ("tls", "noanon"):
                if procs.get(name).poll() is not None:
                    raise AssertionError(procs.log(name))
            ok = httpx.get(f"{tls}/readyz", verify=ca, timeout=2, trust_env=False).status_code == 200
            return ok and httpx.get(f"{plain}/readyz", headers={"Authorization": f"Bearer {TOKENS['admin']}"},
                                    timeout=2, trust_env=False).status_code == 200
        try:
            support.wait_for("both apiservers ready", ready, 40, 0.2, errors=(httpx.HTTPError,))
        except AssertionError:
            raise AssertionError(procs.log("tls") + procs.log("noanon")) from None
        pki.write_kubeconfig(tmp / "admin.kubeconfig", pki_dir=p, identity="admin", server=tls)
        kubeconfig.write(tmp / "anon.kubeconfig", server=tls, user="anon", ca_file=str(p / "ca.crt"))
        for who in ("jane", "n1", "n2", "n3", "sched", "cm"):
            kubeconfig.write(tmp / f"{who}.kubeconfig", server=tls, user=who, ca_file=str(p / "ca.crt"),
                             token=TOKENS[who])
        yield {"tmp": tmp, "pki": p, "tls": tls, "plain": plain, "ca": ca, "procs": procs}


def kc(cluster, who: str) -> str:
    return str(cluster["tmp"] / f"{who}.kubeconfig")


async def admin_apply(cluster, objects: list[dict]) -> None:
    """Create each object with the admin's client certificate (system:masters), ignoring AlreadyExists."""
    async with Client.from_kubeconfig(kc(cluster, "admin")) as c:
        for o in objects:
            plural = {"Namespace": "namespaces", "RoleBinding": "rolebindings", "Secret": "secrets", "Pod": "pods",
                      "ServiceAccount": "serviceaccounts", "Node": "nodes"}[o["kind"]]
            try:
                await c.create(plural, o, namespace=o["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 409:
                    raise


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name, namespace, node, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.35"}], **spec}}


async def test_view_in_one_namespace(cluster):
    """jane bound to view in a: lists pods there, 403 (upstream's message) on create and on namespace b."""
    await admin_apply(cluster, [ns("a"), ns("b"), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "jane-view",
                                                                                          "namespace": "a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]}])
    async with Client.from_kubeconfig(kc(cluster, "jane")) as c:
        lst = None
        for _ in range(50):  # the binding reaches the watch cache within milliseconds
            try:
                lst = await c.list("pods", namespace="a")
                break
            except ApiError:
                await asyncio.sleep(0.1)
        assert lst is not None and lst["kind"] == "PodList"
        with pytest.raises(ApiError) as e:
            await c.create("pods", pod("x", "a", ""), namespace="a")
        assert e.value.code == 403
        assert e.value.status["message"] == ('pods is forbidden: User "jane" cannot create resource "pods" in API '
                                             'group "" in the namespace "a"')
        with pytest.raises(ApiError) as e:
            await c.list("pods", namespace="b")
        assert e.value.status["message"] == ('pods is forbidden: User "jane" cannot list resource "pods" in API '
                                             'group "" in the namespace "b"')
        assert e.value.status["reason"] == "Forbidden" and e.value.status["code"] == 403


def test_no_credentials_and_public_paths(cluster):
    """--anonymous-auth=false: no credentials -> 401 Status. Anonymous on: /healthz /livez /readyz /version
    answer, the API does not (403); a wrong token is 401 either way."""
    r = httpx.get(f"{cluster['plain']}/api/v1/namespaces/default/pods", trust_env=False)
    assert r.status_code == 401 and r.json() == UNAUTHORIZED
    assert httpx.get(f"{cluster['plain']}/healthz", trust_env=False).status_code == 401
    tls, ca = cluster["tls"], cluster["ca"]
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert httpx.get(f"{tls}{path}", verify=ca, trust_env=False).status_code == 200, path
    r = httpx.get(f"{tls}/api/v1/namespaces/default/pods", verify=ca, trust_env=False)
    assert r.status_code == 403 and 'User "system:anonymous" cannot list' in r.json()["message"]
    assert httpx.get(f"{tls}/api", verify=ca, trust_env=False).status_code == 403
    for server, verify in ((tls, ca), (cluster["plain"], True)):
        r = httpx.get(f"{server}/version", headers={"Authorization": "Bearer nope"}, verify=verify, trust_env=False)
        assert r.status_code == 401 and r.json() == UNAUTHORIZED


async def test_node_reads_only_its_pods_secrets(cluster):
    """n1's token reads the secret of a pod bound to n1 and gets 403 for the secret of n2's pod."""
    def secret(name):
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "a"},
                "stringData": {"k": "v"}}
    def env(s):
        return [{"name": "c", "image": "busybox:1.35", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": s, "key": "k"}}}]}]
    await admin_apply(cluster, [ns("a"), secret("s1"), secret("s2"), pod("p1", "a", "n1", containers=env("s1")),
                                pod("p2", "a", "n2", containers=env("s2"))])
    async with Client.from_kubeconfig(kc(cluster, "n1")) as n1:
        got = None
        for _ in range(50):
            try:
                got = await n1.get("secrets", "s1", namespace="a")
                break
            except ApiError:
                await asyncio.sleep(0.1)
        assert got is not None and got["metadata"]["name"] == "s1"
        with pytest.raises(ApiError) as e:
            await n1.get("secrets", "s2", namespace="a")
        assert e.value.code == 403 and e.value.status["message"] == (
            'secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the '
            "namespace \"a\": no relationship found between node 'n1' and this object")
        with pytest.raises(ApiError) as e:
            await n1.list("secrets", namespace="a")
        assert e.value.code == 403
        assert (await n1.list("pods", namespace="a"))["kind"] == "PodList"  # system:node rules


async def test_token_request_bound_to_a_pod(cluster):
    """TokenRequest bound to a pod -> a token that authenticates as the ServiceAccount; 401 once the pod is gone."""
    await admin_apply(cluster, [ns("sa"), {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "bot", "namespace": "sa"}},
                                pod("runner", "sa", "", serviceAccountName="bot")])
    async with Client.from_kubeconfig(kc(cluster, "admin")) as admin:
        p = await admin.get("pods", "runner", namespace="sa")
        tr = await admin.request("POST", "/api/v1/namespaces/sa/serviceaccounts/bot/token", body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "runner",
                                                                   "uid": p["metadata"]["uid"]}}})
        token = tr["status"]["token"]
        assert tr["status"]["expirationTimestamp"].endswith("Z")
        headers = {"Authorization": f"Bearer {token}"}
        ssr = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        async with httpx.AsyncClient(base_url=cluster["tls"], verify=cluster["ca"], trust_env=False) as h:
            r = await h.post(ssr, json={}, headers=headers)
            assert r.status_code == 201, r.text
            info = r.json()["status"]["userInfo"]
            assert info["username"] == "system:serviceaccount:sa:bot"
            assert "system:serviceaccounts:sa" in info["groups"]
            assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["runner"]
            tr_review = await admin.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body={
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
            assert tr_review["status"]["authenticated"] is True
            await admin.delete("pods", "runner", namespace="sa", grace_period_seconds=0)
            for _ in range(50):
                r = await h.post(ssr, json={}, headers=headers)
                if r.status_code == 401:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 401 and r.json() == UNAUTHORIZED


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
def test_real_kubectl_auth_can_i_and_whoami(cluster):
    """kubectl 1.32 with a token kubeconfig: auth can-i yes/no with exit 0/1; whoami over a client cert;
    kubeling auth can-i answers the same."""
    asyncio.run(test_view_in_one_namespace(cluster))  # jane's binding

    def kubectl(who, *args):
        return subprocess.run([KUBECTL, "--kubeconfig", kc(cluster, who), *args], capture_output=True, text=True,
                              timeout=30)
    r = kubectl("jane", "auth", "can-i", "list", "pods", "-n", "a")
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = kubectl("jane", "auth", "can-i", "create", "deployments.apps", "-n", "a")
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    r = kubectl("jane", "get", "pods", "-n", "b")
    assert r.returncode == 1 and 'cannot list resource "pods" in API group "" in the namespace "b"' in r.stderr
    r = kubectl("anon", "--token", TOKENS["jane"], "auth", "can-i", "list", "pods", "-n", "a")
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = kubectl("anon", "--token", TOKENS["jane"], "auth", "can-i", "list", "pods", "-n", "b")
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    r = kubectl("anon", "--token", TOKENS["jane"], "auth", "whoami")
    assert r.returncode == 0 and "jane" in r.stdout, r.stderr
    r = kubectl("admin", "auth", "whoami")
    assert r.returncode == 0 and "kubernetes-admin" in r.stdout and "system:masters" in r.stdout, r.stderr
    kubeling = [sys.executable, "-c", "from kubeling.cli.main import main; main()", "--kubeconfig", kc(cluster, "jane")]
    r = subprocess.run([*kubeling, "auth", "can-i", "list", "pods", "-n", "a"], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = subprocess.run([*kubeling, "auth", "can-i", "list", "pods", "-n", "b"], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr


async def test_scheduler_and_controller_manager_under_rbac(cluster):
    """The real scheduler and controller-manager, each with its own user, run a Deployment to bound pods."""
    procs = cluster["procs"]
    ports = {"scheduler": support.free_port(), "controller-manager": support.free_port()}
    procs.spawn("scheduler", [sys.executable, "-m", "scheduler", "--kubeconfig", kc(cluster, "sched"),
                              "--bind-address", "127.0.0.1", "--secure-port", str(ports["scheduler"])])
    procs.spawn("controller-manager", [sys.executable, "-m", "controllers", "--kubeconfig", kc(cluster, "cm"),
                                       "--bind-address", "127.0.0.1", "--secure-port",
                                       str(ports["controller-manager"])])
    try:
        for name, port in ports.items():
            procs.wait_ready(name, url=f"http://127.0.0.1:{port}/healthz", timeout=30)
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                           "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
        await admin_apply(cluster, [ns("apps"), node])
        async with Client.from_kubeconfig(kc(cluster, "admin")) as admin:
            n = await admin.get("nodes", "n1")
            n["status"] = node["status"]
            await admin.replace_status("nodes", n)
            await admin.create("deployments", {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}},
                namespace="apps")

            async def bound() -> int:
                pods = (await admin.list("pods", namespace="apps"))["items"]
                return sum(1 for p in pods if p["spec"].get("nodeName") == "n1")
            for _ in range(150):
                if await bound() == 2:
                    break
                await asyncio.sleep(0.2)
            assert await bound() == 2, procs.log("controller-manager") + procs.log("scheduler")
        assert "403" not in procs.log("scheduler", 50_000), procs.log("scheduler")
        assert "Forbidden" not in procs.log("controller-manager", 50_000), procs.log("controller-manager")
    finally:
        procs.stop("scheduler")
        procs.stop("controller-manager")


def _fuzz_requests(rng: random.Random, good_jwt: str) -> list[tuple[str, str, list, bytes | None]]:
    """(method, path, headers, body) cases: malformed / huge Authorization headers, random JWT-looking
    strings, truncated base64, huge header blocks, odd paths and bodies on the auth resources."""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    def seg(n):
        return "".join(rng.choice(b64) for _ in range(n))
    paths = ["/api/v1/namespaces/a/pods", "/api/v1/pods", "/api", "/apis", "/healthz", "/version", "/openapi/v3",
             "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "/apis/authentication.k8s.io/v1/tokenreviews",
             "/api/v1/namespaces/a/serviceaccounts/bot/token", "/api/v1/namespaces/a/secrets/s1",
             "/api/v1/namespaces/%00/pods", "/api/v1/namespaces/a/pods/x/y/z/w/v", "/apis/../../etc/passwd",
             "/" + "a/" * 500, "/api/v1/namespaces/" + "x" * 5000 + "/pods", "/apis/rbac.authorization.k8s.io/v1/"
             "clusterroles", "/api/v1/nodes/n1/proxy", "/%ff%fe", "/api/v1/watch/pods", "//api//v1"]
    out = []
    for i in range(2000):
        kind = i % 10
        if kind == 0:
            auth = "Bearer " + ".".join(seg(rng.randint(0, 80)) for _ in range(3))
        elif kind == 1:
            auth = "Bearer " + good_jwt[:rng.randint(0, len(good_jwt))]
        elif kind == 2:
            auth = "Bearer " + seg(rng.randint(10_000, 60_000))
        elif kind == 3:
            auth = rng.choice(["Bearer", "Bearer  ", "bearer\t x", "Basic ", "Basic !!!", "Negotiate abc", "",
                               "Bearer " + "." * rng.randint(1, 50), "Bearer a b c d"])
        elif kind == 4:
            auth = "Bearer " + "".join(chr(rng.randint(0x21, 0x7e)) for _ in range(rng.randint(1, 400)))
        elif kind == 5:
            auth = "Bearer " + good_jwt.replace(".", rng.choice([".", "..", ""]), 1) + rng.choice(["", "=", "==="])
        else:
            auth = None
        headers = [("authorization", auth)] if auth is not None else []
        if kind == 6:
            headers += [(f"x-fuzz-{j}", seg(rng.randint(100, 1000))) for j in range(rng.randint(10, 60))]
        if kind == 7:
            headers += [("authorization", "Bearer " + seg(40)), ("authorization", "Bearer x")]
        if kind == 8:  # impersonation headers, half of them from the system:masters token
            headers = [("authorization", f"Bearer {TOKENS['admin']}")] if i % 20 < 10 else []
            headers += [(rng.choice(["impersonate-user", "impersonate-group", "impersonate-uid",
                                     "impersonate-extra-" + seg(rng.randint(1, 20)).lower()]),
                         rng.choice(["", "jane", "system:serviceaccount:a:bot", "system:serviceaccount:::",
                                     "system:anonymous", seg(rng.randint(1, 300))]))
                        for _ in range(rng.randint(1, 4))]
        method = rng.choice(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        body = None
        if method in ("POST", "PUT", "PATCH"):
            body = rng.choice([b"", b"{", b"null", b"[]", json.dumps({"spec": {"token": seg(30)}}).encode(),
                               json.dumps({"spec": {"resourceAttributes": {"verb": 1}}}).encode(),
                               json.dumps({"spec": {"resourceAttributes": {}, "nonResourceAttributes": {}}}).encode(),
                               json.dumps({"spec": {"expirationSeconds": "x", "boundObjectRef": []}}).encode(),
                               bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200)))])
        path = rng.choice(paths)
        if rng.random() < 0.2:
            path += "?" + rng.choice(["watch=true&timeoutSeconds=0", "limit=-1", "labelSelector=%%%", "x=" + seg(300)])
        out.append((method, path, headers, body))
    return out


async def test_fuzz_authn_authz_paths_never_5xx(cluster):
    """2,000 hostile requests against both apiservers: no 5xx answer, both processes alive and ready after."""
    async with Client.from_kubeconfig(kc(cluster, "admin")) as admin:
        await admin_apply(cluster, [ns("a"), {"apiVersion": "v1", "kind": "ServiceAccount",
                                              "metadata": {"name": "bot", "namespace": "a"}}])
        jwt = (await admin.request("POST", "/api/v1/namespaces/a/serviceaccounts/bot/token",
                                   body={"spec": {}}))["status"]["token"]
    cases = _fuzz_requests(random.Random(20261122), jwt)
    codes: dict[int, int] = {}
    transport_errors = 0
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(verify=cluster["ca"], trust_env=False, timeout=15, limits=limits) as h:
        sem = asyncio.Semaphore(16)

        async def one(n, case):
            nonlocal transport_errors
            method, path, headers, body = case
            base = cluster["tls"] if n % 4 else cluster["plain"]
            async with sem:
                try:
                    r = await h.request(method, base + path, headers=headers, content=body)
                except httpx.TransportError:
                    transport_errors += 1  # e.g. a header block the HTTP parser refuses: connection closed
                    return
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                assert r.status_code < 500, (method, path, headers[:2], body, r.status_code, r.text[:300])
        await asyncio.gather(*(one(n, c) for n, c in enumerate(cases)))
    procs = cluster["procs"]
    for name in ("tls", "noanon"):
        assert procs.get(name).poll() is None, procs.log(name)
    assert httpx.get(f"{cluster['tls']}/readyz", verify=cluster["ca"], trust_env=False).status_code == 200
    assert sum(codes.values()) + transport_errors == 2000
    assert transport_errors < 200, (transport_errors, codes)
    assert codes.get(401, 0) > 100 and codes.get(403, 0) > 100, codes  # the authn and authz paths were exercised
    print(f"fuzz: {dict(sorted(codes.items()))}, {transport_errors} connections refused by the HTTP parser")
    assert "Traceback" not in procs.log("tls", 500_000) and "Traceback" not in procs.log("noanon", 500_000)


async def test_official_python_client_with_a_service_account_token(cluster):
    """The official kubernetes Python client with a TokenRequest token and the cluster CA: the SA bound to
    view lists pods in its namespace and gets 403 (ApiException) creating one."""
    kubernetes = pytest.importorskip("kubernetes")
    await admin_apply(cluster, [ns("py"), {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "app", "namespace": "py"}}, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "app-view", "namespace": "py"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "py"}]}])
    async with Client.from_kubeconfig(kc(cluster, "admin")) as admin:
        token = (await admin.request("POST", "/api/v1/namespaces/py/serviceaccounts/app/token",
                                     body={"spec": {}}))["status"]["token"]
    conf = kubernetes.client.Configuration(host=cluster["tls"], api_key={"authorization": f"Bearer {token}"})
    conf.ssl_ca_cert = str(cluster["pki"] / "ca.crt")

    def use() -> tuple[int, int]:
        with kubernetes.client.ApiClient(conf) as api:
            core = kubernetes.client.CoreV1Api(api)
            listed = None
            for _ in range(50):
                try:
                    listed = core.list_namespaced_pod("py")
                    break
                except kubernetes.client.ApiException as e:
                    if e.status != 403:
                        raise
                    time.sleep(0.1)
            try:
                core.create_namespaced_pod("py", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
                code = 201
            except kubernetes.client.ApiException as e:
                code = e.status
            return len(listed.items) if listed is not None else -1, code
    n, code = await asyncio.to_thread(use)
    assert n == 0 and code == 403


async def test_impersonation(cluster):
    """kubectl --as: the admin may act as jane (and then gets jane's 403); jane may not act as anyone."""
    await test_view_in_one_namespace(cluster)
    async with httpx.AsyncClient(base_url=cluster["plain"], trust_env=False) as h:
        admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
        r = await h.get("/api/v1/namespaces/a/pods", headers={**admin, "Impersonate-User": "jane"})
        assert r.status_code == 200, r.text
        r = await h.get("/api/v1/namespaces/b/pods", headers={**admin, "Impersonate-User": "jane"})
        assert r.status_code == 403 and 'User "jane" cannot list' in r.json()["message"]
        r = await h.get("/api/v1/namespaces/b/pods", headers={"Authorization": f"Bearer {TOKENS['jane']}",
                                                              "Impersonate-User": "token-admin",
                                                              "Impersonate-Group": "system:masters"})
        assert r.status_code == 403 and r.json()["message"] == (
            'users "token-admin" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at '
            'the cluster scope')
        r = await h.get("/api/v1/namespaces/b/pods", headers={**admin, "Impersonate-Group": "x"})
        assert r.status_code == 400
    if os.path.exists(KUBECTL):
        r = subprocess.run([KUBECTL, "--kubeconfig", kc(cluster, "admin"), "auth", "can-i", "list", "pods", "-n", "b",
                            "--as", "jane"], capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr


async def test_service_account_issuer_discovery(cluster):
    """A ServiceAccount reads the OIDC discovery document and the JWKS holding its token's kid; anonymous
    requests get 403."""
    await admin_apply(cluster, [ns("a"), {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": "bot", "namespace": "a"}}])
    async with Client.from_kubeconfig(kc(cluster, "admin")) as admin:
        token = (await admin.request("POST", "/api/v1/namespaces/a/serviceaccounts/bot/token",
                                     body={"spec": {}}))["status"]["token"]
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    async with httpx.AsyncClient(base_url=cluster["tls"], verify=cluster["ca"], trust_env=False) as h:
        auth = {"Authorization": f"Bearer {token}"}
        conf = await h.get("/.well-known/openid-configuration", headers=auth)
        assert conf.status_code == 200 and conf.json()["issuer"] == ISSUER
        assert conf.json()["jwks_uri"] == ISSUER + "/openid/v1/jwks"
        jwks = await h.get("/openid/v1/jwks", headers=auth)
        assert jwks.status_code == 200 and kid in [k["kid"] for k in jwks.json()["keys"]]
        assert (await h.get("/openid/v1/jwks")).status_code == 403


class _EmptyRuntime(pb_grpc.RuntimeServiceServicer, pb_grpc.ImageServiceServicer):
    """A CRI runtime with nothing in it (no Docker in integration tests): enough for a kubelet to start,
    register its Node and keep its Lease."""

    def Version(self, request, context):
        return pb.VersionResponse(version="0.1.0", runtime_name="empty", runtime_version="0",
                                  runtime_api_version="v1")

    def Status(self, request, context):
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=[
            pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(type="NetworkReady", status=True)]))

    def ListPodSandbox(self, request, context):
        return pb.ListPodSandboxResponse()

    def ListContainers(self, request, context):
        return pb.ListContainersResponse()

    def ListContainerStats(self, request, context):
        return pb.ListContainerStatsResponse()

    def UpdateRuntimeConfig(self, request, context):
        return pb.UpdateRuntimeConfigResponse()


def test_real_kubelet_registers_under_node_authorizer(cluster):
    """A real kubelet (over an empty CRI runtime) as system:node:n3 registers its Node and renews its Lease
    under Node,RBAC + NodeRestriction without a single denial; n3 may not create another node's Node."""
    procs = cluster["procs"]
    port, healthz = support.free_port(), support.free_port()
    sock = cluster["tmp"] / "empty-cri.sock"
    runtime = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RuntimeServiceServicer_to_server(_EmptyRuntime(), runtime)
    pb_grpc.add_ImageServiceServicer_to_server(_EmptyRuntime(), runtime)
    runtime.add_insecure_port(f"unix://{sock}")
    runtime.start()
    procs.spawn("kubelet", [sys.executable, "-m", "kubelet", "--kubeconfig", kc(cluster, "n3"),
                            "--hostname-override", "n3", "--node-ip", "127.0.0.1",
                            "--container-runtime-endpoint", f"unix://{sock}",
                            "--root-dir", str(cluster["tmp"] / "kubelet-n3"), "--port", str(port),
                            "--healthz-port", str(healthz), "--bridge-name", "klauth0",
                            "--node-status-update-frequency", "1"])
    try:
        admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
        plain = cluster["plain"]

        def registered() -> bool:
            node = httpx.get(f"{plain}/api/v1/nodes/n3", headers=admin, trust_env=False)
            lease = httpx.get(f"{plain}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n3",
                              headers=admin, trust_env=False)
            return node.status_code == 200 and lease.status_code == 200
        try:
            support.wait_for("kubelet n3 registered its Node and Lease", registered, 30, 0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{procs.log('kubelet')}") from None
        first = httpx.get(f"{plain}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n3",
                          headers=admin, trust_env=False).json()["spec"]["renewTime"]
        support.wait_for("lease renewed", lambda: httpx.get(
            f"{plain}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n3", headers=admin,
            trust_env=False).json()["spec"]["renewTime"] != first, 20, 0.3)
        log = procs.log("kubelet", 200_000)
        assert "Forbidden" not in log and " 403" not in log, log
        n3 = {"Authorization": f"Bearer {TOKENS['n3']}"}
        other = httpx.get(f"{plain}/api/v1/nodes/n3", headers=n3, trust_env=False).json()
        other["metadata"] = {"name": "n2", "labels": {"x": "y"}}
        r = httpx.post(f"{plain}/api/v1/nodes", json=other, headers=n3, trust_env=False)
        assert r.status_code == 403 and 'node "n3" is not allowed to modify node "n2"' in r.json()["message"]
    finally:
        procs.stop("kubelet")
        runtime.stop(grace=None)


async def test_bootstrap_token(cluster):
    """--enable-bootstrap-token-auth: <id>.<secret> of a kube-system bootstrap-token Secret authenticates as
    system:bootstrap:<id> in system:bootstrappers; a wrong secret is 401."""
    await admin_apply(cluster, [{"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
                                 "metadata": {"name": "bootstrap-token-abc123", "namespace": "kube-system"},
                                 "stringData": {"token-id": "abc123", "token-secret": "0123456789abcdef",
                                                "usage-bootstrap-authentication": "true"}}])
    async with httpx.AsyncClient(base_url=cluster["plain"], trust_env=False) as h:
        ssr = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        r = await h.post(ssr, json={}, headers={"Authorization": "Bearer abc123.0123456789abcdef"})
        assert r.status_code == 201, r.text
        info = r.json()["status"]["userInfo"]
        assert info["username"] == "system:bootstrap:abc123"
        assert info["groups"] == ["system:bootstrappers", "system:authenticated"]
        r = await h.post(ssr, json={}, headers={"Authorization": "Bearer abc123.ffffffffffffffff"})
        assert r.status_code == 401
