"""PodTopologySpread: DoNotSchedule skew filtering and ScheduleAnyway scoring."""
import pytest

from scheduler.framework import Code
from scheduler.framework.interface import ALL_NODES, CycleState, run_pre_filters
from scheduler.framework.plugins import PodTopologySpread
from test_scheduler_interpodaffinity import HOST, WEB, labelled, nodes3
from test_scheduler_plugins import info, node

NOT_MATCH = "node(s) didn't match pod topology spread constraints"
MISSING = "node(s) didn't match pod topology spread constraints (missing required label)"


def spread(p, key="zone", *, max_skew=1, when="DoNotSchedule", selector=WEB, **extra):
    p["spec"].setdefault("topologySpreadConstraints", []).append(
        {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
         "labelSelector": {"matchLabels": selector}, **extra})
    return p


def verdicts(p, nodes):
    plugin = PodTopologySpread()
    state = CycleState()
    assert run_pre_filters(p, nodes, [plugin], state).ok
    out = {}
    for n in nodes:
        st = plugin.filter(p, n, state)
        out[n.name] = "ok" if st.ok else st.reasons[0]
        if st.reasons == (MISSING,):
            assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        elif not st.ok:
            assert st.code is Code.UNSCHEDULABLE
    return out


def terminating(p):
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


@pytest.mark.parametrize("incoming, placed, expected", [
    pytest.param(spread(labelled("p", WEB)), {"n1": [labelled("x", WEB)]},
                 {"n1": NOT_MATCH, "n2": NOT_MATCH, "n3": "ok"}, id="zone-skew"),
    pytest.param(spread(labelled("p", WEB), HOST), {"n1": [labelled("x", WEB)]},
                 {"n1": NOT_MATCH, "n2": "ok", "n3": "ok"}, id="hostname-skew"),
    pytest.param(spread(labelled("p", WEB), max_skew=2), {"n1": [labelled("x", WEB)]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="max-skew-2"),
    pytest.param(spread(labelled("p", {"app": "other"})), {"n1": [labelled("x", WEB)]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="incoming-not-selected-itself"),
    pytest.param(spread(labelled("p", WEB)), {"n1": [labelled("x", WEB)], "n3": [labelled("y", WEB)]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="balanced"),
    pytest.param(spread(labelled("p", WEB), minDomains=3), {"n1": [labelled("x", WEB)], "n3": [labelled("y", WEB)]},
                 {"n1": NOT_MATCH, "n2": NOT_MATCH, "n3": NOT_MATCH}, id="min-domains-not-reached"),
    pytest.param(spread(labelled("p", WEB)), {"n1": [terminating(labelled("x", WEB))]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="terminating-pods-do-not-count"),
    pytest.param(spread(labelled("p", WEB)), {"n1": [labelled("x", WEB, namespace="other")]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="other-namespace-does-not-count"),
    pytest.param(spread(labelled("p", {"app": "web", "rev": "2"}), matchLabelKeys=["rev"]),
                 {"n1": [labelled("x", {"app": "web", "rev": "1"})]},
                 {"n1": "ok", "n2": "ok", "n3": "ok"}, id="match-label-keys"),
    pytest.param(spread(labelled("p", WEB), "rack"), {},
                 {"n1": MISSING, "n2": MISSING, "n3": MISSING}, id="missing-topology-label"),
])
def test_pod_topology_spread_filter(incoming, placed, expected):
    assert verdicts(incoming, nodes3(**placed)) == expected


def test_node_affinity_policy_honor_ignores_nodes_the_pod_cannot_use():
    # Only zone a is usable: its own count is the minimum, so the pod may join it.
    p = spread(labelled("p", WEB))
    p["spec"]["nodeSelector"] = {"zone": "a"}
    assert verdicts(p, nodes3(n1=[labelled("x", WEB)]))["n2"] == "ok"
    p["spec"]["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = "Ignore"
    assert verdicts(p, nodes3(n1=[labelled("x", WEB)]))["n2"] == NOT_MATCH


def test_schedule_anyway_score_prefers_the_least_crowded_node():
    p = spread(labelled("p", WEB), HOST, when="ScheduleAnyway")
    nodes = nodes3(n1=[labelled("a", WEB), labelled("b", WEB)], n2=[labelled("c", WEB)])
    nodes.append(info(node("n4")))  # no hostname label: ignored, scores 0
    plugin = PodTopologySpread()
    state = CycleState({ALL_NODES: nodes})
    plugin.pre_score(p, nodes, state)
    raw = {n.name: plugin.score(p, n, state) for n in nodes}
    # weight log(3 + 2) = 1.609: n1 round(3.22) = 3, n2 round(1.61) = 2, n3 0
    assert raw == {"n1": 3, "n2": 2, "n3": 0, "n4": 0}
    plugin.normalize_score(p, raw, state)
    assert raw == {"n1": 0, "n2": 33, "n3": 100, "n4": 0}
    # DoNotSchedule-only pods are not scored by it.
    q = spread(labelled("q", WEB), HOST)
    state = CycleState({ALL_NODES: nodes})
    plugin.pre_score(q, nodes, state)
    assert {plugin.score(q, n, state) for n in nodes} == {0}
