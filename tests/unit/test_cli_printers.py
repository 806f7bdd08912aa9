"""Tables as kubectl prints them: column alignment, AGE, pod STATUS and the per-kind cells."""
import pytest

from kubeling.cli import printers
from kubeling.cli.get import TablePrinter
from kubeling.cli.printers import human_duration, pod_summary
from kubeling.cli.tabwriter import align, render_table

NOW = 1_700_000_000.0


def ts(seconds_ago: float) -> str:
    import datetime
    t = datetime.datetime.fromtimestamp(NOW - seconds_ago, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (5 * 3600 + 180, "5h3m"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (2 * 86400, "2d"), (3 * 86400 + 5 * 3600, "3d5h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (365 * 2 * 86400, "2y"), (365 * 3 * 86400 + 86400 * 10, "3y10d"),
    (365 * 9 * 86400, "9y"),
])
def test_human_duration_matches_apimachinery(seconds, text):
    assert human_duration(seconds) == text


def test_tabwriter_pads_like_kubectl():
    """minwidth 6, padding 3, trailing cell unpadded (pkg/printers/tabwriter.go)."""
    text = render_table(["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                        [["web-7d4b9c8f6d-abcde", "1/1", "Running", "0", "5s"]])
    assert text == ("NAME                   READY   STATUS    RESTARTS   AGE\n"
                    "web-7d4b9c8f6d-abcde   1/1     Running   0          5s\n")
    assert render_table(["NAME", "AGE"], [["a", "1s"]]) == "NAME   AGE\na      1s\n"


def test_tabwriter_blocks_end_at_lines_without_the_column():
    """describe output: each run of lines sharing a column is aligned on its own."""
    text = align("Name:\tweb\nNamespace:\tdefault\nIPs:\n  IP:\t10.0.0.1\n", minwidth=0, padding=2)
    assert text == "Name:       web\nNamespace:  default\nIPs:\n  IP:  10.0.0.1\n"


def pod(phase="Running", statuses=None, init=None, init_statuses=None, deleting=False, conditions=None, **spec):
    containers = [{"name": s.get("name", f"c{i}")} for i, s in enumerate(statuses or [{}])]
    p = {"metadata": {"name": "p", "creationTimestamp": ts(65)},
         "spec": {"containers": containers, **spec},
         "status": {"phase": phase, "containerStatuses": statuses or [], "conditions": conditions or []}}
    if init is not None:
        p["spec"]["initContainers"] = init
        p["status"]["initContainerStatuses"] = init_statuses or []
    if deleting:
        p["metadata"]["deletionTimestamp"] = ts(1)
    return p


RUNNING = {"name": "web", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ts(60)}}}


@pytest.mark.parametrize("p, ready, status", [
    pytest.param(pod("Pending", [{"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
                 "0/1", "ContainerCreating", id="creating"),
    pytest.param(pod("Pending", statuses=None), "0/1", "Pending", id="pending-unscheduled"),
    pytest.param(pod("Running", [RUNNING]), "1/1", "Running", id="running"),
    pytest.param(pod("Running", [{**RUNNING, "ready": False, "restartCount": 4,
                                  "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                  "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(30)}}}]),
                 "0/1", "CrashLoopBackOff", id="crashloop"),
    pytest.param(pod("Succeeded", [{"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]),
                 "0/1", "Completed", id="completed"),
    pytest.param(pod("Failed", [{"name": "job", "state": {"terminated": {"exitCode": 3}}}]),
                 "0/1", "ExitCode:3", id="exit-code"),
    pytest.param(pod("Running", [RUNNING], deleting=True), "1/1", "Terminating", id="terminating"),
    pytest.param(pod("Succeeded", [{"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                     deleting=True), "0/1", "Completed", id="terminal-not-terminating"),
    pytest.param(pod("Pending", [{"name": "web", "state": {"waiting": {"reason": "PodInitializing"}}}],
                     init=[{"name": "setup"}],
                     init_statuses=[{"name": "setup", "state": {"running": {}}}]), "0/1", "Init:0/1", id="init-running"),
    pytest.param(pod("Pending", [{"name": "web", "state": {"waiting": {"reason": "PodInitializing"}}}],
                     init=[{"name": "a"}, {"name": "b"}],
                     init_statuses=[{"name": "a", "state": {"terminated": {"exitCode": 0}}},
                                    {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
                 "0/1", "Init:CrashLoopBackOff", id="init-crashloop"),
    pytest.param(pod("Pending", [{"name": "web", "state": {"waiting": {}}}], init=[{"name": "a"}],
                     init_statuses=[{"name": "a", "state": {"terminated": {"exitCode": 2}}}]),
                 "0/1", "Init:ExitCode:2", id="init-failed"),
    pytest.param(pod("Running", [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                 {**RUNNING, "name": "b"}], conditions=[{"type": "Ready", "status": "False"}]),
                 "1/2", "NotReady", id="completed-with-running-not-ready"),
])
def test_pod_status_as_kubectl_computes_it(p, ready, status):
    cells = printers.pod_row(p, NOW, False)
    assert cells[1:3] == [ready, status]


def test_restarts_show_time_since_last_restart():
    p = pod("Running", [{**RUNNING, "restartCount": 2, "lastState": {"terminated": {"finishedAt": ts(30)}}}])
    assert printers.pod_row(p, NOW, False)[3] == "2 (30s ago)"
    assert pod_summary(p)[3] == 2


def test_pod_wide_columns():
    p = pod("Running", [RUNNING], nodeName="node1")
    p["status"]["podIP"] = "10.244.0.5"
    p["status"]["podIPs"] = [{"ip": "10.244.0.5"}]
    table = TablePrinter("Pod", wide=True, with_namespace=False, no_headers=False).render([p], now=NOW)
    assert table == ("NAME   READY   STATUS    RESTARTS   AGE   IP           NODE    NOMINATED NODE   READINESS GATES\n"
                     "p      1/1     Running   0          65s   10.244.0.5   node1   <none>           <none>\n")


def test_deployment_and_replicaset_rows():
    d = {"metadata": {"name": "web", "creationTimestamp": ts(200)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.35"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert printers.deployment_row(d, NOW, False) == ["web", "2/3", "3", "2", "3m20s"]
    assert printers.deployment_row(d, NOW, True)[5:] == ["web", "busybox:1.35", "app=web"]
    rs = {**d, "status": {"replicas": 3, "readyReplicas": 1}}
    assert printers.replicaset_row(rs, NOW, False) == ["web", "3", "3", "1", "3m20s"]


def test_service_cells():
    svc = {"metadata": {"name": "web", "creationTimestamp": ts(10)},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                    "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]}}
    assert printers.service_row(svc, NOW, True) == \
        ["web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP,53:30053/UDP", "10s", "app=web"]
    lb = {"type": "LoadBalancer", "ports": []}
    assert printers.service_external_ip(lb, {}) == "<pending>"
    assert printers.service_ports(lb) == "<none>"


def test_endpoints_cell_lists_three_then_counts():
    ep = {"subsets": [{"addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 5)], "ports": [{"port": 8080}]}]}
    assert printers.format_endpoints(ep) == "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 1 more..."
    assert printers.format_endpoints({"subsets": []}) == "<none>"
    assert printers.format_endpoints({"subsets": [{"notReadyAddresses": [{"ip": "1.2.3.4"}]}]}) == "<none>"


def test_node_cells():
    node = {"metadata": {"name": "node1", "creationTimestamp": ts(3 * 86400),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0-kubeling"},
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}
    assert printers.node_row(node, NOW, False) == \
        ["node1", "Ready,SchedulingDisabled", "control-plane", "3d", "v1.32.0-kubeling"]
    assert printers.node_row(node, NOW, True)[5:7] == ["127.0.0.1", "<none>"]
    assert printers.node_status({"status": {}}) == "Unknown"


def test_event_row_and_header():
    ev = {"type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/p to node1 ",
          "involvedObject": {"kind": "Pod", "name": "p"}, "firstTimestamp": ts(90), "lastTimestamp": ts(30),
          "count": 2}
    assert printers.header("Event") == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert printers.event_row(ev, NOW, False) == \
        ["30s", "Normal", "Scheduled", "pod/p", "Successfully assigned default/p to node1"]
    assert printers.event_row(ev, NOW, True)[7:9] == ["90s", "2"]


def test_all_namespaces_and_kind_prefix():
    ns = {"metadata": {"name": "default", "creationTimestamp": ts(5)}, "status": {"phase": "Active"}}
    assert printers.header("Namespace") == ["NAME", "STATUS", "AGE"]
    cm = {"metadata": {"name": "c", "namespace": "kube-system", "creationTimestamp": ts(5)}, "data": {"a": "1"}}
    assert printers.row("ConfigMap", cm, with_namespace=True, name_prefix="configmap/", now=NOW) == \
        ["kube-system", "configmap/c", "1", "5s"]
    assert printers.row("Namespace", ns, now=NOW) == ["default", "Active", "5s"]
    assert printers.header("Widget") == ["NAME", "AGE"]


def test_watch_rows_keep_widths():
    tp = TablePrinter("Namespace", wide=False, with_namespace=False, no_headers=False)
    first = tp.render([{"metadata": {"name": "a", "creationTimestamp": ts(1)}}], now=NOW)
    later = tp.render([{"metadata": {"name": "b", "creationTimestamp": ts(2)}, "status": {"phase": "Terminating"}}],
                      now=NOW)
    assert first == "NAME   STATUS   AGE\na      Active   1s\n"
    assert later == "b      Terminating   2s\n"
