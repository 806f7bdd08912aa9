"""Server-side Tables: column definitions and cells per kind as pkg/printers/internalversion prints them."""
from apiserver import printers
from apiserver.printers import table

NOW = 1_700_000_000.0


def ts(ago: float) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(NOW - ago, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name="x", ago=200, **extra):
    return {"name": name, "namespace": "default", "creationTimestamp": ts(ago), **extra}


def names(kind, wide=True):
    return [c.name for c in printers.columns(kind) if wide or c.priority == 0]


def cells(kind, obj):
    return table(kind, [obj], now=NOW)["rows"][0]["cells"]


def test_table_shape_and_partial_object_metadata():
    pod = {"kind": "Pod", "metadata": meta("p", labels={"app": "web"}), "spec": {"containers": [{"name": "c"}]}}
    t = table("Pod", [pod], list_meta={"resourceVersion": "7", "continue": "abc"}, now=NOW)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "7", "continue": "abc"}
    first = t["columnDefinitions"][0]
    assert first["name"] == "Name" and first["format"] == "name" and first["priority"] == 0 and first["description"]
    obj = t["rows"][0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and obj["apiVersion"] == "meta.k8s.io/v1"
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert table("Pod", [pod], include_object="Object", now=NOW)["rows"][0]["object"] is pod
    assert "object" not in table("Pod", [pod], include_object="None", now=NOW)["rows"][0]
    assert "columnDefinitions" not in table("Pod", [pod], headers=False, now=NOW)


def test_pod_columns_and_statuses():
    assert names("Pod", wide=False) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert names("Pod")[5:] == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    running = {"metadata": meta("web", 200), "spec": {"containers": [{"name": "c"}], "nodeName": "node1"},
               "status": {"phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [
                   {"name": "c", "ready": True, "restartCount": 2, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(300)}}}]}}
    assert cells("Pod", running) == ["web", "1/1", "Running", "2 (5m ago)", "3m20s", "10.244.0.5", "node1",
                                     "<none>", "<none>"]
    crash = {"metadata": meta(), "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
             "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    assert cells("Pod", crash)[2] == "CrashLoopBackOff"
    creating = {"metadata": meta(), "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending",
                "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert cells("Pod", creating)[:3] == ["x", "0/1", "ContainerCreating"]
    init = {"metadata": meta(), "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}],
                                         "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}]}}
    assert cells("Pod", init)[2] == "Init:1/2"
    done = {"metadata": meta(), "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}
    row = table("Pod", [done], now=NOW)["rows"][0]
    assert row["cells"][2] == "Completed" and row["conditions"][0]["type"] == "Completed"
    deleting = {"metadata": meta(deletionTimestamp=ts(1)), "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": "Running"}}
    assert cells("Pod", deleting)[2] == "Terminating"


def test_workloads():
    tmpl = {"spec": {"containers": [{"name": "web", "image": "busybox:1.35"}, {"name": "s", "image": "pause"}]}}
    d = {"metadata": meta("web"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                           "template": tmpl},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert names("Deployment") == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images",
                                   "Selector"]
    assert cells("Deployment", d) == ["web", "2/3", 3, 2, "3m20s", "web,s", "busybox:1.35,pause", "app=web"]
    assert names("ReplicaSet", wide=False) == ["Name", "Desired", "Current", "Ready", "Age"]
    assert cells("ReplicaSet", {**d, "status": {"replicas": 3, "readyReplicas": 1}})[:5] == \
        ["web", 3, 3, 1, "3m20s"]
    assert names("DaemonSet", wide=False) == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                                              "Node Selector", "Age"]
    ds = {"metadata": meta("ds"), "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"},
                                                                  "containers": []}}},
          "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1}}
    assert cells("DaemonSet", ds)[:8] == ["ds", 1, 1, 1, 0, 0, "os=linux", "3m20s"]
    assert names("StatefulSet") == ["Name", "Ready", "Age", "Containers", "Images"]
    assert cells("StatefulSet", {"metadata": meta("db"), "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
                 )[:3] == ["db", "1/2", "3m20s"]
    assert names("ReplicationController", wide=False) == ["Name", "Desired", "Current", "Ready", "Age"]


def test_jobs_and_cronjobs():
    assert names("Job", wide=False) == ["Name", "Status", "Completions", "Duration", "Age"]
    job = {"metadata": meta("j"), "spec": {"completions": 2},
           "status": {"succeeded": 2, "startTime": ts(100), "completionTime": ts(40),
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    assert cells("Job", job)[:5] == ["j", "Complete", "2/2", "60s", "3m20s"]
    running = {"metadata": meta("j"), "spec": {"parallelism": 3}, "status": {"startTime": ts(10)}}
    assert cells("Job", running)[:4] == ["j", "Running", "0/1 of 3", "10s"]
    assert names("CronJob", wide=False) == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule",
                                            "Age"]
    cj = {"metadata": meta("c"), "spec": {"schedule": "*/1 * * * *", "suspend": False},
          "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ts(30)}}
    assert cells("CronJob", cj)[:7] == ["c", "*/1 * * * *", "<none>", "False", 1, "30s", "3m20s"]


def test_services_endpoints_and_slices():
    assert names("Service") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    svc = {"metadata": meta("web"), "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                             "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                                             "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}
    assert cells("Service", svc) == ["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP", "3m20s", "app=web"]
    ep = {"metadata": meta("web"), "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)],
                                                "ports": [{"port": 80}]}]}
    assert cells("Endpoints", ep)[1] == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."
    assert cells("Endpoints", {"metadata": meta("e")})[1] == "<none>"
    es = {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 80}],
          "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    assert cells("EndpointSlice", es) == ["web-abc", "IPv4", "80", "10.0.0.1,10.0.0.2", "3m20s"]
    assert cells("EndpointSlice", {"metadata": meta("e"), "addressType": "IPv4"})[2:4] == ["<unset>", "<unset>"]


def test_nodes():
    assert names("Node") == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                             "Kernel-Version", "Container-Runtime"]
    node = {"metadata": meta("node1", labels={"node-role.kubernetes.io/control-plane": ""}),
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "kernelVersion": "6.1",
                                    "containerRuntimeVersion": "docker://24"}}}
    assert cells("Node", node) == ["node1", "NotReady,SchedulingDisabled", "control-plane", "3m20s", "v1.32.0",
                                   "127.0.0.1", "<none>", "Debian", "6.1", "docker://24"]
    assert cells("Node", {"metadata": meta("n")})[1:3] == ["Unknown", "<none>"]


