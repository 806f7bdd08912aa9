"""The LimitRanger admission plugin: default requests/limits from LimitRange objects, then min/max checks.

Mirrors plugin/pkg/admission/limitranger: on pod create every container
missing a request or limit gets the ``defaultRequest`` / ``default`` of the
namespace's LimitRange items of type Container (and the annotation
``kubernetes.io/limit-ranger`` saying what was set); then each item's
``min``, ``max`` and ``maxLimitRequestRatio`` are enforced per Container
and, summed over containers, per Pod; PersistentVolumeClaims are checked
against items of type PersistentVolumeClaim. Messages are upstream's
(``minimum cpu usage per Container is 100m, but request is 50m``), several
at once as ``[a, b]`` (utilerrors.NewAggregate).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Awaitable, Callable

from apiserver.admission import Attributes, forbidden, resource_name
from kubeling.api import quota

LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"

LimitRangeLister = Callable[[str], Awaitable[list[dict]]]


def _items(limit_ranges: list[dict], kind: str) -> list[dict]:
    out = []
    for lr in limit_ranges:
        for item in ((lr.get("spec") or {}).get("limits") or []):
            if isinstance(item, dict) and item.get("type") == kind:
                out.append(item)
    return out


def _amount(rl: dict, name: str) -> Fraction | None:
    """The parsed quantity of ``name`` in a requests/limits map; None when absent or unreadable."""
    return quota.parse_list({name: rl[name]}).get(name) if name in rl else None


def min_constraint(kind: str, name: str, enforced, request: dict, limit: dict) -> str | None:
    """minConstraint: the request (and limit, if any) must be at least ``enforced``."""
    want, req, lim = _amount({name: enforced}, name), _amount(request, name), _amount(limit, name)
    if want is None:
        return None
    prefix = f"minimum {name} usage per {kind} is {enforced}"
    if name not in request:
        return f"{prefix}.  No request is specified"
    if (req or 0) < want:
        return f"{prefix}, but request is {request[name]}"
    if lim is not None and lim < want:
        return f"{prefix}, but limit is {limit[name]}"
    return None


def max_constraint(kind: str, name: str, enforced, request: dict, limit: dict) -> str | None:
    """maxConstraint: a limit must be given and be at most ``enforced`` (and the request too)."""
    want, req, lim = _amount({name: enforced}, name), _amount(request, name), _amount(limit, name)
    if want is None:
        return None
    prefix = f"maximum {name} usage per {kind} is {enforced}"
    if name not in limit:
        return f"{prefix}.  No limit is specified"
    if (lim or 0) > want:
        return f"{prefix}, but limit is {limit[name]}"
    if req is not None and req > want:
        return f"{prefix}, but request is {request[name]}"
    return None


def ratio_constraint(kind: str, name: str, enforced, request: dict, limit: dict) -> str | None:
    """limitRequestRatioConstraint: limit / request must not exceed ``enforced``."""
    want, req, lim = _amount({name: enforced}, name), _amount(request, name), _amount(limit, name)
    if want is None:
        return None
    prefix = f"{name} max limit to request ratio per {kind} is {enforced}"
    if not req:
        return f"{prefix}, but no request is specified or request is 0"
    if not lim:
        return f"{prefix}, but no limit is specified or limit is 0"
    if lim / req > want:
        return f"{prefix}, but provided ratio is {float(lim / req):f}"
    return None


def check_item(kind: str, item: dict, request: dict, limit: dict) -> list[str]:
    """Every min / max / maxLimitRequestRatio violation of ``request``/``limit`` against one LimitRange item."""
    out = []
    for field, check in (("min", min_constraint), ("max", max_constraint),
                         ("maxLimitRequestRatio", ratio_constraint)):
        for name, enforced in sorted((item.get(field) or {}).items()):
            err = check(kind, name, enforced, request, limit)
            if err:
                out.append(err)
    return out


def default_container_resources(pod: dict, items: list[dict]) -> list[str]:
    """Fill missing container requests/limits from the items' defaultRequest/default, in place;
    returns what was set, e.g. ``["cpu request for container app"]`` (mergePodResourceRequirements)."""
    default_req: dict = {}
    default_lim: dict = {}
    for item in items:
        for name, q in (item.get("defaultRequest") or {}).items():
            default_req.setdefault(name, q)
        for name, q in (item.get("default") or {}).items():
            default_lim.setdefault(name, q)
    if not default_req and not default_lim:
        return []
    spec = pod.get("spec") or {}
    done = []
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if not isinstance(c, dict):
                continue
            res = c.get("resources")
            if not isinstance(res, dict):
                res = c["resources"] = {}
            for key, defaults, what in (("requests", default_req, "request"), ("limits", default_lim, "limit")):
                have = res.get(key)
                if not isinstance(have, dict):
                    have = {}
                added = False
                for name, q in sorted(defaults.items()):
                    if name not in have:
                        have[name] = q
                        added = True
                        done.append(f"{name} {what} for {'init container' if field == 'initContainers' else 'container'} "
                                    f"{c.get('name', '')}")
                if added or key in res:
                    res[key] = have
    return done


def _sum(pod: dict, key: str) -> dict:
    total: quota.ResourceList = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        if isinstance(c, dict):
            total = quota.add(total, quota.parse_list(((c.get("resources") or {}).get(key))))
    return {k: quota.format_amount(k, v) for k, v in total.items()}


class LimitRanger:
    """Admission plugin applying LimitRange defaults and limits; ``limit_ranges(ns)`` lists a namespace's LimitRanges."""

    name = "LimitRanger"

    def __init__(self, limit_ranges: LimitRangeLister):
        self.limit_ranges = limit_ranges

    async def admit(self, attrs: Attributes, obj: dict | None, old: dict | None) -> None:
        """On pod create: default then validate containers and the pod; on PVC create/update: validate storage."""
        resource = resource_name(attrs)
        if attrs.subresource or obj is None or not attrs.namespace:
            return
        if resource == "pods" and attrs.operation == "create":
            ranges = await self.limit_ranges(attrs.namespace)
            if ranges:
                self._admit_pod(attrs, obj, ranges)
        elif resource == "persistentvolumeclaims" and attrs.operation in ("create", "update"):
            ranges = await self.limit_ranges(attrs.namespace)
            errs = []
            for item in _items(ranges, "PersistentVolumeClaim"):
                res = (obj.get("spec") or {}).get("resources") or {}
                errs += check_item("PersistentVolumeClaim", item, res.get("requests") or {}, res.get("requests") or {})
            self._raise(attrs, errs)

    def _admit_pod(self, attrs: Attributes, pod: dict, ranges: list[dict]) -> None:
        container_items = _items(ranges, "Container")
        done = default_container_resources(pod, container_items)
        if done:
            ann = pod.setdefault("metadata", {}).setdefault("annotations", {})
            ann[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(done)
        errs: list[str] = []
        spec = pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if not isinstance(c, dict):
                continue
            res = c.get("resources") or {}
            for item in container_items:
                errs += check_item("Container", item, res.get("requests") or {}, res.get("limits") or {})
        pod_items = _items(ranges, "Pod")
        if pod_items:
            req, lim = _sum(pod, "requests"), _sum(pod, "limits")
            for item in pod_items:
                errs += check_item("Pod", item, req, lim)
        self._raise(attrs, errs)

    @staticmethod
    def _raise(attrs: Attributes, errs: list[str]) -> None:
        if errs:
            raise forbidden(attrs, errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
