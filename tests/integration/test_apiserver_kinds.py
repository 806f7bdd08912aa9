"""The kinds served after the skeleton, end to end: the real kubectl 1.32 (api-resources over aggregated discovery,
create/get/delete of each kind, get all, scale) and the official ``kubernetes`` Python client reading each kind."""
from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from support import control_plane

KUBECTL = shutil.which("kubectl")

MANIFESTS = """apiVersion: v1
kind: ServiceAccount
metadata: {name: builder}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc1}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: rc1}}
    spec: {containers: [{name: c, image: busybox:1.35}]}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: q1}
spec: {hard: {pods: "10", requests.cpu: "2"}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: lr1}
spec: {limits: [{type: Container, max: {cpu: "1"}, min: {cpu: 100m}}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds1}
spec:
  selector: {matchLabels: {app: ds1}}
  template:
    metadata: {labels: {app: ds1}}
    spec: {containers: [{name: c, image: busybox:1.35}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts1}
spec:
  serviceName: sts1
  selector: {matchLabels: {app: sts1}}
  template:
    metadata: {labels: {app: sts1}}
    spec: {containers: [{name: c, image: busybox:1.35}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job1}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: busybox:1.35}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj1}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox:1.35}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: es1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: ["10.244.0.5"], conditions: {ready: true}}]
ports: [{name: http, port: 80}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader}
roleRef: {kind: Role, name: reader}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:kubeling:viewer"}
rules: [{nonResourceURLs: ["/healthz"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kubeling-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubeling:viewer"}
subjects: [{kind: ServiceAccount, name: builder, namespace: default}]
"""

CREATED = ["serviceaccount/builder", "replicationcontroller/rc1", "resourcequota/q1", "limitrange/lr1",
           "daemonset.apps/ds1", "statefulset.apps/sts1", "job.batch/job1", "cronjob.batch/cj1",
           "endpointslice.discovery.k8s.io/es1", "role.rbac.authorization.k8s.io/reader",
           "rolebinding.rbac.authorization.k8s.io/reader",
           "clusterrole.rbac.authorization.k8s.io/system:kubeling:viewer",
           "clusterrolebinding.rbac.authorization.k8s.io/kubeling-viewer"]

API_RESOURCES = {  # NAME -> (SHORTNAMES, APIVERSION, NAMESPACED, KIND)
    "serviceaccounts": ("sa", "v1", "true", "ServiceAccount"),
    "replicationcontrollers": ("rc", "v1", "true", "ReplicationController"),
    "resourcequotas": ("quota", "v1", "true", "ResourceQuota"),
    "limitranges": ("limits", "v1", "true", "LimitRange"),
    "daemonsets": ("ds", "apps/v1", "true", "DaemonSet"),
    "statefulsets": ("sts", "apps/v1", "true", "StatefulSet"),
    "jobs": ("", "batch/v1", "true", "Job"),
    "cronjobs": ("cj", "batch/v1", "true", "CronJob"),
    "endpointslices": ("", "discovery.k8s.io/v1", "true", "EndpointSlice"),
    "roles": ("", "rbac.authorization.k8s.io/v1", "true", "Role"),
    "rolebindings": ("", "rbac.authorization.k8s.io/v1", "true", "RoleBinding"),
    "clusterroles": ("", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"),
    "clusterrolebindings": ("", "rbac.authorization.k8s.io/v1", "false", "ClusterRoleBinding"),
    "leases": ("", "coordination.k8s.io/v1", "true", "Lease"),
    "deployments": ("deploy", "apps/v1", "true", "Deployment"),
    "pods": ("po", "v1", "true", "Pod"),
}


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("kinds")) as plane:
        yield plane


@pytest.fixture(scope="module")
def kubectl(cp, tmp_path_factory):
    if not KUBECTL:
        pytest.skip("kubectl is not installed")
    home = tmp_path_factory.mktemp("kubectl-home")

    def run(*args, input=None, check=True):
        r = subprocess.run([KUBECTL, "--kubeconfig", str(cp.kubeconfig), "--cache-dir", str(home / "cache"), *args],
                           input=input, capture_output=True, text=True, timeout=60,
                           env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r
    return run


def test_api_resources_over_aggregated_discovery(kubectl):
    r = kubectl("api-resources", "-v=6")
    rows = {}
    for line in r.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) == 4:  # no short names
            cols.insert(1, "")
        rows.setdefault(cols[0], tuple(cols[1:]))  # metrics.k8s.io's nodes/pods come after the core ones
    for name, want in API_RESOURCES.items():
        assert rows.get(name) == want, (name, rows.get(name))
    # aggregated discovery: kubectl reads /api and /apis only, never the per-group documents
    gets = [line for line in r.stderr.splitlines() if " GET " in line]
    assert any("/api?" in g for g in gets) and any("/apis?" in g for g in gets)
    assert not any("/apis/apps/v1" in g or "/api/v1?" in g for g in gets), gets


