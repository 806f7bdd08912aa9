"""InterPodAffinity filter: required affinity and anti-affinity over topology
domains, both directions (the incoming pod's terms and existing pods' terms)."""
import pytest

from scheduler.framework import Code
from scheduler.framework.interface import CycleState, run_pre_filters
from scheduler.framework.plugins import InterPodAffinity, default_filters, default_scores
from scheduler.schedule_one import FitError, schedule_pod
from test_scheduler_plugins import info, node, pod

HOST = "kubernetes.io/hostname"
ANTI = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"


def labelled(name, labels, *, namespace="default", anti=None, aff=None):
    p = pod(name)
    p["metadata"]["labels"] = labels
    p["metadata"]["namespace"] = namespace
    affinity = {}
    if anti is not None:
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": anti}
    if aff is not None:
        affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": aff}
    if affinity:
        p["spec"]["affinity"] = affinity
    return p


def term(labels, key=HOST, **extra):
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def nodes3(**placed):
    """Nodes n1..n3 (hostname and zone labels: n1, n2 in zone a, n3 in zone b) with pods placed."""
    zones = {"n1": "a", "n2": "a", "n3": "b"}
    return [info(node(n, labels={HOST: n, "zone": zones[n]}), *placed.get(n, [])) for n in ("n1", "n2", "n3")]


def verdicts(p, nodes):
    plugin = InterPodAffinity()
    state = CycleState()
    assert run_pre_filters(p, nodes, [plugin], state).ok
    out = {}
    for n in nodes:
        st = plugin.filter(p, n, state)
        out[n.name] = "ok" if st.ok else st.reasons[0]
        if st.reasons == (AFFINITY,):
            assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        elif not st.ok:
            assert st.code is Code.UNSCHEDULABLE
    return out


WEB = {"app": "web"}


