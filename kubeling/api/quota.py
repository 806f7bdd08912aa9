"""Quota usage of API objects, shared by the ResourceQuota admission plugin (apiserver) and the
resourcequota controller (controller-manager).

Both must count an object the same way or the admission check and the
controller's recalculation disagree, so the evaluators live here once.
Mirrors k8s.io/apiserver's ``pkg/quota/v1`` (resources.go: Add, Subtract,
Mask, LessThanOrEqual) and kubernetes' ``pkg/quota/v1/evaluator/core``
(pods.go, services.go, persistent_volume_claims.go, the object-count
evaluators and the generic ``count/<resource>.<group>`` one).

Amounts are exact ``Fraction`` values keyed by resource name (a
"ResourceList"); ``format_list`` turns them back into quantity strings for
``status.used``.
"""
from __future__ import annotations

import datetime
from fractions import Fraction
from typing import Callable, Iterable

from kubeling.api import quantity

ResourceList = dict[str, Fraction]

# Resources whose per-container presence a quota on them requires (evaluator/core/pods.go validationSet).
POD_VALIDATION_SET = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
POD_COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Resources counted by name as well as by count/<name> (the legacy object-count evaluators).
LEGACY_COUNTED = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                  "persistentvolumeclaims": "persistentvolumeclaims",
                  "replicationcontrollers": "replicationcontrollers", "resourcequotas": "resourcequotas"}
POD_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass")


def count_name(resource: str, group: str = "") -> str:
    """The object-count resource name: ``count/pods``, ``count/deployments.apps``."""
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def parse_list(rl: dict | None) -> ResourceList:
    """A ResourceList of a ``{name: quantity}`` map; unparseable quantities are left out."""
    out: ResourceList = {}
    for name, q in (rl or {}).items() if isinstance(rl, dict) else ():
        try:
            out[name] = quantity.parse_quantity(q)
        except ValueError:
            continue
    return out


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    """a + b, key by key (quota.Add)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, Fraction(0)) + v
    return out


def subtract(a: ResourceList, b: ResourceList) -> ResourceList:
    """a - b, key by key (quota.Subtract)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, Fraction(0)) - v
    return out


def mask(rl: ResourceList, names: Iterable[str]) -> ResourceList:
    """Only the entries of ``rl`` named in ``names`` (quota.Mask)."""
    keep = set(names)
    return {k: v for k, v in rl.items() if k in keep}


def less_than_or_equal(a: ResourceList, b: ResourceList) -> tuple[bool, list[str]]:
    """Whether every entry of ``a`` present in ``b`` is <= it, and the names that are not (quota.LessThanOrEqual)."""
    exceeded = sorted(k for k, v in a.items() if k in b and v > b[k])
    return not exceeded, exceeded


def format_amount(name: str, amount: Fraction) -> str:
    """Quantity text of ``amount`` of resource ``name``: ``500m`` for cpu, ``256Mi`` for memory, ``3`` for counts."""
    base = name.rsplit(".", 1)[-1] if name.startswith(("requests.", "limits.")) else name
    if base == "cpu":
        milli = amount * 1000
        return quantity.format_milli(int(milli)) if milli.denominator == 1 else str(float(amount))
    if amount.denominator != 1:
        milli = amount * 1000
        return f"{int(milli)}m" if milli.denominator == 1 else str(float(amount))
    if base in ("memory", "storage", "ephemeral-storage") or base.startswith("hugepages-"):
        return quantity.format_quantity(amount, "memory")
    return str(int(amount))


def format_list(rl: ResourceList) -> dict[str, str]:
    """``{name: quantity text}`` of a ResourceList (for status.hard / status.used)."""
    return {k: format_amount(k, v) for k, v in sorted(rl.items())}


def pretty_print(rl: ResourceList) -> str:
    """``pods=1,requests.cpu=500m``: sorted ``name=quantity`` pairs joined by commas (admission's prettyPrint)."""
    return ",".join(f"{k}={format_amount(k, v)}" for k, v in sorted(rl.items()))


