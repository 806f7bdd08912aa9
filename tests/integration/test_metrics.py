"""/metrics of real etcdlite, apiserver, scheduler and controller-manager processes (issue 9).

One etcdlite (with --listen-metrics-urls), one apiserver, the scheduler and
the controller-manager on free loopback ports, shared by the module. Each
/metrics page is parsed with prometheus-client's own parser, the named
upstream metrics must be there, and they must move when the test does
something (a put, a create, a watch, a Deployment). Logs must be logfmt.
"""
from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import support
from kubeling import klog
from kubeling.client import kubeconfig

class Cluster:
    def __init__(self, cp: support.ControlPlane, etcd_metrics: str, urls: dict[str, str]):
        self.cp = cp
        self.etcd_metrics = etcd_metrics
        self.urls = urls


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    with support.ProcessGroup(tmp) as procs:
        port, peer, mport = support.free_port(), support.free_port(), support.free_port()
        etcd_url = f"http://127.0.0.1:{port}"
        procs.spawn("etcdlite", support.store_argv("etcdlite", tmp / "etcd-data", port, peer)
                    + ["--listen-metrics-urls", f"http://127.0.0.1:{mport}", "--snapshot-count", "40"])
        procs.wait_ready("etcdlite", port=port)
        server = support.start_apiserver(procs, [etcd_url])
        kc = tmp / "admin.kubeconfig"
        kubeconfig.write(kc, server=server, user="test")
        cp = support.ControlPlane(server=server, kubeconfig=kc, etcd_endpoint=etcd_url,
                                  etcd_log=procs.log_path("etcdlite"), apiserver_log=procs.log_path("apiserver"),
                                  procs=procs, tmp=tmp)
        urls = support.start_scheduler_and_controllers(cp)
        yield Cluster(cp, f"http://127.0.0.1:{mport}", urls)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, frozenset(labels.items())): value}`` of ``url``/metrics (must parse)."""
    r = httpx.get(f"{url}/metrics", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    assert "_created" not in r.text, "upstream components expose no *_created series"
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, metric: str, **labels) -> float:
    """Sum of ``metric``'s samples whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= ls)


def names(samples) -> set[str]:
    return {n for n, _ in samples}


def test_etcdlite_metrics(cluster):
    before = scrape(cluster.etcd_metrics)
    for name in ("etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_proposals_committed_total",
                 "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
                 "etcd_server_proposals_failed_total", "etcd_server_leader_changes_seen_total",
                 "etcd_disk_wal_fsync_duration_seconds_count", "etcd_mvcc_db_total_size_in_bytes",
                 "etcd_debugging_mvcc_keys_total"):
        assert name in names(before), name
    assert value(before, "etcd_server_has_leader") == 1
    assert value(before, "etcd_server_is_leader") == 1
    assert value(before, "etcd_server_leader_changes_seen_total") >= 1
    support.etcdctl(cluster.cp.etcd_endpoint.removeprefix("http://"), "put", "/test-metrics/k", "v")
    after = scrape(cluster.etcd_metrics)
    assert value(after, "etcd_server_proposals_committed_total") > value(before,
                                                                         "etcd_server_proposals_committed_total")
    assert value(after, "etcd_server_proposals_applied_total") >= value(after,
                                                                        "etcd_server_proposals_committed_total") - 1
    assert value(after, "etcd_disk_wal_fsync_duration_seconds_count") > value(
        before, "etcd_disk_wal_fsync_duration_seconds_count")
    assert value(after, "etcd_debugging_mvcc_keys_total") > 0
    assert value(after, "etcd_mvcc_db_total_size_in_bytes") > 0
    # --snapshot-count 40: enough writes make the member save a snapshot, which is timed.
    for i in range(45):
        support.etcdctl(cluster.cp.etcd_endpoint.removeprefix("http://"), "put", f"/test-metrics/k{i}", "v")
    support.wait_for("snapshot saved", lambda: value(scrape(cluster.etcd_metrics),
                                                     "etcd_debugging_snap_save_total_duration_seconds_count") >= 1,
                     15, 0.2)
    health = httpx.get(f"{cluster.etcd_metrics}/health", timeout=5, trust_env=False)
    assert health.status_code == 200 and health.json()["health"] == "true"


