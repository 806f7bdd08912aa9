"""Admission against real processes (store, apiserver, controller-manager running the resourcequota
controller), driven over HTTP and with the real kubectl: ResourceQuota and its controller, LimitRanger,
NamespaceLifecycle, and NodeRestriction / ServiceAccount with --token-auth-file users."""
from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import uuid

import httpx
import pytest

import support

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quota")
    with support.control_plane(tmp, "etcd") as cp:
        port = support.free_port()
        cp.procs.spawn("controller-manager", [
            sys.executable, "-m", "controllers", "--kubeconfig", str(cp.kubeconfig), "--bind-address", "127.0.0.1",
            "--secure-port", str(port), "--controllers", "resourcequota", "--leader-elect=false",
            "--resource-quota-sync-period", "3s"])
        cp.procs.wait_ready("controller-manager", url=f"http://127.0.0.1:{port}/healthz", timeout=30)
        with httpx.Client(base_url=cp.server, timeout=10.0) as c:
            yield cp, c


def namespace(c: httpx.Client) -> str:
    name = "q-" + uuid.uuid4().hex[:8]
    r = c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


def pod(name: str, **resources) -> dict:
    container = {"name": "app", "image": "busybox:1.35"}
    if resources:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container]}}


def quota_status(c: httpx.Client, ns: str, name: str) -> dict:
    r = c.get(f"/api/v1/namespaces/{ns}/resourcequotas/{name}")
    assert r.status_code == 200, r.text
    return r.json().get("status") or {}


def create_quota(c: httpx.Client, ns: str, name: str, hard: dict) -> None:
    r = c.post(f"/api/v1/namespaces/{ns}/resourcequotas", json={"metadata": {"name": name}, "spec": {"hard": hard}})
    assert r.status_code == 201, r.text
    # admission enforces a quota once the controller has set status.hard and counted status.used
    support.wait_for("quota counted", lambda: quota_status(c, ns, name).get("used", {}).keys() == hard.keys(),
                     timeout=20)


def test_third_pod_is_refused_and_deletes_give_the_slot_back(cluster):
    cp, c = cluster
    ns = namespace(c)
    create_quota(c, ns, "q", {"pods": "2"})
    assert c.post(f"/api/v1/namespaces/{ns}/pods", params={"dryRun": "All"}, json=pod("dry")).status_code == 201
    assert quota_status(c, ns, "q")["used"] == {"pods": "0"}  # a dry run charges nothing
    for name in ("p1", "p2"):
        r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod(name))
        assert r.status_code == 201, r.text
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p3"))
    assert r.status_code == 403
    body = r.json()
    assert (body["kind"], body["reason"]) == ("Status", "Forbidden")
    assert body["message"] == 'pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
    out = subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), "-n", ns, "run", "p3",
                          "--image", "busybox:1.35"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert 'Error from server (Forbidden): pods "p3" is forbidden: exceeded quota: q, requested: pods=1, ' \
           'used: pods=2, limited: pods=2' in out.stderr
    described = subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), "-n", ns, "describe", "quota", "q"],
                               capture_output=True, text=True, timeout=30)
    assert described.returncode == 0, described.stderr
    assert [line.split() for line in described.stdout.splitlines() if line.startswith("pods")] == [["pods", "2", "2"]]
    assert c.delete(f"/api/v1/namespaces/{ns}/pods/p1").status_code == 200
    support.wait_for("used pods back to 1", lambda: quota_status(c, ns, "q")["used"] == {"pods": "1"}, timeout=20)
    assert c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p3")).status_code == 201
    assert quota_status(c, ns, "q")["used"] == {"pods": "2"}


def test_concurrent_creates_take_exactly_the_free_slots(cluster):
    _, c = cluster
    ns = namespace(c)
    create_quota(c, ns, "q", {"pods": "3", "requests.cpu": "1"})

    def create(i: int) -> int:
        with httpx.Client(base_url=c.base_url, timeout=10.0) as own:
            return own.post(f"/api/v1/namespaces/{ns}/pods",
                            json=pod(f"c{i}", requests={"cpu": "100m"})).status_code
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(create, range(8)))
    assert sorted(codes) == [201] * 3 + [403] * 5
    assert quota_status(c, ns, "q")["used"] == {"pods": "3", "requests.cpu": "300m"}
    # the controller's recount agrees with what admission charged
    r = c.get(f"/api/v1/namespaces/{ns}/pods")
    assert len(r.json()["items"]) == 3


def test_compute_quota_needs_requests(cluster):
    _, c = cluster
    ns = namespace(c)
    create_quota(c, ns, "compute", {"requests.memory": "1Gi"})
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("bare"))
    assert r.status_code == 403
    assert r.json()["message"] == 'pods "bare" is forbidden: failed quota: compute: must specify requests.memory for: app'


