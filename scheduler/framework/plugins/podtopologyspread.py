"""PodTopologySpread filter and score: spec.topologySpreadConstraints.

Mirrors pkg/scheduler/framework/plugins/podtopologyspread (filtering.go,
scoring.go) for explicit constraints:
- only nodes that carry every constraint's topology key and (nodeAffinityPolicy
  Honor, the default) match the pod's nodeSelector / required node affinity
  count; nodeTaintsPolicy Ignore (default) is the only taints policy;
- a constraint counts, per topology pair, the non-terminating pods of the
  pod's namespace its labelSelector (plus matchLabelKeys) matches;
- DoNotSchedule: placing the pod must keep ``count + self - global min <=
  maxSkew``, the global min being 0 while fewer than minDomains domains exist;
- ScheduleAnyway: score = round(sum(count * log(domains + 2) + maxSkew - 1)),
  normalized so fewer matching pods score higher.
Cluster-level default constraints (which need Service / ReplicaSet listers
to build a default selector) are not applied.
"""
from __future__ import annotations

import collections
import math
from typing import Sequence

from kubeling.api import selectors
from kubeling.api.scheduling import required_node_affinity_matches
from scheduler.framework.interface import (ALL_NODES, MAX_NODE_SCORE, SKIP, SKIP_FILTER, SUCCESS, CycleState,
                                           Status, unschedulable)
from scheduler.framework.types import NodeInfo

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = ERR_REASON_CONSTRAINTS_NOT_MATCH + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"


class Constraint:
    """One TopologySpreadConstraint compiled for the incoming pod."""

    def __init__(self, raw: dict, pod: dict):
        self.max_skew = int(raw.get("maxSkew") or 1)
        self.topology_key = raw.get("topologyKey") or ""
        self.when_unsatisfiable = raw.get("whenUnsatisfiable") or "DoNotSchedule"
        self.min_domains = int(raw.get("minDomains") or 1)
        self.honor_node_affinity = (raw.get("nodeAffinityPolicy") or "Honor") == "Honor"
        self.honor_taints = (raw.get("nodeTaintsPolicy") or "Ignore") == "Honor"
        labels = (pod.get("metadata") or {}).get("labels") or {}
        selector = raw.get("labelSelector")
        try:
            sel = selectors.label_selector_from_object(selector)
        except ValueError:
            sel = selectors.LabelSelector(nothing=True)
        keys = [k for k in raw.get("matchLabelKeys") or [] if k in labels]
        if keys and not sel.nothing:
            sel = selectors.LabelSelector(sel.requirements + tuple(
                selectors.Requirement(k, selectors.IN, (labels[k],)) for k in keys))
        self.selector = sel
        self.self_match = 1 if sel.matches(labels) else 0

    def count(self, info: NodeInfo, namespace: str) -> int:
        """Matching, non-terminating pods of ``namespace`` on the node."""
        n = 0
        for p in info.pods.values():
            meta = p.get("metadata") or {}
            if meta.get("deletionTimestamp") or (meta.get("namespace") or "default") != namespace:
                continue
            if self.selector.matches(meta.get("labels") or {}):
                n += 1
        return n


def _constraints(pod: dict, kind: str) -> list[Constraint]:
    return [c for c in (Constraint(raw or {}, pod)
                        for raw in (pod.get("spec") or {}).get("topologySpreadConstraints") or [])
            if c.when_unsatisfiable == kind]


def _eligible(pod: dict, info: NodeInfo, constraints: list[Constraint]) -> bool:
    """The node has every topology key and passes the node-inclusion policies."""
    labels = info.labels
    if any(c.topology_key not in labels for c in constraints):
        return False
    if any(c.honor_node_affinity for c in constraints) and not required_node_affinity_matches(pod, info.node or {}):
        return False
    if any(c.honor_taints for c in constraints):
        from scheduler.framework.plugins.tainttoleration import FILTERED_EFFECTS, tolerates
        tolerations = (pod.get("spec") or {}).get("tolerations")
        for taint in ((info.node or {}).get("spec") or {}).get("taints") or []:
            if taint.get("effect") in FILTERED_EFFECTS and not tolerates(tolerations, taint):
                return False
    return True


class _FilterState:
    def __init__(self, constraints: list[Constraint]):
        self.constraints = constraints
        self.pair_counts: collections.Counter = collections.Counter()
        self.domains: dict[str, set[str]] = collections.defaultdict(set)

    def min_match(self, c: Constraint) -> int:
        domains = self.domains.get(c.topology_key) or set()
        if len(domains) < c.min_domains:
            return 0
        return min((self.pair_counts[(c.topology_key, v)] for v in domains), default=0)


