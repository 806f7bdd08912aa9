"""The DaemonSet controller's placement, pod template and rolling-update choices."""
from controllers import daemonset as dsc


def _ds(**template_spec):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "ns", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **template_spec}}}}


def _node(name, *, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def test_node_should_run_selector_and_taints():
    assert dsc.node_should_run(_ds(), _node("a"))
    assert not dsc.node_should_run(_ds(nodeSelector={"disk": "ssd"}), _node("a"))
    assert dsc.node_should_run(_ds(nodeSelector={"disk": "ssd"}), _node("a", labels={"disk": "ssd"}))
    dedicated = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    assert not dsc.node_should_run(_ds(), _node("a", taints=[dedicated]))
    assert dsc.node_should_run(_ds(tolerations=[{"key": "dedicated", "operator": "Exists"}]),
                               _node("a", taints=[dedicated]))
    # the daemon tolerations: a cordoned or not-ready node still runs its daemons
    assert dsc.node_should_run(_ds(), _node("a", taints=[{"key": "node.kubernetes.io/unschedulable",
                                                          "effect": "NoSchedule"},
                                                         {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]))


def test_pod_for_node_pins_the_node_by_affinity():
    pod = dsc.pod_for_node(_ds(), "node-7", "abc")
    assert pod["metadata"]["labels"] == {"app": "agent", dsc.REVISION_LABEL: "abc"}
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert "nodeName" not in pod["spec"] and dsc.target_node(pod) == "node-7"
    keys = {t["key"] for t in pod["spec"]["tolerations"]}
    assert "node.kubernetes.io/unreachable" in keys and "node.kubernetes.io/network-unavailable" not in keys
    assert dsc.target_node({"spec": {"nodeName": "n"}}) == "n"


def test_rolling_update_respects_max_unavailable():
    ds = _ds()
    ctrl = dsc.DaemonSetsController.__new__(dsc.DaemonSetsController)
    ctrl.clock = lambda: 0.0
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}

    def pod(name, node, rev, status=ready):
        return {"metadata": {"name": name, "labels": {dsc.REVISION_LABEL: rev}}, "spec": {"nodeName": node},
                "status": status}
    nodes = [_node(n) for n in ("a", "b", "c")]
    new = dsc.template_hash(ds)
    by_node = {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")], "c": [pod("pc", "c", new)]}
    assert [p["metadata"]["name"] for p in ctrl._rolling_update_victims(ds, nodes, by_node, new)] == ["pa"]
    by_node["a"] = []  # one node already without an available pod: no budget left
    assert ctrl._rolling_update_victims(ds, nodes, by_node, new) == []
    by_node["a"] = [pod("pa", "a", "old", {"phase": "Pending"})]  # an unavailable old pod goes first anyway
    assert [p["metadata"]["name"] for p in ctrl._rolling_update_victims(ds, nodes, by_node, new)] == ["pa"]
