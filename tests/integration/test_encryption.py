"""Encryption at rest against real etcd 3.4 and apiserver processes: raw values read with the real etcdctl,
decrypted reads with the real kubectl, identity fallback for values written before encryption, key rotation and
``kubeling secrets reencrypt``."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

import support
from kubeling.client import kubeconfig

KUBECTL = "/usr/bin/kubectl"
KUBELING = str(Path(sys.executable).with_name("kubeling"))  # the console script of the venv running the tests
PLAINTEXT = "hunter2-very-secret"


def write_config(path, *keys: tuple[str, bytes]) -> str:
    providers = [{"aesgcm": {"keys": [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]}},
                 {"identity": {}}]
    path.write_text(json.dumps({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                                "resources": [{"resources": ["secrets"], "providers": providers}]}))
    return str(path)


def raw(cp, key: str) -> bytes:
    out = support.etcdctl(cp.etcd_endpoint.removeprefix("http://"), "get", key, "-w", "json").stdout
    return base64.b64decode(json.loads(out)["kvs"][0]["value"])


def restart_apiserver(cp, name: str, *args: str) -> httpx.Client:
    """Stop every apiserver of ``cp`` and start ``name`` with ``args``; point cp.kubeconfig at it."""
    for old in ("apiserver", "apiserver-enc", "apiserver-rotated"):
        cp.procs.stop(old)
    server = support.start_apiserver(cp.procs, cp.extra["etcd_servers"], name=name, apiserver_args=args)
    kubeconfig.write(cp.kubeconfig, server=server, user="test")
    return httpx.Client(base_url=server, timeout=10.0)


def kubectl(cp, *args: str) -> str:
    out = subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def secret(name: str) -> dict:
    return {"metadata": {"name": name}, "stringData": {"password": PLAINTEXT}}


def test_secrets_encrypted_at_rest_rotation_and_reencrypt(tmp_path):
    k1, k2 = os.urandom(32), os.urandom(32)
    with support.control_plane(tmp_path, "etcd") as cp:
        with httpx.Client(base_url=cp.server, timeout=10.0) as c:
            assert c.post("/api/v1/namespaces/default/secrets", json=secret("legacy")).status_code == 201
        assert raw(cp, "/registry/secrets/default/legacy").startswith(b"{")  # no encryption configured yet

        c = restart_apiserver(cp, "apiserver-enc", "--encryption-provider-config",
                              write_config(tmp_path / "enc1.json", ("key1", k1)))
        with c:
            assert c.post("/api/v1/namespaces/default/secrets", json=secret("s1")).status_code == 201
            value = raw(cp, "/registry/secrets/default/s1")
            assert value.startswith(b"k8s:enc:aesgcm:v1:key1:")
            assert PLAINTEXT.encode() not in value and base64.b64encode(PLAINTEXT.encode()) not in value
            # reads (GET and the watch cache's LIST) are decrypted; the plaintext legacy value still reads
            assert c.get("/api/v1/namespaces/default/secrets/s1").json()["data"]["password"] == \
                base64.b64encode(PLAINTEXT.encode()).decode()
            names = {i["metadata"]["name"]: i for i in c.get("/api/v1/namespaces/default/secrets").json()["items"]}
            assert {"legacy", "s1"} <= names.keys()
            assert names["legacy"]["data"]["password"] == names["s1"]["data"]["password"]
        shown = kubectl(cp, "get", "secret", "s1", "-o", "yaml")
        assert f"password: {base64.b64encode(PLAINTEXT.encode()).decode()}" in shown

        c = restart_apiserver(cp, "apiserver-rotated", "--encryption-provider-config",
                              write_config(tmp_path / "enc2.json", ("key2", k2), ("key1", k1)))
        with c:
            assert c.post("/api/v1/namespaces/kube-system/secrets", json=secret("s2")).status_code == 201
            assert raw(cp, "/registry/secrets/kube-system/s2").startswith(b"k8s:enc:aesgcm:v1:key2:")
            assert raw(cp, "/registry/secrets/default/s1").startswith(b"k8s:enc:aesgcm:v1:key1:")
            out = subprocess.run([KUBELING, "--kubeconfig", str(cp.kubeconfig),
                                  "secrets", "reencrypt"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert "secret/s1 replaced (default)" in out.stdout and "secret/legacy replaced (default)" in out.stdout
            for key in ("/registry/secrets/default/s1", "/registry/secrets/default/legacy",
                        "/registry/secrets/kube-system/s2"):
                assert raw(cp, key).startswith(b"k8s:enc:aesgcm:v1:key2:"), key
            listed = support.etcdctl(cp.etcd_endpoint.removeprefix("http://"), "get", "/registry/secrets/",
                                     "--prefix", "--keys-only").stdout.split()
            assert listed and all(raw(cp, k).startswith(b"k8s:enc:aesgcm:v1:key2:") for k in listed)
            # a second run finds nothing stale: no write, resourceVersion unchanged
            rv = c.get("/api/v1/namespaces/default/secrets/s1").json()["metadata"]["resourceVersion"]
            subprocess.run([KUBELING, "--kubeconfig", str(cp.kubeconfig),
                            "secrets", "reencrypt", "-n", "default"], check=True, capture_output=True, timeout=60)
            assert c.get("/api/v1/namespaces/default/secrets/s1").json()["metadata"]["resourceVersion"] == rv


def test_bad_encryption_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
                   "  - resources: [secrets]\n    providers:\n      - aesgcm:\n          keys:\n"
                   "            - name: k\n              secret: c2hvcnQ=\n")
    out = subprocess.run([sys.executable, "-m", "apiserver", "--etcd-servers", "http://127.0.0.1:1",
                          "--encryption-provider-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "python -m apiserver: error: --encryption-provider-config: resources[0].providers[0].aesgcm.keys[0].secret: "
        "Invalid value: REDACTED: secret is not of the expected length, got 5, expected one of [16, 24, 32]"]