def test_apiserver_request_metrics_move_on_create(cluster):
    api = cluster.cp.server
    before = scrape(api)
    sel = dict(metric="apiserver_request_total", verb="POST", resource="pods", scope="namespace", code="201",
               group="", version="v1", component="apiserver")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "metrics-pod"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}
    r = httpx.post(f"{api}/api/v1/namespaces/default/pods", json=pod, timeout=10, trust_env=False)
    assert r.status_code == 201, r.text
    after = scrape(api)
    assert value(after, **sel) == value(before, **sel) + 1
    dur = dict(verb="POST", resource="pods", scope="namespace")
    assert value(after, "apiserver_request_duration_seconds_count", **dur) == \
        value(before, "apiserver_request_duration_seconds_count", **dur) + 1
    assert value(after, "apiserver_request_duration_seconds_bucket", le="60.0", **dur) == \
        value(after, "apiserver_request_duration_seconds_count", **dur)
    assert value(after, "etcd_request_duration_seconds_count", operation="create", type="pods") > \
        value(before, "etcd_request_duration_seconds_count", operation="create", type="pods")
    assert value(after, "apiserver_storage_objects", resource="pods") >= 1
    assert value(after, "apiserver_storage_objects", resource="namespaces") >= 4
    assert ("apiserver_current_inflight_requests", frozenset({("request_kind", "mutating")})) in after
    # A GET of a missing object is counted with its code, a named GET has scope "resource".
    httpx.get(f"{api}/api/v1/namespaces/default/pods/nope", timeout=10, trust_env=False)
    last = scrape(api)
    assert value(last, "apiserver_request_total", verb="GET", resource="pods", scope="resource", code="404") >= 1


def test_apiserver_watch_is_labelled_and_kept_out_of_the_sli(cluster):
    api = cluster.cp.server
    watch = dict(verb="WATCH", resource="configmaps", scope="namespace")  # informers watch cluster-wide
    before = scrape(api)
    with httpx.stream("GET", f"{api}/api/v1/namespaces/default/configmaps",
                      params={"watch": "true", "timeoutSeconds": "1"}, timeout=15, trust_env=False) as r:
        assert r.status_code == 200
        assert value(scrape(api), "apiserver_longrunning_requests", **watch) == 1
        for _ in r.iter_lines():
            pass
    support.wait_for("watch counted", lambda: value(scrape(api), "apiserver_request_total", **watch)
                     > value(before, "apiserver_request_total", **watch), 10, 0.2)
    after = scrape(api)
    assert value(after, "apiserver_longrunning_requests", **watch) == 0
    assert value(after, "apiserver_request_duration_seconds_count", **watch) >= 1
    assert value(after, "apiserver_request_sli_duration_seconds_count", verb="WATCH") == 0
    # The watch lived about 1 s: it shows only under verb WATCH, never in a LIST/GET series.
    assert value(after, "apiserver_request_duration_seconds_sum", verb="LIST", resource="configmaps") < 1.0


def test_controller_manager_workqueue_and_rest_client_metrics(cluster):
    url = cluster.urls["controller-manager"]
    before = scrape(url)
    api = cluster.cp.server
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "metrics-web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "metrics-web"}},
                    "template": {"metadata": {"labels": {"app": "metrics-web"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}}
    r = httpx.post(f"{api}/apis/apps/v1/namespaces/default/deployments", json=dep, timeout=10, trust_env=False)
    assert r.status_code == 201, r.text
    support.wait_for("deployment queued", lambda: value(scrape(url), "workqueue_adds_total", name="deployment")
                     > value(before, "workqueue_adds_total", name="deployment"), 20, 0.2)
    support.wait_for("replicaset worked", lambda: value(scrape(url), "workqueue_work_duration_seconds_count",
                                                        name="replicaset") >= 1, 20, 0.2)
    after = scrape(url)
    for name in ("workqueue_depth", "workqueue_adds_total", "workqueue_queue_duration_seconds_count",
                 "workqueue_work_duration_seconds_count", "workqueue_retries_total",
                 "workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds",
                 "rest_client_requests_total", "rest_client_request_duration_seconds_count"):
        assert name in names(after), name
    host = api.removeprefix("http://")
    assert value(after, "rest_client_requests_total", method="POST", code="201", host=host) >= 1
    assert value(after, "rest_client_requests_total", method="GET", code="200", host=host) >= 1
    assert value(after, "leader_election_master_status", name="kube-controller-manager") == 1


def test_scheduler_metrics(cluster):
    url = cluster.urls["scheduler"]
    api = cluster.cp.server
    before = scrape(url)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "metrics-unschedulable"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}
    r = httpx.post(f"{api}/api/v1/namespaces/default/pods", json=pod, timeout=10, trust_env=False)
    assert r.status_code == 201, r.text
    # No node exists: the attempt ends unschedulable, and is timed.
    support.wait_for("attempt counted", lambda: value(scrape(url), "scheduler_schedule_attempts_total")
                     > value(before, "scheduler_schedule_attempts_total"), 20, 0.2)
    after = scrape(url)
    assert value(after, "scheduler_schedule_attempts_total", result="unschedulable") >= 1
    assert value(after, "scheduler_scheduling_attempt_duration_seconds_count") >= 1
    assert value(after, "leader_election_master_status", name="kube-scheduler") == 1
    assert "scheduler_scheduling_algorithm_duration_seconds_count" in names(after)  # observed once a pod fits
    assert "rest_client_requests_total" in names(after)