def test_aggregated_discovery_content_type(cp):
    for path in ("/api", "/apis"):
        for version in ("v2", "v2beta1"):
            ct = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
            r = httpx.get(cp.server + path, headers={"Accept": ct + ",application/json"}, timeout=10)
            assert r.status_code == 200 and r.headers["content-type"] == ct
            assert r.json()["apiVersion"] == f"apidiscovery.k8s.io/{version}"
        plain = httpx.get(cp.server + path, headers={"Accept": "application/json"}, timeout=10)
        assert plain.headers["content-type"] == "application/json"
        assert plain.json()["kind"] in ("APIVersions", "APIGroupList")


def test_create_get_delete_each_kind(kubectl):
    r = kubectl("create", "-f", "-", "--validate=false", input=MANIFESTS)
    assert [line.rsplit(" ", 1)[0] for line in r.stdout.splitlines()] == CREATED
    try:
        got = json.loads(kubectl("get", "-f", "-", "-o", "json", input=MANIFESTS).stdout)
        by_kind = {i["kind"]: i for i in got["items"]}
        assert len(got["items"]) == len(CREATED)
        job = by_kind["Job"]
        uid = job["metadata"]["uid"]
        assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        assert job["spec"]["backoffLimit"] == 6 and job["metadata"]["labels"]["job-name"] == "job1"
        assert by_kind["ReplicationController"]["spec"]["selector"] == {"app": "rc1"}
        assert by_kind["LimitRange"]["spec"]["limits"][0]["default"] == {"cpu": "1"}
        assert by_kind["RoleBinding"]["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        assert by_kind["DaemonSet"]["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1

        out = kubectl("get", "all").stdout
        for name in ("replicationcontroller/rc1", "daemonset.apps/ds1", "statefulset.apps/sts1",
                     "job.batch/job1", "cronjob.batch/cj1", "service/kubernetes"):
            assert name in out, out
        assert "serviceaccount" not in out and "role" not in out

        assert kubectl("scale", "rc", "rc1", "--replicas=3").stdout.strip() == "replicationcontroller/rc1 scaled"
        assert kubectl("scale", "sts", "sts1", "--replicas=2").stdout.strip() == "statefulset.apps/sts1 scaled"
        assert kubectl("get", "rc", "rc1", "-o", "jsonpath={.spec.replicas}").stdout == "3"
        assert kubectl("get", "sts", "sts1", "-o", "jsonpath={.metadata.generation}").stdout == "2"
        for short in ("sa/builder", "quota/q1", "limits/lr1", "ds/ds1", "cj/cj1"):
            kubectl("get", short)

        bad = kubectl("create", "-f", "-", "--validate=false", check=False, input=MANIFESTS.split("---")[6]
                      .replace("name: job1", "name: job2").replace("Never", "Always"))
        assert bad.returncode == 1
        assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in bad.stderr
        bad = kubectl("patch", "ds", "ds1", "-p", '{"spec":{"selector":{"matchLabels":{"app":"x"}}}}', check=False)
        assert bad.returncode == 1 and "spec.selector" in bad.stderr and "field is immutable" in bad.stderr
    finally:
        r = kubectl("delete", "-f", "-", "--wait=false", input=MANIFESTS, check=False)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(CREATED)
    assert kubectl("get", "-f", "-", "--ignore-not-found", input=MANIFESTS).stdout == ""


def test_python_client_reads_each_kind(cp):
    pytest.importorskip("kubernetes")
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = cp.server
    api = client.ApiClient(cfg)
    ns = "pyclient"
    v1, appsv1, batchv1 = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    rbacv1, discv1 = client.RbacAuthorizationV1Api(api), client.DiscoveryV1Api(api)
    try:
        v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        tmpl = client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "py"}),
                                        spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                                             image="busybox:1.35")]))
        sel = client.V1LabelSelector(match_labels={"app": "py"})
        v1.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sa")))
        v1.create_namespaced_replication_controller(ns, client.V1ReplicationController(
            metadata=client.V1ObjectMeta(name="rc"), spec=client.V1ReplicationControllerSpec(template=tmpl)))
        v1.create_namespaced_resource_quota(ns, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="q"), spec=client.V1ResourceQuotaSpec(hard={"pods": "5"})))
        v1.create_namespaced_limit_range(ns, client.V1LimitRange(
            metadata=client.V1ObjectMeta(name="l"),
            spec=client.V1LimitRangeSpec(limits=[client.V1LimitRangeItem(type="Container", max={"cpu": "1"})])))
        appsv1.create_namespaced_daemon_set(ns, client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="ds"), spec=client.V1DaemonSetSpec(selector=sel, template=tmpl)))
        appsv1.create_namespaced_stateful_set(ns, client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="sts"),
            spec=client.V1StatefulSetSpec(selector=sel, template=tmpl, service_name="sts")))
        job_tmpl = client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox:1.35")]))
        batchv1.create_namespaced_job(ns, client.V1Job(metadata=client.V1ObjectMeta(name="job"),
                                                       spec=client.V1JobSpec(template=job_tmpl)))
        batchv1.create_namespaced_cron_job(ns, client.V1CronJob(
            metadata=client.V1ObjectMeta(name="cj"), spec=client.V1CronJobSpec(
                schedule="@hourly", job_template=client.V1JobTemplateSpec(spec=client.V1JobSpec(
                    template=job_tmpl)))))
        discv1.create_namespaced_endpoint_slice(ns, client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name="es"), address_type="IPv4",
            endpoints=[client.V1Endpoint(addresses=["10.0.0.1"])]))
        rbacv1.create_namespaced_role(ns, client.V1Role(metadata=client.V1ObjectMeta(name="r"), rules=[
            client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])]))
        rbacv1.create_namespaced_role_binding(ns, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="rb"), role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="r"),
            subjects=[client.RbacV1Subject(kind="User", name="alice", api_group="rbac.authorization.k8s.io")]))
        rbacv1.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name="py-cr"), rules=[
            client.V1PolicyRule(non_resource_urls=["/healthz"], verbs=["get"])]))
        rbacv1.create_cluster_role_binding(client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="py-crb"), role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="py-cr"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="sa", namespace=ns)]))

        assert v1.read_namespaced_service_account("sa", ns).metadata.name == "sa"
        rc = v1.read_namespaced_replication_controller("rc", ns)
        assert rc.spec.selector == {"app": "py"} and rc.spec.replicas == 1
        assert v1.read_namespaced_replication_controller_scale("rc", ns).spec.replicas == 1
        assert v1.read_namespaced_resource_quota("q", ns).spec.hard == {"pods": "5"}
        assert v1.read_namespaced_limit_range("l", ns).spec.limits[0].default == {"cpu": "1"}
        assert appsv1.read_namespaced_daemon_set("ds", ns).spec.update_strategy.type == "RollingUpdate"
        sts = appsv1.read_namespaced_stateful_set("sts", ns)
        assert sts.spec.pod_management_policy == "OrderedReady" and sts.spec.replicas == 1
        job = batchv1.read_namespaced_job("job", ns)
        assert job.spec.completions == 1 and job.spec.completion_mode == "NonIndexed"
        assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}
        assert batchv1.read_namespaced_cron_job("cj", ns).spec.concurrency_policy == "Allow"
        es = discv1.read_namespaced_endpoint_slice("es", ns)
        assert es.address_type == "IPv4" and es.endpoints[0].addresses == ["10.0.0.1"]
        assert rbacv1.read_namespaced_role("r", ns).rules[0].verbs == ["get"]
        assert rbacv1.read_namespaced_role_binding("rb", ns).role_ref.name == "r"
        assert rbacv1.read_cluster_role("py-cr").rules[0].non_resource_urls == ["/healthz"]
        assert rbacv1.read_cluster_role_binding("py-crb").subjects[0].namespace == ns
        assert [j.metadata.name for j in batchv1.list_job_for_all_namespaces().items] == ["job"]
        assert len(rbacv1.list_namespaced_role(ns).items) == 1
    finally:
        for fn, args in ((rbacv1.delete_cluster_role_binding, ("py-crb",)), (rbacv1.delete_cluster_role, ("py-cr",))):
            try:
                fn(*args)
            except client.ApiException:
                pass
        api.close()