@pytest.mark.parametrize("incoming, placed, expected", [
    pytest.param(labelled("p", WEB, anti=[term(WEB)]), {"n1": [labelled("x", WEB)]},
                 {"n1": ANTI, "n2": "ok", "n3": "ok"}, id="anti-hostname"),
    pytest.param(labelled("p", WEB, anti=[term(WEB, "zone")]), {"n1": [labelled("x", WEB)]},
                 {"n1": ANTI, "n2": ANTI, "n3": "ok"}, id="anti-zone-covers-the-domain"),
    pytest.param(labelled("p", WEB, anti=[term(WEB)]), {"n1": [labelled("x", {"app": "db"})]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="anti-selector-mismatch"),
    pytest.param(labelled("p", WEB, anti=[term(WEB)]), {"n1": [labelled("x", WEB, namespace="other")]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="anti-other-namespace-ignored"),
    pytest.param(labelled("p", WEB, anti=[term(WEB, namespaces=["other"])]),
                 {"n1": [labelled("x", WEB, namespace="other")]},
                 {"n1": ANTI, "n2": "ok", "n3": "ok"}, id="anti-explicit-namespaces"),
    pytest.param(labelled("p", WEB, anti=[term(WEB, namespaceSelector={})]),
                 {"n2": [labelled("x", WEB, namespace="other")]},
                 {"n1": "ok", "n2": ANTI, "n3": "ok"}, id="anti-empty-namespace-selector-is-all"),
    pytest.param(labelled("p", WEB), {"n3": [labelled("x", {"app": "db"}, anti=[term(WEB)])]},
                 {"n1": "ok", "n2": "ok", "n3": EXISTING_ANTI}, id="existing-pod-anti-symmetry"),
    pytest.param(labelled("p", {"app": "cache"}, aff=[term(WEB, "zone")]), {"n3": [labelled("x", WEB)]},
                 {"n1": AFFINITY, "n2": AFFINITY, "n3": "ok"}, id="affinity-zone"),
    pytest.param(labelled("p", WEB, aff=[term(WEB)]), {},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="affinity-first-of-its-group"),
    pytest.param(labelled("p", {"app": "cache"}, aff=[term(WEB)]), {},
                 {"n1": AFFINITY, "n2": AFFINITY, "n3": AFFINITY}, id="affinity-nobody-to-join"),
    pytest.param(labelled("p", WEB, aff=[term(WEB, "rack")]), {},
                 {"n1": AFFINITY, "n2": AFFINITY, "n3": AFFINITY}, id="affinity-topology-key-missing"),
])
def test_inter_pod_affinity(incoming, placed, expected):
    assert verdicts(incoming, nodes3(**placed)) == expected


def test_required_anti_affinity_spreads_three_replicas_and_refuses_a_fourth():
    nodes = nodes3()
    placed = []
    for i in range(3):
        replica = labelled(f"web-{i}", WEB, anti=[term(WEB)])
        name = schedule_pod(replica, nodes, default_filters(), default_scores())
        placed.append(name)
        replica["spec"]["nodeName"] = name
        next(n for n in nodes if n.name == name).add_pod(replica)
    assert sorted(placed) == ["n1", "n2", "n3"]
    with pytest.raises(FitError) as e:
        schedule_pod(labelled("web-3", WEB, anti=[term(WEB)]), nodes, default_filters(), default_scores())
    assert str(e.value) == f"0/3 nodes are available: 3 {ANTI}."


def weighted(labels, weight, key=HOST):
    return {"weight": weight, "podAffinityTerm": term(labels, key)}


def preferring(name, labels, *, aff=(), anti=(), req_aff=None):
    p = labelled(name, labels, aff=req_aff)
    a = p["spec"].setdefault("affinity", {})
    if aff:
        a.setdefault("podAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = list(aff)
    if anti:
        a.setdefault("podAntiAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = list(anti)
    return p


def scores(p, nodes):
    from scheduler.framework.interface import ALL_NODES
    plugin = InterPodAffinity()
    state = CycleState({ALL_NODES: nodes})
    plugin.pre_score(p, nodes, state)
    raw = {n.name: plugin.score(p, n, state) for n in nodes}
    plugin.normalize_score(p, raw)
    return raw


DB = {"app": "db"}


@pytest.mark.parametrize("incoming, placed, expected", [
    pytest.param(labelled("p", WEB), {"n1": [labelled("x", DB)]}, {"n1": 0, "n2": 0, "n3": 0},
                 id="no-terms-anywhere"),
    pytest.param(preferring("p", WEB, aff=[weighted(DB, 5)]), {"n1": [labelled("x", DB)]},
                 {"n1": 100, "n2": 0, "n3": 0}, id="preferred-affinity"),
    pytest.param(preferring("p", WEB, aff=[weighted(DB, 5, "zone")]), {"n1": [labelled("x", DB)]},
                 {"n1": 100, "n2": 100, "n3": 0}, id="preferred-affinity-zone"),
    pytest.param(preferring("p", WEB, anti=[weighted(WEB, 5)]), {"n1": [labelled("x", WEB)]},
                 {"n1": 0, "n2": 100, "n3": 100}, id="preferred-anti-affinity"),
    pytest.param(labelled("p", WEB), {"n2": [labelled("x", DB, aff=[term(WEB)])]},
                 {"n1": 0, "n2": 100, "n3": 0}, id="existing-required-affinity-attracts"),
    pytest.param(labelled("p", WEB), {"n1": [preferring("x", DB, anti=[weighted(WEB, 10, "zone")])]},
                 {"n1": 0, "n2": 0, "n3": 100}, id="existing-preferred-anti-affinity-repels"),
])
def test_inter_pod_affinity_score(incoming, placed, expected):
    assert scores(incoming, nodes3(**placed)) == expected


def test_namespace_selector_uses_namespace_labels():
    labels = {"prod-a": {"env": "prod"}, "prod-b": {"env": "prod"}, "dev": {"env": "dev"}}
    incoming = labelled("p", WEB, anti=[term(WEB, namespaceSelector={"matchLabels": {"env": "prod"}})])
    nodes = nodes3(n1=[labelled("x", WEB, namespace="prod-b")], n2=[labelled("y", WEB, namespace="dev")])
    plugin = InterPodAffinity(namespace_labels=labels.get)
    state = CycleState()
    assert run_pre_filters(incoming, nodes, [plugin], state).ok
    assert [plugin.filter(incoming, n, state).ok for n in nodes] == [False, True, True]
    # Without namespace labels a non-empty namespaceSelector selects no namespace.
    assert verdicts(incoming, nodes) == {"n1": "ok", "n2": "ok", "n3": "ok"}
