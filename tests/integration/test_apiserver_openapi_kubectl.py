"""/openapi/v3 and fieldValidation against a real apiserver process: the real kubectl 1.32 creates, applies and
explains WITHOUT --validate=false, and the server honours fieldValidation=Strict|Warn|Ignore."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from support import REPO, control_plane

KUBECTL = shutil.which("kubectl")
WEB = (Path(REPO) / "deploy" / "examples" / "web.yaml").read_text()


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("openapi")) as plane:
        yield plane


@pytest.fixture
def kubectl(cp, tmp_path):
    if not KUBECTL:
        pytest.skip("kubectl is not installed")

    def run(*args, input=None):
        return subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                               *args], input=input, capture_output=True, text=True, timeout=60,
                              env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    return run


def test_root_and_documents_with_hash_caching(cp):
    with httpx.Client(base_url=cp.server, timeout=10) as c:
        root = c.get("/openapi/v3").json()
        assert {"api/v1", "apis/apps/v1"} <= set(root["paths"])
        url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        r = c.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == "public, immutable"
        etag = r.headers["etag"]
        assert url.endswith("hash=" + etag.strip('"'))
        assert "io.k8s.api.apps.v1.Deployment" in r.json()["components"]["schemas"]
        assert c.get("/openapi/v3/apis/apps/v1", headers={"If-None-Match": etag}).status_code == 304
        moved = c.get("/openapi/v3/apis/apps/v1?hash=STALE")
        assert moved.status_code == 301 and moved.headers["location"] == url
        missing = c.get("/openapi/v3/apis/nothing.example.com/v1")
        assert missing.status_code == 404 and missing.json()["kind"] == "Status"


def test_kubectl_apply_create_validate_without_flag(cp, kubectl, tmp_path):
    r = kubectl("apply", "-f", "-", input=WEB)
    assert r.returncode == 0, r.stderr
    assert "deployment.apps/web created" in r.stdout and "service/web created" in r.stdout
    r = kubectl("apply", "-f", "-", input=WEB)
    assert r.returncode == 0, r.stderr
    assert "deployment.apps/web unchanged" in r.stdout and "service/web unchanged" in r.stdout
    bad = WEB.replace("replicas: 3", "replicaz: 3")
    # kubectl leaves validation to the server (fieldValidation=Strict) since the document advertises it
    r = kubectl("apply", "-f", "-", input=bad)
    assert r.returncode == 1 and 'strict decoding error: unknown field "spec.replicaz"' in r.stderr, r.stderr
    r = kubectl("create", "-f", "-", input=bad.replace("name: web", "name: web2"))
    assert r.returncode == 1, r.stderr
    assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
            'unknown field "spec.replicaz"') in r.stderr
    r = kubectl("get", "deploy", "web2", "-n", "default")
    assert r.returncode == 1 and "NotFound" in r.stderr
    r = kubectl("create", "-f", "-", input=WEB.split("---")[0].replace("name: web\n", "name: web3\n", 1))
    assert r.returncode == 0 and "deployment.apps/web3 created" in r.stdout, r.stderr
    # --validate=warn: kubectl sends fieldValidation=Warn and prints the server's 299 warnings
    warn = bad.split("---")[0].replace("name: web\n", "name: web4\n", 1)
    r = kubectl("apply", "--validate=warn", "-f", "-", input=warn)
    assert r.returncode == 0 and "deployment.apps/web4 created" in r.stdout, r.stderr
    assert 'Warning: unknown field "spec.replicaz"' in r.stderr


def test_kubectl_explain(kubectl):
    r = kubectl("explain", "pods.spec.containers")
    assert r.returncode == 0, r.stderr
    assert "KIND:       Pod" in r.stdout and "FIELD: containers <[]Container>" in r.stdout
    assert "FIELDS:" in r.stdout and "image\t<string>" in r.stdout
    r = kubectl("explain", "deployments.spec.replicas")
    assert r.returncode == 0 and "<integer>" in r.stdout, r.stderr


@pytest.mark.parametrize("mode,code", [("Strict", 400), ("Warn", 201), ("Ignore", 201)])
def test_post_with_field_validation(cp, mode, code):
    name = f"cm-{mode.lower()}"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"a": "b"}, "dataz": {"x": 1}}
    with httpx.Client(base_url=cp.server, timeout=10) as c:
        r = c.post(f"/api/v1/namespaces/default/configmaps?fieldValidation={mode}", content=json.dumps(body),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == code, r.text
        warnings = r.headers.get_list("warning")
        if mode == "Strict":
            assert r.json()["reason"] == "BadRequest"
            assert r.json()["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                           'strict decoding error: unknown field "dataz"')
            assert c.get(f"/api/v1/namespaces/default/configmaps/{name}").status_code == 404
            return
        assert warnings == (['299 - "unknown field \\"dataz\\""'] if mode == "Warn" else [])
        stored = c.get(f"/api/v1/namespaces/default/configmaps/{name}").json()
        assert "dataz" not in stored and stored["data"] == {"a": "b"}
        # a merge patch with an unknown field: refused under Strict, dropped otherwise
        r = c.patch(f"/api/v1/namespaces/default/configmaps/{name}?fieldValidation=Strict",
                    content=json.dumps({"data": {"c": "d"}, "spec": {}}),
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 400 and r.json()["message"] == 'strict decoding error: unknown field "spec"'
        r = c.patch(f"/api/v1/namespaces/default/configmaps/{name}",
                    content=json.dumps({"data": {"c": "d"}, "spec": {}}),
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200 and r.headers.get_list("warning") == ['299 - "unknown field \\"spec\\""']
        assert r.json()["data"] == {"a": "b", "c": "d"} and "spec" not in r.json()