def test_limit_range_fills_default_requests_and_enforces_max(cluster):
    _, c = cluster
    ns = namespace(c)
    r = c.post(f"/api/v1/namespaces/{ns}/limitranges", json={"metadata": {"name": "lr"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
         "defaultRequest": {"cpu": "100m", "memory": "64Mi"}, "max": {"cpu": "1"}}]}})
    assert r.status_code == 201, r.text
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("defaults"))
    assert r.status_code == 201, r.text
    resources = r.json()["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert r.json()["metadata"]["annotations"]["kubernetes.io/limit-ranger"].startswith("LimitRanger plugin set: ")
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("big", limits={"cpu": "2"}))
    assert r.status_code == 403
    assert r.json()["message"] == 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'


def test_namespace_lifecycle_refuses_creates_in_a_terminating_namespace(cluster):
    _, c = cluster
    ns = namespace(c)
    # enough content that the namespace stays Terminating for a while after the DELETE returns
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: c.post(f"/api/v1/namespaces/{ns}/configmaps",
                                               json={"metadata": {"name": f"cm{i}"}}).status_code, range(300)))
    assert set(codes) == {201}
    assert c.delete(f"/api/v1/namespaces/{ns}").status_code == 200
    seen = []
    for i in range(50):
        r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"late{i}"))
        seen.append(r.status_code)
        if r.status_code in (403, 404):
            break
    assert seen[-1] == 403, seen
    assert r.json()["message"] == (f'pods "late{len(seen) - 1}" is forbidden: unable to create new content in '
                                   f'namespace {ns} because it is being terminated')
    support.wait_for("namespace gone", lambda: c.get(f"/api/v1/namespaces/{ns}").status_code == 404, timeout=30)
    r = c.post(f"/api/v1/namespaces/{ns}/pods", json=pod("after"))
    assert (r.status_code, r.json()["message"]) == (404, f'namespaces "{ns}" not found')


def test_node_restriction_and_service_account_with_token_users(tmp_path):
    """NodeRestriction sees the groups of a --token-auth-file user; ServiceAccount (named in
    --enable-admission-plugins) refuses a pod whose account is missing and mounts the token volume
    when the apiserver can issue tokens."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,1,"system:masters"\nn1-token,system:node:n1,2,"system:nodes"\n')
    key = tmp_path / "sa.key"
    key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    args = ["--token-auth-file", str(tokens), "--enable-admission-plugins", "NodeRestriction,ServiceAccount",
            "--service-account-signing-key-file", str(key), "--service-account-key-file", str(key),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local"]
    with support.control_plane(tmp_path, "etcd", apiserver_args=args) as cp, \
            httpx.Client(base_url=cp.server, timeout=10.0, headers={"Authorization": "Bearer admin-token"}) as admin, \
            httpx.Client(base_url=cp.server, timeout=10.0, headers={"Authorization": "Bearer n1-token"}) as node1:
        ns = namespace(admin)
        r = admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod("early"))
        assert (r.status_code, r.json()["message"]) == (
            403, f'pods "early" is forbidden: error looking up service account {ns}/default: '
                 f'serviceaccount "default" not found')
        assert admin.post(f"/api/v1/namespaces/{ns}/serviceaccounts",
                          json={"metadata": {"name": "default"}}).status_code == 201
        for name, node in (("mine", "n1"), ("theirs", "n2")):
            body = pod(name)
            body["spec"]["nodeName"] = node
            r = admin.post(f"/api/v1/namespaces/{ns}/pods", json=body)
            assert r.status_code == 201, r.text
            spec = r.json()["spec"]
            assert spec["serviceAccountName"] == "default"
            volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
            assert {"name": volume["name"], "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in spec["containers"][0]["volumeMounts"]
        for name in ("n1", "n2"):
            assert admin.post("/api/v1/nodes", json={"metadata": {"name": name}}).status_code == 201
        uids = {n: admin.get(f"/api/v1/namespaces/{ns}/pods/{n}").json()["metadata"]["uid"] for n in ("mine", "theirs")}

        def token_for(name: str) -> httpx.Response:
            return node1.post(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", json={
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uids[name]}}})
        assert token_for("mine").status_code == 201
        r = token_for("theirs")
        assert (r.status_code, r.json()["message"]) == (
            403, 'serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a '
                 'different node')
        status = {"status": {"phase": "Running"}}
        merge = {"Content-Type": "application/merge-patch+json"}
        assert node1.patch(f"/api/v1/namespaces/{ns}/pods/mine/status", json=status, headers=merge).status_code == 200
        r = node1.patch(f"/api/v1/namespaces/{ns}/pods/theirs/status", json=status, headers=merge)
        assert (r.status_code, r.json()["message"]) == (
            403, 'pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName '
                 'set to itself')
        r = node1.delete(f"/api/v1/namespaces/{ns}/pods/theirs")
        assert (r.status_code, r.json()["message"]) == (
            403, 'pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself')
        label = {"metadata": {"labels": {"x": "y"}}}
        assert node1.patch("/api/v1/nodes/n1", json=label, headers=merge).status_code == 200
        r = node1.patch("/api/v1/nodes/n2", json=label, headers=merge)
        assert (r.status_code, r.json()["message"]) == (
            403, 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"')
        assert admin.patch("/api/v1/nodes/n2", json=label, headers=merge).status_code == 200
