"""The real kubectl 1.32 ``create <kind>`` commands against a real apiserver (etcd 3.4 behind it).

kubectl's typed create commands post protobuf bodies (application/vnd.kubernetes.protobuf);
apiserver/protobuf.py decodes them into the JSON form and the request takes the JSON create path.
Each object is read back over JSON and must carry what the command line gave. A field the
decoder does not know is a 415 (kubectl exits non-zero, nothing is created), never dropped.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess

import httpx
import pytest

import support

KUBECTL = "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with support.control_plane(tmp_path_factory.mktemp("kcreate"), "etcd") as plane:
        yield plane


def kubectl(cp, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), *args], capture_output=True, text=True,
                       timeout=30)
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def get(cp, path: str) -> dict:
    """The object read back over JSON."""
    r = httpx.get(cp.server + path, headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 200, (path, r.text)
    return r.json()


def test_namespace_configmap_secrets_serviceaccount(cp, tmp_path):
    assert kubectl(cp, "create", "namespace", "foo").stdout.strip() == "namespace/foo created"
    assert get(cp, "/api/v1/namespaces/foo")["metadata"]["name"] == "foo"

    (tmp_path / "app.conf").write_text("x=1\n")
    (tmp_path / "blob.bin").write_bytes(b"\xff\x00\x01")
    out = kubectl(cp, "create", "configmap", "cm1", "-n", "foo", "--from-literal=a=b",
                  f"--from-file={tmp_path / 'app.conf'}", f"--from-file={tmp_path / 'blob.bin'}").stdout
    assert out.strip() == "configmap/cm1 created"
    cm = get(cp, "/api/v1/namespaces/foo/configmaps/cm1")
    assert cm["data"] == {"a": "b", "app.conf": "x=1\n"}
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == b"\xff\x00\x01"

    kubectl(cp, "create", "secret", "generic", "s1", "-n", "foo", "--from-literal=x=y", "--type=my/type")
    s = get(cp, "/api/v1/namespaces/foo/secrets/s1")
    assert {k: base64.b64decode(v) for k, v in s["data"].items()} == {"x": b"y"} and s["type"] == "my/type"

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
                   check=True, capture_output=True, timeout=30)
    kubectl(cp, "create", "secret", "tls", "t1", "-n", "foo", f"--cert={tmp_path / 'c.pem'}",
            f"--key={tmp_path / 'k.pem'}")
    t = get(cp, "/api/v1/namespaces/foo/secrets/t1")
    assert t["type"] == "kubernetes.io/tls"
    assert base64.b64decode(t["data"]["tls.crt"]) == (tmp_path / "c.pem").read_bytes()

    kubectl(cp, "create", "secret", "docker-registry", "d1", "-n", "foo", "--docker-server=r.io",
            "--docker-username=u", "--docker-password=p")
    d = get(cp, "/api/v1/namespaces/foo/secrets/d1")
    assert d["type"] == "kubernetes.io/dockerconfigjson"
    assert json.loads(base64.b64decode(d["data"][".dockerconfigjson"]))["auths"]["r.io"]["username"] == "u"

    assert kubectl(cp, "create", "serviceaccount", "sa1", "-n", "foo").stdout.strip() == \
        "serviceaccount/sa1 created"
    assert get(cp, "/api/v1/namespaces/foo/serviceaccounts/sa1")["metadata"]["namespace"] == "foo"


def test_deployment_job_cronjob(cp):
    out = kubectl(cp, "create", "deployment", "web", "--image=busybox:1.35", "--replicas=2", "--port=80").stdout
    assert out.strip() == "deployment.apps/web created"
    dep = get(cp, "/apis/apps/v1/namespaces/default/deployments/web")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "busybox:1.35" and c["ports"][0]["containerPort"] == 80
    kubectl(cp, "create", "deployment", "zero", "--image=busybox:1.35", "--replicas=0")
    assert get(cp, "/apis/apps/v1/namespaces/default/deployments/zero")["spec"]["replicas"] == 0

    kubectl(cp, "create", "job", "j1", "--image=busybox:1.35", "--", "sh", "-c", "echo hi")
    job = get(cp, "/apis/batch/v1/namespaces/default/jobs/j1")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "busybox:1.35" and c["command"] == ["sh", "-c", "echo hi"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    kubectl(cp, "create", "cronjob", "cj1", "--image=busybox:1.35", "--schedule=*/5 * * * *", "--", "date")
    cj = get(cp, "/apis/batch/v1/namespaces/default/cronjobs/cj1")
    assert cj["spec"]["schedule"] == "*/5 * * * *"
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]

    # --from: kubectl GETs the CronJob (as the server defaulted it) and posts a Job owned by it
    assert kubectl(cp, "create", "job", "j2", "--from=cronjob/cj1").stdout.strip() == "job.batch/j2 created"
    j2 = get(cp, "/apis/batch/v1/namespaces/default/jobs/j2")
    assert j2["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = j2["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == \
        ("CronJob", "cj1", cj["metadata"]["uid"], True)
    assert j2["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]


def test_services(cp):
    kubectl(cp, "create", "service", "clusterip", "svc1", "--tcp=80:8080", "--tcp=443:https")
    s = get(cp, "/api/v1/namespaces/default/services/svc1")
    assert s["spec"]["type"] == "ClusterIP" and s["spec"]["selector"] == {"app": "svc1"}
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in s["spec"]["ports"]] == \
        [(80, 8080, "TCP"), (443, "https", "TCP")]
    kubectl(cp, "create", "service", "nodeport", "svc2", "--tcp=80:8080", "--node-port=30081")
    s = get(cp, "/api/v1/namespaces/default/services/svc2")
    assert s["spec"]["type"] == "NodePort" and s["spec"]["ports"][0]["nodePort"] == 30081
    kubectl(cp, "create", "service", "loadbalancer", "svc3", "--tcp=81:8081")
    s = get(cp, "/api/v1/namespaces/default/services/svc3")
    assert s["spec"]["type"] == "LoadBalancer" and s["spec"]["ports"][0]["targetPort"] == 8081
    kubectl(cp, "create", "service", "externalname", "svc4", "--external-name=example.com")
    s = get(cp, "/api/v1/namespaces/default/services/svc4")
    assert s["spec"]["type"] == "ExternalName" and s["spec"]["externalName"] == "example.com"
    kubectl(cp, "create", "service", "clusterip", "headless", "--clusterip=None", "--tcp=80")
    assert get(cp, "/api/v1/namespaces/default/services/headless")["spec"]["clusterIP"] == "None"


def test_rbac_and_quota(cp):
    kubectl(cp, "create", "role", "r1", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=p1")
    rules = get(cp, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/r1")["rules"]
    assert {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"]), tuple(r["resourceNames"]))
            for r in rules} == {(("",), ("pods",), ("get", "list"), ("p1",)),
                                (("apps",), ("deployments",), ("get", "list"), ("p1",))}
    kubectl(cp, "create", "clusterrole", "cr1", "--verb=get", "--non-resource-url=/healthz")
    assert get(cp, "/apis/rbac.authorization.k8s.io/v1/clusterroles/cr1")["rules"] == \
        [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]
    kubectl(cp, "create", "clusterrole", "agg", "--aggregation-rule=rbac.example.com/aggregate=true")
    agg = get(cp, "/apis/rbac.authorization.k8s.io/v1/clusterroles/agg")
    assert agg["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate": "true"}}]}

    kubectl(cp, "create", "rolebinding", "rb1", "--role=r1", "--user=bob", "--group=devs",
            "--serviceaccount=default:sa1")
    rb = get(cp, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/rb1")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"}
    assert sorted((s["kind"], s["name"], s.get("namespace", "")) for s in rb["subjects"]) == \
        [("Group", "devs", ""), ("ServiceAccount", "sa1", "default"), ("User", "bob", "")]
    kubectl(cp, "create", "clusterrolebinding", "crb1", "--clusterrole=cr1", "--user=alice")
    crb = get(cp, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/crb1")
    assert crb["roleRef"]["kind"] == "ClusterRole" and crb["subjects"][0]["name"] == "alice"

    kubectl(cp, "create", "quota", "q1", "--hard=pods=10,cpu=1,memory=1Gi", "--scopes=BestEffort")
    q = get(cp, "/api/v1/namespaces/default/resourcequotas/q1")
    assert q["spec"]["hard"] == {"pods": "10", "cpu": "1", "memory": "1Gi"} and q["spec"]["scopes"] == ["BestEffort"]


def test_unknown_field_is_415_and_nothing_is_created(cp):
    """A CronJob (created over JSON) whose container has a startupProbe, a field the protobuf tables do not
    decode: ``create job --from`` copies it into a protobuf Job; the apiserver answers 415 naming the
    field and asking for JSON, kubectl exits non-zero, and no Job exists."""
    container = {"name": "c", "image": "busybox:1.35",
                 "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}}
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "probed"},
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [container], "restartPolicy": "OnFailure"}}}}}}
    r = httpx.post(cp.server + "/apis/batch/v1/namespaces/default/cronjobs", json=cron, timeout=10)
    assert r.status_code == 201, r.text
    r = kubectl(cp, "create", "job", "lost", "--from=cronjob/probed", ok=False)
    assert r.returncode != 0
    assert "field number 22 of spec.template.spec.containers[0]" in r.stderr and "JSON" in r.stderr, r.stderr
    assert httpx.get(cp.server + "/apis/batch/v1/namespaces/default/jobs/lost", timeout=10).status_code == 404


def test_kinds_not_served_keep_their_404(cp):
    r = kubectl(cp, "create", "priorityclass", "pc1", "--value=100", ok=False)
    assert r.returncode != 0 and "could not find the requested resource" in r.stderr
