"""Strategies of the kinds added after the skeleton (defaulting, validation, immutability), the resource table
rows they take their names from, and aggregated discovery (negotiation and document shape)."""
import pytest

from apiserver import registry
from apiserver.discovery import Discovery, aggregated_content_type, negotiate_aggregated
from apiserver.registry import apps, batch, core, discovery_k8s, ipallocator, rbac, replicationcontroller
from kubeling.api import resources

UID = "0b6a4a7c-1111-2222-3333-444455556666"


def template(labels=None, restart=None):
    spec = {"containers": [{"name": "c", "image": "busybox:1.35"}]}
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": labels if labels is not None else {"app": "x"}}, "spec": spec}


def fields(causes):
    return [c.field for c in causes]


def create(strategy, obj, name="x"):
    """What the Store does on create before validating: system metadata, prepare, default."""
    obj.setdefault("metadata", {}).update({"name": name, "namespace": "default", "uid": UID})
    strategy.prepare_for_create(obj)
    strategy.default(obj)
    return obj, strategy.validate(obj)


# ---------------------------------------------------------------- resource table and discovery


@pytest.mark.parametrize("name,api_version,plural", [
    ("sa", "v1", "serviceaccounts"), ("rc", "v1", "replicationcontrollers"), ("quota", "v1", "resourcequotas"),
    ("limits", "v1", "limitranges"), ("ds", "apps/v1", "daemonsets"), ("sts", "apps/v1", "statefulsets"),
    ("job", "batch/v1", "jobs"), ("cj", "batch/v1", "cronjobs"),
    ("endpointslice", "discovery.k8s.io/v1", "endpointslices"),
    ("clusterrolebinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    ("ev", "v1", "events")])
def test_resource_table_rows(name, api_version, plural):
    r = resources.for_name(name)
    assert (r.api_version, r.plural) == (api_version, plural)


def test_served_strategies_have_upstream_storage_keys():
    infos = {s.info.resource + "/" + s.info.group: s.info for s in registry.served_strategies(
        ipallocator.Range("10.96.0.0/12"))}
    assert infos["replicationcontrollers/"].key("ns", "a") == "/registry/controllers/ns/a"
    assert infos["clusterroles/rbac.authorization.k8s.io"].key(None, "a") == "/registry/clusterroles/a"
    assert infos["endpointslices/discovery.k8s.io"].prefix("ns") == "/registry/endpointslices/ns/"
    assert infos["jobs/batch"].categories == ("all",) and infos["cronjobs/batch"].categories == ("all",)
    assert "scale" in infos["statefulsets/apps"].subresources and "scale" in infos["replicationcontrollers/"].subresources
    assert infos["daemonsets/apps"].categories == ("all",) and "scale" not in infos["daemonsets/apps"].subresources


KUBECTL_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


@pytest.mark.parametrize("accept,want", [
    (KUBECTL_ACCEPT, "v2"), ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", "v2beta1"),
    ("application/json", None), (None, None), ("*/*", None),
    ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
     None),
    ("application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "v2"),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList", None)])
def test_negotiate_aggregated(accept, want):
    assert negotiate_aggregated(accept) == want


def test_aggregated_document_matches_plain_documents():
    d = Discovery([s.info for s in registry.served_strategies(ipallocator.Range("10.96.0.0/12"))],
                  server_address="127.0.0.1:6443")
    assert aggregated_content_type("v2") == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    core_doc = d.aggregated("api")
    assert core_doc["apiVersion"] == "apidiscovery.k8s.io/v2" and core_doc["kind"] == "APIGroupDiscoveryList"
    assert len(core_doc["items"]) == 1 and "name" not in core_doc["items"][0]["metadata"]
    apis = d.aggregated("apis", "v2beta1")
    assert apis["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    names = [g["metadata"]["name"] for g in apis["items"]]
    assert names == [g["name"] for g in d.api_group_list()["groups"]]
    for group_doc in core_doc["items"] + apis["items"]:
        group = group_doc["metadata"].get("name", "")
        for v in group_doc["versions"]:
            plain = d.resource_list(group, v["version"])["resources"]
            flat = [r["resource"] for r in v["resources"]]
            flat += [f"{r['resource']}/{s['subresource']}" for r in v["resources"] for s in r.get("subresources", [])]
            assert sorted(flat) == sorted(p["name"] for p in plain)
    rc = next(r for r in core_doc["items"][0]["versions"][0]["resources"] if r["resource"] == "replicationcontrollers")
    assert rc["shortNames"] == ["rc"] and rc["categories"] == ["all"] and rc["scope"] == "Namespaced"
    assert rc["responseKind"] == {"group": "", "version": "v1", "kind": "ReplicationController"}
    scale = next(s for s in rc["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


# ---------------------------------------------------------------- core: rc, quota, limitrange, sa


def test_rc_defaults_selector_and_labels_from_template():
    s = replicationcontroller.ReplicationControllerStrategy()
    obj, causes = create(s, {"spec": {"template": template({"app": "web"})}})
    assert causes == []
    assert obj["spec"]["selector"] == {"app": "web"} and obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    scale = s.to_scale({**obj, "status": {"replicas": 1}})
    assert scale["status"] == {"replicas": 1, "selector": "app=web"} and scale["spec"] == {"replicas": 1}
    assert s.from_scale(obj, {"spec": {"replicas": 4}})["spec"]["replicas"] == 4


def test_rc_validation():
    s = replicationcontroller.ReplicationControllerStrategy()
    _, causes = create(s, {"spec": {"selector": {"app": "other"}, "replicas": -1,
                                    "template": template({"app": "web"}, restart="Never")}})
    assert set(fields(causes)) == {"spec.replicas", "spec.template.metadata.labels", "spec.template.spec.restartPolicy"}
    _, causes = create(s, {"spec": {"template": template({})}})
    assert "spec.selector" in fields(causes)


def test_resource_quota_and_limit_range():
    q = core.ResourceQuotaStrategy()
    _, causes = create(q, {"spec": {"hard": {"pods": "10", "requests.cpu": "500m"}}})
    assert causes == []
    _, causes = create(q, {"spec": {"hard": {"pods": "ten", "memory": "-1Gi"}, "scopes": ["Nope"]}})
    assert sorted(fields(causes)) == ["spec.hard[memory]", "spec.hard[pods]", "spec.scopes[0]"]
    lr = core.LimitRangeStrategy()
    obj, causes = create(lr, {"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "1Mi"}}]}})
    item = obj["spec"]["limits"][0]
    assert causes == [] and item["default"] == {"cpu": "1"}
    assert item["defaultRequest"] == {"cpu": "1", "memory": "1Mi"}
    _, causes = create(lr, {"spec": {"limits": [{"type": "Node"}, {}]}})
    assert fields(causes) == ["spec.limits[0].type", "spec.limits[1].type"]
    assert create(core.ServiceAccountStrategy(), {"secrets": "nope"})[1][0].field == "secrets"


# ---------------------------------------------------------------- apps: daemonsets, statefulsets


def test_daemonset_defaults_and_immutable_selector():
    s = apps.DaemonSetStrategy()
    obj, causes = create(s, {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template()}})
    assert causes == [] and "replicas" not in obj["spec"]
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert obj["spec"]["revisionHistoryLimit"] == 10
    new = {**obj, "spec": {**obj["spec"], "selector": {"matchLabels": {"app": "y"}},
                           "template": template({"app": "y"})}}
    assert fields(s.validate_update(new, obj)) == ["spec.selector"]
    _, causes = create(s, {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template({"app": "z"})}})
    assert fields(causes) == ["spec.template.metadata.labels"]


def test_statefulset_defaults_and_forbidden_updates():
    s = apps.StatefulSetStrategy()
    obj, causes = create(s, {"spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "x"}},
                                      "template": template()}})
    spec = obj["spec"]
    assert causes == []
    assert (spec["replicas"], spec["podManagementPolicy"], spec["updateStrategy"], spec["revisionHistoryLimit"]) == \
        (1, "OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, 10)
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    scaled = {**obj, "spec": {**spec, "replicas": 3}}
    assert s.validate_update(scaled, obj) == []
    renamed = {**obj, "spec": {**spec, "podManagementPolicy": "Parallel"}}
    assert [c.field for c in s.validate_update(renamed, obj)] == ["spec"]
    assert "forbidden" in s.validate_update(renamed, obj)[0].message


# ---------------------------------------------------------------- batch: jobs, cronjobs


def test_job_defaults_and_generated_selector():
    s = batch.JobStrategy()
    obj, causes = create(s, {"spec": {"template": template(None, restart="Never")}}, name="pi")
    spec = obj["spec"]
    assert causes == []
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"],
            spec["suspend"], spec["podReplacementPolicy"]) == (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == UID
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "pi" and labels["app"] == "x"
    assert obj["metadata"]["labels"] == labels


def test_job_parallelism_only_and_pod_failure_policy():
    obj, _ = create(batch.JobStrategy(), {"spec": {"parallelism": 3, "podFailurePolicy": {"rules": []},
                                                   "template": template(restart="Never")}})
    assert obj["spec"]["parallelism"] == 3 and "completions" not in obj["spec"]
    assert obj["spec"]["podReplacementPolicy"] == "Failed"


def test_job_validation():
    s = batch.JobStrategy()
    _, causes = create(s, {"spec": {"template": template()}})  # restartPolicy defaults to Always
    assert fields(causes) == ["spec.template.spec.restartPolicy"]
    _, causes = create(s, {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(restart="Never")}})
    assert "spec.selector" in fields(causes) and "not auto-generated" in causes[-1].message
    obj, causes = create(s, {"spec": {"manualSelector": True, "selector": {"matchLabels": {"app": "x"}},
                                      "template": template(restart="Never")}})
    assert causes == [] and "controller-uid" not in obj["spec"]["template"]["metadata"]["labels"]
    _, causes = create(s, {"spec": {"completionMode": "Indexed", "backoffLimit": -1, "parallelism": 2,
                                    "template": template(restart="Never")}})
    assert sorted(fields(causes)) == ["spec.backoffLimit", "spec.completions"]


def test_job_immutable_selector_and_template():
    s = batch.JobStrategy()
    old, _ = create(s, {"spec": {"template": template(restart="Never")}})
    import copy
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.36"
    new["spec"]["parallelism"] = 2
    assert fields(s.validate_update(new, old)) == ["spec.template"]
    old["spec"]["suspend"] = True  # a suspended Job that never started may change its template
    assert s.validate_update(new, old) == []


@pytest.mark.parametrize("schedule,ok", [("*/5 * * * *", True), ("0 0 * * MON-FRI", True), ("@hourly", True),
                                         ("0 0 1 jan *", True), ("61 * * * *", False), ("* * *", False),
                                         ("@often", False), ("*/0 * * * *", False), ("TZ=UTC 0 * * * *", False)])
def test_cronjob_schedule(schedule, ok):
    s = batch.CronJobStrategy()
    _, causes = create(s, {"spec": {"schedule": schedule, "jobTemplate": {"spec": {
        "template": template(restart="OnFailure")}}}})
    assert (causes == []) == ok, causes


def test_cronjob_defaults_and_validation():
    s = batch.CronJobStrategy()
    obj, causes = create(s, {"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {
        "template": template(restart="OnFailure")}}}})
    spec = obj["spec"]
    assert causes == []
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    _, causes = create(s, {"spec": {"schedule": "0 * * * *", "timeZone": "Mars/Olympus",
                                    "concurrencyPolicy": "Sometimes",
                                    "jobTemplate": {"spec": {"template": template()}}}}, name="a" * 53)
    assert sorted(fields(causes)) == ["metadata.name", "spec.concurrencyPolicy",
                                      "spec.jobTemplate.spec.template.spec.restartPolicy", "spec.timeZone"]


# ---------------------------------------------------------------- discovery.k8s.io, rbac


def test_endpointslice():
    s = discovery_k8s.EndpointSliceStrategy()
    obj, causes = create(s, {"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}],
                             "ports": [{"port": 80}]})
    assert causes == [] and obj["ports"] == [{"port": 80, "protocol": "TCP", "name": ""}]
    _, causes = create(s, {"addressType": "IPv4", "endpoints": [{"addresses": ["fe80::1"]}, {"addresses": []}],
                           "ports": [{"name": "Bad_Name", "port": 70000, "protocol": "ICMP"}]})
    assert sorted(fields(causes)) == ["endpoints[0].addresses[0]", "endpoints[1].addresses", "ports[0].name",
                                      "ports[0].port", "ports[0].protocol"]
    assert fields(create(s, {})[1]) == ["addressType"]
    new = {**obj, "addressType": "IPv6", "endpoints": []}
    assert fields(s.validate_update(new, obj)) == ["addressType"]


def test_rbac_roles():
    assert create(rbac.RoleStrategy(), {"rules": [{"apiGroups": [""], "resources": ["pods"],
                                                   "verbs": ["get"]}]})[1] == []
    _, causes = create(rbac.RoleStrategy(), {"rules": [{"resources": ["pods"]}, {"nonResourceURLs": ["/x"],
                                                                                 "verbs": ["get"]}]})
    assert fields(causes) == ["rules[0].verbs", "rules[0].apiGroups", "rules[1].nonResourceURLs"]
    _, causes = create(rbac.ClusterRoleStrategy(), {"rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]},
                       name="system:node")
    assert causes == []
    from apiserver.registry.rest import validate_name
    assert validate_name("metadata.name", "system:node", "path") == []
    assert validate_name("metadata.name", "a/b", "path")[0].message.endswith("may not contain '/'")


def test_rbac_bindings():
    s = rbac.RoleBindingStrategy()
    obj, causes = create(s, {"roleRef": {"kind": "Role", "name": "r"},
                             "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]})
    assert causes == [] and obj["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert obj["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and "apiGroup" not in obj["subjects"][1]
    new = {**obj, "roleRef": {"kind": "Role", "name": "other", "apiGroup": "rbac.authorization.k8s.io"}}
    assert s.validate_update(new, obj)[0].message.endswith("cannot change roleRef")
    c = rbac.ClusterRoleBindingStrategy()
    _, causes = create(c, {"roleRef": {"kind": "Role", "name": "r"},
                           "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r2"}]})
    assert fields(causes) == ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]
    assert fields(create(s, {})[1]) == ["roleRef"]


# ---------------------------------------------------------------- events.k8s.io/v1 over core events


def test_events_v1_conversion_round_trips():
    from apiserver.registry import events
    core_ev = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e", "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started",
               "reportingComponent": "kubelet", "reportingInstance": "node1", "source": {"component": "kubelet"},
               "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:01Z", "count": 2,
               "eventTime": None, "type": "Normal", "action": "Started", "related": {"kind": "Node"}}
    v1 = events.to_v1(core_ev)
    assert v1["apiVersion"] == "events.k8s.io/v1"
    assert (v1["regarding"], v1["note"], v1["reportingController"], v1["deprecatedSource"], v1["deprecatedCount"],
            v1["deprecatedFirstTimestamp"]) == ({"kind": "Pod", "name": "p"}, "hi", "kubelet",
                                                {"component": "kubelet"}, 2, "2026-01-01T00:00:00Z")
    assert events.to_core(v1) == core_ev
    assert events.to_v1(v1) == v1 and events.to_core(core_ev) == core_ev  # idempotent
    status = {"kind": "Status", "apiVersion": "v1"}
    assert events.to_v1(status) is status


def test_events_v1_create_requires_v1_fields():
    from apiserver.registry import events
    s = events.EventsV1Strategy()
    _, causes = create(s, {})
    assert fields(causes) == ["eventTime", "reportingController", "reportingInstance", "action", "reason"]
    _, causes = create(s, events.to_core({"eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "c",
                                          "reportingInstance": "i", "action": "A", "reason": "R", "type": "Odd",
                                          "apiVersion": "events.k8s.io/v1"}))
    assert fields(causes) == ["type"]