def test_events_show_ages_not_timestamps():
    assert names("Event", wide=False) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    ev = {"metadata": meta("web.1"), "type": "Normal", "reason": "Scheduled", "message": " ok \n",
          "involvedObject": {"kind": "Pod", "name": "web"}, "firstTimestamp": ts(600), "lastTimestamp": ts(65),
          "count": 3, "source": {"component": "kubelet", "host": "node1"}}
    assert cells("Event", ev) == ["65s", "Normal", "Scheduled", "pod/web", "", "kubelet, node1", "ok", "10m", 3,
                                  "web.1"]
    new_style = {"metadata": meta("e"), "eventTime": ts(5).replace("Z", ".000000Z"), "involvedObject": {},
                 "reportingComponent": "default-scheduler"}
    c = cells("Event", new_style)
    assert c[0] == c[7] == "5s" and c[5] == "default-scheduler" and c[8] == 1


def test_events_k8s_io_events_print_as_their_core_form():
    """events.k8s.io/v1 regarding / note / reportingController / deprecated* fill OBJECT, MESSAGE, SOURCE,
    FIRST SEEN and COUNT as upstream (it prints the internal core Event)."""
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("web.2"), "type": "Normal",
          "reason": "Scheduled", "note": "Successfully assigned default/web to node1",
          "regarding": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec"},
          "eventTime": ts(30).replace("Z", ".000000Z"), "reportingController": "default-scheduler",
          "reportingInstance": "default-scheduler-node1"}
    assert cells("Event", ev) == ["30s", "Normal", "Scheduled", "pod/web", "spec",
                                  "default-scheduler, default-scheduler-node1",
                                  "Successfully assigned default/web to node1", "30s", 1, "web.2"]
    old = dict(ev, deprecatedSource={"component": "kubelet", "host": "node1"},
               deprecatedFirstTimestamp=ts(600), deprecatedLastTimestamp=ts(65), deprecatedCount=4)
    c = cells("Event", old)
    assert c[0] == "65s" and c[5] == "kubelet, node1" and c[7:9] == ["10m", 4]
    assert "involvedObject" not in ev  # the stored object is not changed


def test_small_kinds_and_default():
    assert cells("ConfigMap", {"metadata": meta("c"), "data": {"a": "1"}, "binaryData": {"b": ""}}) == \
        ["c", 2, "3m20s"]
    assert cells("Secret", {"metadata": meta("s"), "type": "Opaque", "data": {"a": "MQ=="}}) == \
        ["s", "Opaque", 1, "3m20s"]
    assert cells("ServiceAccount", {"metadata": meta("default"), "secrets": []}) == ["default", 0, "3m20s"]
    assert cells("Lease", {"metadata": meta("l"), "spec": {"holderIdentity": "node1"}}) == ["l", "node1", "3m20s"]
    assert cells("Namespace", {"metadata": meta("default"), "status": {"phase": "Active"}}) == \
        ["default", "Active", "3m20s"]
    rq = {"metadata": meta("q"), "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
                                            "used": {"pods": "3"}}}
    assert names("ResourceQuota") == ["Name", "Age", "Request", "Limit"]
    assert cells("ResourceQuota", rq) == ["q", "3m20s", "pods: 3/10, requests.cpu: 0/1", "limits.cpu: 0/2"]
    rb = {"metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}
    assert cells("RoleBinding", rb) == ["rb", "ClusterRole/view", "3m20s", "alice", "", "ns/sa"]
    assert names("Role") == names("LimitRange") == names("Unknown") == ["Name", "Created At"]
    assert printers.columns("Unknown")[1].type == "date"
    assert cells("Widget", {"metadata": meta("w")}) == ["w", ts(200)]
