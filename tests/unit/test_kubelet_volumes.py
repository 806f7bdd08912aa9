"""Pod volumes and the container environment (kubelet/volumemanager.py, kubelet/envvars.py), on a temp dir."""
import os

import pytest

from kubelet.envvars import EnvError, container_env, resource_field
from kubelet.volumemanager import VolumeError, VolumeManager, atomic_write, check_host_path, container_mounts


def _pod(**spec):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                                     "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}],
                     **spec}}


CM = {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hello", "mode": "fast"}}
SECRET = {"kind": "Secret", "metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}}


def test_env_from_and_value_from_in_upstream_order():
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
         "env": [{"name": "CFG_mode", "value": "slow"},
                 {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}}}]}
    env = container_env(_pod(), c, pod_ip="10.0.0.2", node_ip="127.0.0.1",
                        sources={("configmaps", "cfg"): CM, ("secrets", "creds"): SECRET,
                                 ("configmaps", "nope"): None})
    assert env == {"CFG_greeting": "hello", "CFG_mode": "slow", "PASS": "s3cr3t", "APP": "web", "MEM": "64"}


def test_env_errors_have_upstreams_wording():
    c = {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing"}}}]}
    with pytest.raises(EnvError, match="couldn't find key missing in ConfigMap ns/cfg"):
        container_env(_pod(), c, pod_ip="", node_ip="", sources={("configmaps", "cfg"): CM})


def test_resource_field_cpu_rounds_up_and_limits_default_to_allocatable():
    p = _pod()
    assert resource_field(p, "c", {"resource": "requests.cpu"}) == "1"
    assert resource_field(p, "c", {"resource": "requests.cpu", "divisor": "1m"}) == "250"
    assert resource_field(p, "c", {"resource": "limits.cpu"}, allocatable={"cpu": "2"}) == "2"


def test_atomic_writer_swaps_data_and_prunes(tmp_path):
    target = str(tmp_path / "vol")
    assert atomic_write(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert open(os.path.join(target, "a")).read() == "1" and os.path.islink(os.path.join(target, "a"))
    assert oct(os.stat(os.path.join(target, "dir", "b")).st_mode & 0o777) == "0o600"
    first = os.readlink(os.path.join(target, "..data"))
    assert not atomic_write(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})  # unchanged
    assert atomic_write(target, {"a": (b"changed", 0o644)})
    assert open(os.path.join(target, "a")).read() == "changed"
    assert not os.path.exists(os.path.join(target, "dir")) and not os.path.exists(os.path.join(target, first))
    with pytest.raises(VolumeError):
        atomic_write(target, {"../escape": (b"x", 0o644)})


def test_host_path_types(tmp_path):
    d = tmp_path / "made"
    check_host_path("v", str(d), "DirectoryOrCreate")
    assert d.is_dir()
    f = tmp_path / "f.txt"
    check_host_path("v", str(f), "FileOrCreate")
    assert f.is_file()
    with pytest.raises(VolumeError, match="is not a directory"):
        check_host_path("v", str(f), "Directory")
    with pytest.raises(VolumeError, match="is not a file"):
        check_host_path("v", str(tmp_path / "absent"), "File")


async def test_setup_pod_volumes_and_mounts(tmp_path):
    vm = VolumeManager(None, str(tmp_path))

    async def fetch(ns, refs):
        return {r: {("configmaps", "cfg"): CM, ("secrets", "creds"): SECRET}.get(r) for r in refs}
    vm.fetch = fetch
    pod = _pod(volumes=[
        {"name": "scratch", "emptyDir": {}},
        {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "greeting", "path": "hi.txt"}]}},
        {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "all", "projected": {"sources": [{"configMap": {"name": "cfg"}}, {"secret": {"name": "creds"}}]}}])
    vols = await vm.setup_pod(pod)
    base = tmp_path / "pods" / "u1" / "volumes"
    assert vols["scratch"].host_path == str(base / "kubernetes.io~empty-dir" / "scratch")
    assert open(os.path.join(vols["config"].host_path, "hi.txt")).read() == "hello"
    pw = os.path.join(vols["secret"].host_path, "password")
    assert open(pw).read() == "s3cr3t" and oct(os.stat(pw).st_mode & 0o777) == "0o400"
    assert open(os.path.join(vols["info"].host_path, "labels")).read() == 'app="web"\ntier="fe"'
    assert sorted(os.listdir(vols["all"].host_path))[-3:] == ["greeting", "mode", "password"]
    mounts = container_mounts({"name": "c", "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"}, {"name": "config", "mountPath": "/etc/cfg"},
        {"name": "scratch", "mountPath": "/sub", "subPath": "a/b"}]}, vols)
    assert [(m.container_path, m.readonly) for m in mounts] == [("/scratch", False), ("/etc/cfg", True),
                                                                ("/sub", False)]
    assert os.path.isdir(mounts[2].host_path)
    missing = _pod(volumes=[{"name": "gone", "configMap": {"name": "absent"}}])
    with pytest.raises(VolumeError, match='configmap "absent" not found'):
        await vm.setup_pod(missing)
    await vm.teardown_pod("u1")
    assert not base.exists()


async def test_projected_service_account_token_from_token_request(tmp_path):
    """The kube-api-access volume: a TokenRequest bound to the pod, reused until 80% of its life."""
    calls = []

    class Client:
        async def request(self, method, path, *, body=None, **kw):
            calls.append((method, path, body))
            return {"status": {"token": f"tok{len(calls)}", "expirationTimestamp": "2026-01-01T00:00:00Z"}}

    vm = VolumeManager(Client(), str(tmp_path))
    pod = _pod(volumes=[{"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token", "audience": "api"}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}])
    pod["spec"]["serviceAccountName"] = "builder"
    vols = await vm.setup_pod(pod)
    path = vols["kube-api-access"].host_path
    assert open(os.path.join(path, "token")).read() == "tok1"
    method, url, body = calls[0]
    assert (method, url) == ("POST", "/api/v1/namespaces/ns/serviceaccounts/builder/token")
    assert body["spec"]["boundObjectRef"] == {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"}
    assert body["spec"]["audiences"] == ["api"] and body["spec"]["expirationSeconds"] == 3607
    await vm.setup_pod(pod)
    assert len(calls) == 1, "a fresh token is reused"
    vm._tokens = {k: (0.0, v[1]) for k, v in vm._tokens.items()}  # past 80% of its lifetime
    await vm.setup_pod(pod)
    assert len(calls) == 2 and open(os.path.join(path, "token")).read() == "tok2"