def test_component_logs_are_logfmt(cluster):
    procs = cluster.cp.procs
    # Something to log in the controller-manager, at least its start-up lines.
    for name, component in (("controller-manager", "controller-manager"), ("scheduler", "scheduler"),
                            ("etcdlite", "etcdlite")):
        text = procs.log(name, 200_000)
        rows = [l for l in text.splitlines() if l.strip()]
        assert rows, f"{name} logged nothing"
        parsed = [klog.parse(l) for l in rows]
        bad = [l for l, f in zip(rows, parsed) if not ({"ts", "level", "component", "logger", "msg"} <= f.keys())]
        assert not bad, f"{name}: lines not in logfmt: {bad[:3]}"
        assert {f["component"] for f in parsed} == {component}


def test_scheduler_log_carries_the_pod_key(cluster):
    def line():
        for row in cluster.cp.procs.log("scheduler", 200_000).splitlines():
            f = klog.parse(row)
            if f.get("msg", "").startswith("unable to schedule pod default/metrics-unschedulable"):
                return f
    # test_scheduler_metrics created the pod; create it here too when run alone.
    httpx.post(f"{cluster.cp.server}/api/v1/namespaces/default/pods", trust_env=False, timeout=10, json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "metrics-unschedulable"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
    f = support.wait_for("scheduler logged the pod", line, 20, 0.2)
    assert f["pod"] == "default/metrics-unschedulable" and f["level"] == "info"

    def event_line():
        for row in cluster.cp.procs.log("scheduler", 200_000).splitlines():
            f = klog.parse(row)
            if f.get("msg") == "Event occurred" and f.get("object") == "default/metrics-unschedulable":
                return f
    ev = support.wait_for("the FailedScheduling event logged", event_line, 20, 0.2)
    assert (ev["kind"], ev["type"], ev["reason"]) == ("Pod", "Warning", "FailedScheduling") and ev["note"]


def test_etcdlite_three_members_leader_and_peer_traffic(tmp_path):
    """One leader among three members, every member sees it, and Raft traffic shows in the peer counters."""
    names = ("n1", "n2", "n3")
    ports = {n: (support.free_port(), support.free_port(), support.free_port()) for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    with support.ProcessGroup(tmp_path) as procs:
        for n in names:
            client, peer, mport = ports[n]
            procs.spawn(n, support.cluster_member_argv("etcdlite", n, data_dir=tmp_path / n, client_port=client,
                                                       peer_port=peer, initial_cluster=initial)
                        + ["--listen-metrics-urls", f"http://127.0.0.1:{mport}"])
        urls = {n: f"http://127.0.0.1:{ports[n][2]}" for n in names}
        for n in names:
            procs.wait_ready(n, url=f"{urls[n]}/health", timeout=30)
        support.etcdctl(f"127.0.0.1:{ports['n1'][0]}", "put", "k", "v")
        pages = {n: scrape(urls[n]) for n in names}
        assert [value(pages[n], "etcd_server_has_leader") for n in names] == [1, 1, 1]
        leaders = [n for n in names if value(pages[n], "etcd_server_is_leader") == 1]
        assert len(leaders) == 1, pages
        lead = pages[leaders[0]]
        ids = {n: next(dict(ls)["server_id"] for (m, ls) in pages[n] if m == "etcd_server_id") for n in names}
        for n in names:
            if n != leaders[0]:
                assert value(lead, "etcd_network_peer_sent_bytes_total", To=ids[n]) > 0
                assert value(pages[n], "etcd_network_peer_received_bytes_total", From=ids[leaders[0]]) > 0
        # Every member committed the put (a quorum at least; all within a heartbeat or two).
        support.wait_for("put committed everywhere", lambda: all(
            value(scrape(urls[n]), "etcd_server_proposals_applied_total") >=
            value(lead, "etcd_server_proposals_committed_total") for n in names), 10, 0.2)