def test_events_v1_and_core_events_share_storage(cp):
    base = cp.server
    v1 = f"{base}/apis/events.k8s.io/v1/namespaces/default/events"
    core = f"{base}/api/v1/namespaces/default/events"
    body = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "ev1"},
            "eventTime": "2026-11-22T04:00:00.000000Z", "reportingController": "kubeling.io/test",
            "reportingInstance": "i1", "action": "Testing", "reason": "Tested", "note": "hello", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}}
    with httpx.Client(timeout=10) as c:
        r = c.post(v1, json=body)
        assert r.status_code == 201, r.text
        rv = r.json()["metadata"]["resourceVersion"]
        got = c.get(f"{core}/ev1").json()
        assert (got["apiVersion"], got["message"], got["reportingComponent"], got["involvedObject"]["name"]) == \
            ("v1", "hello", "kubeling.io/test", "p")
        r = c.patch(f"{core}/ev1", json={"message": "patched via core"},
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        r = c.patch(f"{v1}/ev1", json={"deprecatedCount": 3},
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200 and r.json()["note"] == "patched via core" and r.json()["deprecatedCount"] == 3
        lst = c.get(v1).json()
        assert lst["apiVersion"] == "events.k8s.io/v1" and [i["note"] for i in lst["items"]] == ["patched via core"]
        lines = []
        with c.stream("GET", v1, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "2"}) as w:
            for line in w.iter_lines():
                if line:
                    lines.append(json.loads(line))
        assert [e["type"] for e in lines] == ["MODIFIED", "MODIFIED"]
        assert all(e["object"]["apiVersion"] == "events.k8s.io/v1" and "regarding" in e["object"] for e in lines)
        bad = c.post(v1, json={"metadata": {"name": "ev2"}})
        assert bad.status_code == 422 and "reportingController: Required value" in bad.json()["message"]
        assert c.delete(f"{v1}/ev1").status_code == 200
        assert c.get(f"{core}/ev1").status_code == 404