# ---------------------------------------------------------------- pods


def _parse_time(text: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def pod_counts(pod: dict, *, now: Callable[[], datetime.datetime] | None = None) -> bool:
    """Whether a pod still uses quota (QuotaV1Pod): not Succeeded/Failed, and not past its deletion grace."""
    if ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted = _parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    if deleted is not None and isinstance(grace, int):
        current = now() if now else datetime.datetime.now(datetime.timezone.utc)
        if current > deleted + datetime.timedelta(seconds=grace):
            return False
    return True


def _container_usage(resources: dict | None) -> ResourceList:
    """podComputeUsageHelper for one container: requests as ``cpu``/``requests.cpu``, limits as ``limits.cpu``."""
    resources = resources if isinstance(resources, dict) else {}
    requests, limits = parse_list(resources.get("requests")), parse_list(resources.get("limits"))
    out: ResourceList = {}
    for name, v in requests.items():
        if name in POD_COMPUTE:
            out[name] = v
        out[f"requests.{name}"] = v
    for name, v in limits.items():
        out[f"limits.{name}"] = v
    return out


def _containers(spec: dict, field: str) -> list[dict]:
    return [c for c in (spec.get(field) or []) if isinstance(c, dict)]


def pod_compute_usage(pod: dict) -> ResourceList:
    """Requests and limits of a pod: sum of its containers, at least each init container's, plus overhead."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for c in _containers(spec, "containers"):
        total = add(total, _container_usage(c.get("resources")))
    for c in _containers(spec, "initContainers"):
        for k, v in _container_usage(c.get("resources")).items():
            total[k] = max(total.get(k, Fraction(0)), v)
    overhead = parse_list(spec.get("overhead"))
    if overhead:
        total = add(total, _container_usage({"requests": spec.get("overhead"), "limits": spec.get("overhead")}))
    return total


def pod_usage(pod: dict, *, now: Callable[[], datetime.datetime] | None = None) -> ResourceList:
    """Quota usage of one pod (evaluator/core/pods.go PodUsageFunc): ``count/pods`` always, the rest while it counts."""
    out: ResourceList = {"count/pods": Fraction(1)}
    if not pod_counts(pod, now=now):
        return out
    out["pods"] = Fraction(1)
    return add(out, pod_compute_usage(pod))


def pod_constraints(names: Iterable[str], pod: dict) -> str | None:
    """``must specify requests.cpu for: app; ...`` when a quota tracks compute resources a container leaves
    unset (podEvaluator.Constraints), else None."""
    required = POD_VALIDATION_SET & set(names)
    if not required:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, list[str]] = {}
    for c in _containers(spec, "initContainers") + _containers(spec, "containers"):
        have = set(_container_usage(c.get("resources")))
        for name in sorted(required - have):
            missing.setdefault(name, []).append(str(c.get("name", "")))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{k} for: {','.join(v)}" for k, v in sorted(missing.items()))


def _best_effort(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    for c in _containers(spec, "initContainers") + _containers(spec, "containers"):
        r = c.get("resources") or {}
        if isinstance(r, dict) and (r.get("requests") or r.get("limits")):
            return False
    return True


def _pod_matches_scope(scope: str, pod: dict, *, operator: str = "Exists", values: Iterable[str] = ()) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "BestEffort":
        return _best_effort(pod)
    if scope == "NotBestEffort":
        return not _best_effort(pod)
    if scope == "PriorityClass":
        pc = spec.get("priorityClassName") or ""
        vals = set(values)
        return {"Exists": True, "DoesNotExist": False, "In": pc in vals, "NotIn": pc not in vals}.get(operator, False)
    return False


def quota_matches(rq: dict, resource: str, obj: dict) -> bool:
    """Whether quota ``rq`` applies to ``obj`` by its ``spec.scopes`` and ``spec.scopeSelector`` (pods only have
    scopes; a scoped quota matches no other resource), as the evaluators' Matches."""
    spec = rq.get("spec") or {}
    scopes = [(s, "Exists", ()) for s in spec.get("scopes") or []]
    for expr in ((spec.get("scopeSelector") or {}).get("matchExpressions") or []):
        if isinstance(expr, dict):
            scopes.append((expr.get("scopeName", ""), expr.get("operator", ""), expr.get("values") or ()))
    if not scopes:
        return True
    if resource != "pods":
        return False
    return all(_pod_matches_scope(s, obj, operator=op, values=vals) for s, op, vals in scopes)


# ---------------------------------------------------------------- every resource


def usage(resource: str, group: str, obj: dict, *, now: Callable[[], datetime.datetime] | None = None) -> ResourceList:
    """Quota usage of one object of ``group``/``resource`` (the evaluator registry's Usage)."""
    if group == "" and resource == "pods":
        return pod_usage(obj, now=now)
    out: ResourceList = {count_name(resource, group): Fraction(1)}
    if group == "" and resource in LEGACY_COUNTED:
        out[resource] = Fraction(1)
    if group == "" and resource == "services":
        spec = obj.get("spec") or {}
        stype = spec.get("type") or "ClusterIP"
        if stype == "LoadBalancer":
            out["services.loadbalancers"] = Fraction(1)
        if stype in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Fraction(len(spec.get("ports") or []))
    if group == "" and resource == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        storage = parse_list((spec.get("resources") or {}).get("requests")).get("storage")
        if storage is not None:
            out["requests.storage"] = storage
            sc = spec.get("storageClassName")
            if sc:
                out[f"{sc}.storageclass.storage.k8s.io/requests.storage"] = storage
                out[f"{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Fraction(1)
    return out


def matching_resources(resource: str, group: str, names: Iterable[str]) -> list[str]:
    """The quota resource names among ``names`` that objects of ``group``/``resource`` use (MatchingResources)."""
    out = []
    own = {count_name(resource, group)}
    if group == "" and resource in LEGACY_COUNTED:
        own.add(resource)
    for n in names:
        if n in own:
            out.append(n)
        elif group == "" and resource == "pods" and (n in POD_COMPUTE or n.startswith(("requests.", "limits."))
                                                    and n != "requests.storage"):
            out.append(n)
        elif group == "" and resource == "services" and n in ("services.loadbalancers", "services.nodeports"):
            out.append(n)
        elif group == "" and resource == "persistentvolumeclaims" and (
                n == "requests.storage" or ".storageclass.storage.k8s.io/" in n):
            out.append(n)
    return sorted(out)


def constraints(resource: str, group: str, names: Iterable[str], obj: dict) -> str | None:
    """Why ``obj`` cannot be charged to a quota tracking ``names`` (None if it can): pods must name every
    tracked compute resource in each container."""
    if group == "" and resource == "pods":
        return pod_constraints(names, obj)
    return None


def tracked_resources(names: Iterable[str]) -> set[tuple[str, str]]:
    """The (group, plural) resources whose objects use any of the quota resource ``names``:
    ``pods`` for compute names, ``services`` for ``services.*``, ``count/deployments.apps`` -> apps/deployments."""
    out: set[tuple[str, str]] = set()
    for n in names:
        if n.startswith("count/"):
            plural, _, group = n[len("count/"):].partition(".")
            out.add((group, plural))
        elif n in LEGACY_COUNTED:
            out.add(("", n))
        elif n.startswith("services."):
            out.add(("", "services"))
        elif n == "requests.storage" or ".storageclass.storage.k8s.io/" in n:
            out.add(("", "persistentvolumeclaims"))
        elif n in POD_COMPUTE or n.startswith(("requests.", "limits.")):
            out.add(("", "pods"))
    return out
