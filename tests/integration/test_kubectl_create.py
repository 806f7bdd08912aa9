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


# A pod template using every table the decoder has beyond what ``create`` fills: ``create job --from``
# re-encodes it with client-go's generated marshallers, so the Job read back equal to the CronJob's
# template proves the field numbers (a wrong number would land under another name, or be a 415).
RICH_POD_SPEC = {
    "containers": [{
        "name": "main", "image": "busybox:1.35", "command": ["sh", "-c"], "args": ["sleep 1"], "workingDir": "/tmp",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP", "hostIP": "127.0.0.1"}],
        "env": [{"name": "A", "value": "1"},
                {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "main",
                                                                   "resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}],
        "envFrom": [{"prefix": "CM_", "configMapRef": {"name": "cm", "optional": False}},
                    {"secretRef": {"name": "s"}}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                         {"name": "conf", "mountPath": "/conf", "readOnly": True, "subPath": "app"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP",
                                      "httpHeaders": [{"name": "X-A", "value": "b"}]},
                          "initialDelaySeconds": 3, "timeoutSeconds": 2, "periodSeconds": 7,
                          "successThreshold": 1, "failureThreshold": 4},
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30, "periodSeconds": 1,
                         "terminationGracePeriodSeconds": 9},
        "lifecycle": {"postStart": {"exec": {"command": ["echo", "up"]}}, "preStop": {"sleep": {"seconds": 2}}},
        "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "privileged": False,
                            "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "FallbackToLogsOnError",
        "imagePullPolicy": "Never", "stdin": True, "tty": True,
    }],
    "initContainers": [{"name": "init", "image": "busybox:1.35", "command": ["true"]}],
    "volumes": [
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "host", "hostPath": {"path": "/tmp", "type": "Directory"}},
        {"name": "conf", "configMap": {"name": "cm", "items": [{"key": "a", "path": "a.txt", "mode": 256}],
                                       "defaultMode": 420, "optional": True}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": True}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels",
                                                    "fieldRef": {"apiVersion": "v1",
                                                                 "fieldPath": "metadata.labels"}}]}},
        {"name": "proj", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"audience": "api", "expirationSeconds": 3600, "path": "token"}},
            {"configMap": {"name": "cm", "items": [{"key": "a", "path": "a"}]}},
            {"secret": {"name": "s", "optional": True}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"apiVersion": "v1",
                                                                   "fieldPath": "metadata.namespace"}}]}}]}},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname",
             "namespaces": ["default"]}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                "topologyKey": "zone"}}]},
    },
    "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30},
                    {"operator": "Exists"}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app": "web"}}}],
    "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.local"], "options": [{"name": "ndots", "value": "2"}]},
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}],
    "nodeSelector": {"disk": "ssd"}, "serviceAccountName": "default", "automountServiceAccountToken": False,
    "terminationGracePeriodSeconds": 5, "activeDeadlineSeconds": 100, "hostname": "h", "subdomain": "sub",
    "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000, "supplementalGroups": [4, 5],
                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
    "readinessGates": [{"conditionType": "example.com/ready"}], "os": {"name": "linux"},
    "enableServiceLinks": False, "shareProcessNamespace": True, "restartPolicy": "OnFailure",
}


def post_cronjob(cp, name: str, pod_spec: dict) -> dict:
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}},
                "spec": {"backoffLimit": 2, "parallelism": 1, "activeDeadlineSeconds": 600,
                         "ttlSecondsAfterFinished": 60, "template": {"spec": pod_spec}}}}}
    r = httpx.post(cp.server + "/apis/batch/v1/namespaces/default/cronjobs", json=cron, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_job_from_rich_cronjob_keeps_every_field(cp):
    cj = post_cronjob(cp, "rich", RICH_POD_SPEC)
    kubectl(cp, "create", "job", "rich-run", "--from=cronjob/rich")
    job = get(cp, "/apis/batch/v1/namespaces/default/jobs/rich-run")
    want = cj["spec"]["jobTemplate"]["spec"]
    assert job["spec"]["template"]["spec"] == want["template"]["spec"]
    for k in ("backoffLimit", "parallelism", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert job["spec"][k] == want[k], k
    assert job["metadata"]["labels"]["team"] == "a" and job["metadata"]["annotations"]["note"] == "n"


def test_unknown_field_is_415_and_nothing_is_created(cp):
    """A CronJob (created over JSON) with an NFS volume, a volume source the protobuf tables do not decode:
    ``create job --from`` copies it into a protobuf Job; the apiserver answers 415 naming the field and
    asking for JSON, kubectl exits non-zero, and no Job exists."""
    post_cronjob(cp, "nfs", {"containers": [{"name": "c", "image": "busybox:1.35"}], "restartPolicy": "Never",
                             "volumes": [{"name": "v", "nfs": {"server": "127.0.0.1", "path": "/x"}}]})
    r = kubectl(cp, "create", "job", "lost", "--from=cronjob/nfs", ok=False)
    assert r.returncode != 0
    assert "field number 7 of spec.template.spec.volumes[0]" in r.stderr and "JSON" in r.stderr, r.stderr
    assert httpx.get(cp.server + "/apis/batch/v1/namespaces/default/jobs/lost", timeout=10).status_code == 404


def test_kinds_not_served_keep_their_404(cp):
    r = kubectl(cp, "create", "poddisruptionbudget", "pdb1", "--selector=app=x", "--min-available=1", ok=False)
    assert r.returncode != 0 and "could not find the requested resource" in r.stderr


def test_debug_pods_and_auth_reconcile(cp, tmp_path):
    """Other typed-client bodies of kinds the decoder has: ``kubectl debug`` posts Pods (a node debugger
    with host namespaces and a hostPath volume; a copy of a defaulted pod), ``auth reconcile`` RBAC."""
    r = httpx.post(cp.server + "/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
                   timeout=10)
    assert r.status_code == 201, r.text
    out = kubectl(cp, "debug", "node/n1", "--image=busybox:1.35").stdout
    name = out.split("debugging pod ", 1)[1].split()[0]
    pod = get(cp, f"/api/v1/namespaces/default/pods/{name}")
    spec = pod["spec"]
    assert spec["nodeName"] == "n1" and spec["hostNetwork"] and spec["hostPID"] and spec["hostIPC"]
    assert spec["volumes"][0]["hostPath"]["path"] == "/"
    assert spec["containers"][0]["image"] == "busybox:1.35"
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == "/host"

    kubectl(cp, "run", "orig", "--image=busybox:1.35", "--labels=app=orig")
    kubectl(cp, "debug", "orig", "--copy-to=orig-copy", "--image=busybox:1.35", "--container=dbg")
    copy = get(cp, "/api/v1/namespaces/default/pods/orig-copy")
    assert [c["name"] for c in copy["spec"]["containers"]] == ["orig", "dbg"]

    (tmp_path / "rbac.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: rec1}\n"
        "rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rec2, namespace: default}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: rec1}\n"
        "subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]\n")
    kubectl(cp, "auth", "reconcile", "-f", str(tmp_path / "rbac.yaml"))
    assert get(cp, "/apis/rbac.authorization.k8s.io/v1/clusterroles/rec1")["rules"] == \
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    assert get(cp, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/rec2")["subjects"] == \
        [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]
