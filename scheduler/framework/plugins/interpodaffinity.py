"""InterPodAffinity filter and score: required pod affinity and
anti-affinity filter; preferred terms (and existing pods' terms) score.

Mirrors pkg/scheduler/framework/plugins/interpodaffinity (filtering.go).
PreFilter counts, per topology pair (label key, node's value for it):
- existing pods whose required anti-affinity terms select the incoming pod
  (the node may not share a pair with them: symmetry);
- existing pods selected by the incoming pod's anti-affinity terms;
- existing pods matched by all of the incoming pod's affinity terms.
Filter then checks the candidate node's pairs. As upstream, a pod whose
affinity terms match nobody in the cluster but match itself may start the
group anywhere the topology keys exist.

Score (scoring.go): per topology pair, add the weight of each preferred
affinity term of the incoming pod an existing pod matches (anti-affinity
subtracts), the weight of existing pods' preferred terms the incoming pod
matches, and 1 (hardPodAffinityWeight) for each of their required affinity
terms it matches; a node scores the sum over its pairs, min-max normalized
to 0..100.

Term namespaces: ``namespaces`` plus ``namespaceSelector`` (``{}`` = all);
both absent = the namespace of the pod owning the term. A non-empty
namespaceSelector needs namespace labels, looked up through the optional
``namespace_labels`` callable (the scheduler passes its namespace lister);
without it such a selector selects none.
"""
from __future__ import annotations

import collections
from typing import Callable, Sequence

from kubeling.api import selectors
from scheduler.framework.interface import (ALL_NODES, MAX_NODE_SCORE, SKIP, SKIP_FILTER, SUCCESS, CycleState,
                                           Status, unschedulable)
from scheduler.framework.types import NodeInfo, required_affinity_terms, required_anti_affinity_terms

HARD_POD_AFFINITY_WEIGHT = 1  # upstream's InterPodAffinityArgs default

ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"


class AffinityTerm:
    """A PodAffinityTerm compiled against the namespace of the pod that owns it."""

    def __init__(self, term: dict, owner_namespace: str):
        self.topology_key = term.get("topologyKey") or ""
        try:
            self.selector = selectors.label_selector_from_object(term.get("labelSelector"))
        except ValueError:
            self.selector = selectors.LabelSelector(nothing=True)
        self.namespaces = set(term.get("namespaces") or [])
        ns_sel = term.get("namespaceSelector")
        if ns_sel is None and not self.namespaces:
            self.namespaces = {owner_namespace}
        self.ns_selector = None
        if ns_sel is not None:
            try:
                self.ns_selector = selectors.label_selector_from_object(ns_sel)
            except ValueError:
                self.ns_selector = None

    def matches(self, pod: dict, namespace_labels: Callable[[str], dict | None] | None = None) -> bool:
        """Whether ``pod`` is in the term's namespaces and its labels match the selector."""
        meta = pod.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        in_ns = ns in self.namespaces
        if not in_ns and self.ns_selector is not None:
            if self.ns_selector.empty():
                in_ns = True
            elif namespace_labels is not None:
                in_ns = self.ns_selector.matches(namespace_labels(ns) or {})
        return in_ns and self.selector.matches(meta.get("labels") or {})


def _terms(raw: list[dict], namespace: str) -> list[AffinityTerm]:
    return [AffinityTerm(t or {}, namespace) for t in raw]