class PodTopologySpread:
    """Filter on DoNotSchedule constraints, score on ScheduleAnyway constraints (weight 2)."""

    name = "PodTopologySpread"
    weight = 2  # upstream's default-profile weight for PodTopologySpread

    def pre_filter(self, pod: dict, nodes: Sequence[NodeInfo], state: CycleState) -> Status:
        """Count matching pods per topology pair over the eligible nodes (upstream's PreFilter)."""
        constraints = _constraints(pod, "DoNotSchedule")
        if not constraints:
            state[self.name] = None
            return SKIP_FILTER
        st = _FilterState(constraints)
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        for info in nodes:
            if not _eligible(pod, info, constraints):
                continue
            for c in constraints:
                value = info.labels[c.topology_key]
                st.domains[c.topology_key].add(value)
                st.pair_counts[(c.topology_key, value)] += c.count(info, ns)
        state[self.name] = st
        return SUCCESS

    def filter(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> Status:
        """SUCCESS, UnschedulableAndUnresolvable (missing topology label) or Unschedulable (skew too big).
        Without a PreFilter ``state`` only ``node_info`` is counted."""
        if state is None or self.name not in state:
            state = CycleState()
            self.pre_filter(pod, [node_info], state)
        st = state[self.name]
        if st is None:
            return SUCCESS
        labels = node_info.labels
        for c in st.constraints:
            if c.topology_key not in labels:
                return unschedulable(self.name, ERR_REASON_NODE_LABEL_NOT_MATCH, resolvable=False)
        for c in st.constraints:
            skew = st.pair_counts[(c.topology_key, labels[c.topology_key])] + c.self_match - st.min_match(c)
            if skew > c.max_skew:
                return unschedulable(self.name, ERR_REASON_CONSTRAINTS_NOT_MATCH)
        return SUCCESS

    # -- scoring ---------------------------------------------------------------------
    def pre_score(self, pod: dict, nodes: Sequence[NodeInfo], state: CycleState) -> bool | None:
        """Per-pair counts over all eligible nodes and each constraint's log weight (upstream's
        PreScore); SKIP without ScheduleAnyway constraints."""
        constraints = _constraints(pod, "ScheduleAnyway")
        key = self.name + "/score"
        if not constraints:
            state[key] = None
            return SKIP
        ignored = {info.name for info in nodes if any(c.topology_key not in info.labels for c in constraints)}
        domains: dict[str, set[str]] = collections.defaultdict(set)
        for info in nodes:
            if info.name not in ignored:
                for c in constraints:
                    domains[c.topology_key].add(info.labels[c.topology_key])
        counts: collections.Counter = collections.Counter()
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        for info in state.get(ALL_NODES) or nodes:
            if not _eligible(pod, info, constraints):
                continue
            for c in constraints:
                pair = (c.topology_key, info.labels[c.topology_key])
                if pair[1] in domains[c.topology_key]:
                    counts[pair] += c.count(info, ns)
        weights = []
        for c in constraints:
            size = len(nodes) - len(ignored) if c.topology_key == HOSTNAME else len(domains[c.topology_key])
            weights.append(math.log(size + 2))
        state[key] = (constraints, counts, weights, ignored)
        return None

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """Raw score: fewer matching pods in the node's domains is lower (better)."""
        key = self.name + "/score"
        if state is None or key not in state:
            state = CycleState({ALL_NODES: [node_info]})
            self.pre_score(pod, [node_info], state)
        data = state[key]
        if data is None:
            return 0
        constraints, counts, weights, ignored = data
        if node_info.name in ignored:
            return 0
        total = 0.0
        for c, w in zip(constraints, weights):
            value = node_info.labels.get(c.topology_key)
            if value is not None:
                total += counts[(c.topology_key, value)] * w + (c.max_skew - 1)
        return round(total)

    def normalize_score(self, pod: dict, scores: dict[str, int], state: CycleState | None = None) -> None:
        """Invert so the least crowded node gets MAX_NODE_SCORE; nodes lacking a key get 0."""
        data = (state or {}).get(self.name + "/score")
        if not data:
            return
        ignored = data[3]
        valid = [s for name, s in scores.items() if name not in ignored]
        if not valid:
            for name in scores:
                scores[name] = 0
            return
        low, high = min(valid), max(valid)
        for name, s in scores.items():
            if name in ignored:
                scores[name] = 0
            elif high == 0:
                scores[name] = MAX_NODE_SCORE
            else:
                scores[name] = MAX_NODE_SCORE * (high + low - s) // high