def _preferred(pod: dict, kind: str) -> list[tuple[int, dict]]:
    raw = ((((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {})
           .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    return [(int(t.get("weight") or 0), t.get("podAffinityTerm") or {}) for t in raw if t]


def _namespace(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("namespace") or "default"


class _State:
    def __init__(self, pod: dict):
        ns = _namespace(pod)
        self.affinity = _terms(required_affinity_terms(pod), ns)
        self.anti_affinity = _terms(required_anti_affinity_terms(pod), ns)
        self.existing_anti_counts: collections.Counter = collections.Counter()
        self.affinity_counts: collections.Counter = collections.Counter()
        self.anti_counts: collections.Counter = collections.Counter()
        self.pod = pod


class InterPodAffinity:
    """Filter on required podAffinity / podAntiAffinity (any topologyKey, e.g. kubernetes.io/hostname)."""

    name = "InterPodAffinity"
    weight = 2  # upstream's default-profile weight for InterPodAffinity

    def __init__(self, *, namespace_labels: Callable[[str], dict | None] | None = None):
        self.namespace_labels = namespace_labels

    def pre_filter(self, pod: dict, nodes: Sequence[NodeInfo], state: CycleState) -> Status:
        """Count matching pods per topology pair over every node (upstream's PreFilter)."""
        st = _State(pod)
        # A snapshot lists the nodes holding pods with required anti-affinity (upstream's
        # havePodsWithRequiredAntiAffinityNodeInfoList): only those can add existing_anti_counts.
        with_anti = getattr(nodes, "have_pods_with_required_anti_affinity", None)
        for info in nodes if with_anti is None else with_anti:
            labels = info.labels
            for key in info.pods_with_required_anti_affinity:
                existing = info.pods[key]
                for term in _terms(required_anti_affinity_terms(existing), _namespace(existing)):
                    if term.topology_key in labels and term.matches(pod, self.namespace_labels):
                        st.existing_anti_counts[(term.topology_key, labels[term.topology_key])] += 1
        for info in nodes if (st.affinity or st.anti_affinity) else ():
            labels = info.labels
            for existing in info.pods.values():
                if st.affinity and all(t.matches(existing, self.namespace_labels) for t in st.affinity):
                    for t in st.affinity:
                        if t.topology_key in labels:
                            st.affinity_counts[(t.topology_key, labels[t.topology_key])] += 1
                for t in st.anti_affinity:
                    if t.topology_key in labels and t.matches(existing, self.namespace_labels):
                        st.anti_counts[(t.topology_key, labels[t.topology_key])] += 1
        state[self.name] = st
        if not (st.affinity or st.anti_affinity or st.existing_anti_counts):
            return SKIP_FILTER  # nothing to check anywhere (upstream's PreFilter Skip)
        return SUCCESS

    def _satisfies_affinity(self, st: _State, labels: dict) -> bool:
        pods_exist = True
        for t in st.affinity:
            if t.topology_key not in labels:
                return False  # every topology key must exist on the node
            if st.affinity_counts[(t.topology_key, labels[t.topology_key])] <= 0:
                pods_exist = False
        if pods_exist:
            return True
        # The first pod of a group with affinity to itself may go anywhere.
        return not st.affinity_counts and all(t.matches(st.pod, self.namespace_labels) for t in st.affinity)

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS, or UnschedulableAndUnresolvable (affinity) / Unschedulable (anti-affinity, either side).
        Without a PreFilter ``state`` only ``node_info``'s own pods are considered."""
        st = (state or {}).get(self.name)
        if st is None:
            st_state = CycleState()
            self.pre_filter(pod, [node_info], st_state)
            st = st_state[self.name]
        labels = node_info.labels
        if st.affinity and not self._satisfies_affinity(st, labels):
            return unschedulable(self.name, ERR_REASON_AFFINITY, resolvable=False)
        if st.anti_counts:
            for t in st.anti_affinity:
                if t.topology_key in labels and st.anti_counts[(t.topology_key, labels[t.topology_key])] > 0:
                    return unschedulable(self.name, ERR_REASON_ANTI_AFFINITY)
        if st.existing_anti_counts:
            for pair in labels.items():
                if st.existing_anti_counts[pair] > 0:
                    return unschedulable(self.name, ERR_REASON_EXISTING_ANTI_AFFINITY)
        return SUCCESS

    # -- scoring ---------------------------------------------------------------------
    def pre_score(self, pod: dict, nodes: Sequence[NodeInfo], state: CycleState) -> bool | None:
        """Sum term weights per topology pair over the cluster (upstream's PreScore);
        SKIP when no term of either side applies."""
        ns = _namespace(pod)
        affinity = [(w, AffinityTerm(t, ns)) for w, t in _preferred(pod, "podAffinity")]
        anti = [(w, AffinityTerm(t, ns)) for w, t in _preferred(pod, "podAntiAffinity")]
        has_constraints = bool(affinity or anti)
        scores: collections.Counter = collections.Counter()

        def add(term: AffinityTerm, weight: int, target: dict, labels: dict) -> None:
            if weight and term.topology_key in labels and term.matches(target, self.namespace_labels):
                scores[(term.topology_key, labels[term.topology_key])] += weight

        everyone = state.get(ALL_NODES) or nodes
        if not has_constraints:
            # Only pods with affinity terms of their own can score: walk the nodes holding
            # any (upstream's havePodsWithAffinityNodeInfoList) when the snapshot lists them.
            everyone = getattr(everyone, "have_pods_with_affinity", everyone)
        for info in everyone:
            labels = info.labels
            if not labels:
                continue
            keys = info.pods if has_constraints else info.pods_with_affinity
            for key in keys:
                existing = info.pods[key]
                for w, t in affinity:
                    add(t, w, existing, labels)
                for w, t in anti:
                    add(t, -w, existing, labels)
                if key not in info.pods_with_affinity:
                    continue  # only pods with affinity terms of their own add the reverse direction
                ens = _namespace(existing)
                for t in _terms(required_affinity_terms(existing), ens):
                    add(t, HARD_POD_AFFINITY_WEIGHT, pod, labels)
                for w, t in _preferred(existing, "podAffinity"):
                    add(AffinityTerm(t, ens), w, pod, labels)
                for w, t in _preferred(existing, "podAntiAffinity"):
                    add(AffinityTerm(t, ens), -w, pod, labels)
        state[self.name + "/score"] = scores
        return None if scores else SKIP

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """Raw score: the sum of the node's topology pairs' weights (may be negative)."""
        if state is None or self.name + "/score" not in state:
            state = CycleState({ALL_NODES: [node_info]})
            self.pre_score(pod, [node_info], state)
        scores = state[self.name + "/score"]
        if not scores:
            return 0
        return sum(scores.get(pair, 0) for pair in node_info.labels.items())

    def normalize_score(self, pod: dict, scores: dict[str, int], state: CycleState | None = None) -> None:
        """Min-max scale to 0..MAX_NODE_SCORE (all 0 when every node scores the same)."""
        if not scores:
            return
        low, high = min(scores.values()), max(scores.values())
        for name, score in scores.items():
            scores[name] = int(MAX_NODE_SCORE * (score - low) / (high - low)) if high > low else 0
