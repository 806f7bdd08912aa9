"""Pure arithmetic of Deployments: template hashes, revisions, surge and
unavailability limits, how many replicas the new ReplicaSet may have, and
the Deployment status computed from its ReplicaSets.

Mirrors pkg/controller/deployment/util/deployment_util.go and
pkg/controller/controller_utils.go's ComputeHash. Functions take and return
plain dicts and ints; nothing here talks to the API.
"""
from __future__ import annotations

import copy
import json
import math

from kubeling.client.record import now_rfc3339
from controllers.controller_utils import parse_time

DEFAULT_POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
# Annotations of the Deployment never copied to its ReplicaSets (skipCopyAnnotation).
_SKIP_COPY = {"kubectl.kubernetes.io/last-applied-configuration", REVISION_ANNOTATION,
              "deployment.kubernetes.io/revision-history", DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION,
              "deprecated.deployment.rollback.to"}
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
# Reasons of the Progressing condition (deploymentutil's TimedOutReason, PausedDeployReason, ResumedDeployReason).
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
_MAX_INT32 = 2 ** 31 - 1


def fnv32a(data: bytes) -> int:
    """FNV-1a 32-bit hash (Go's hash/fnv New32a)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """apimachinery rand.SafeEncodeString: map each byte onto consonants and digits
    so the result cannot spell words and is a valid label value."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in s.encode())


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """The pod-template-hash of a pod template (controller.ComputeHash): FNV-1a over
    a canonical JSON encoding (upstream hashes a spew dump), plus the collision
    count when set, printed in decimal and safe-encoded (e.g. ``"5d4f8b9c6"``)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += int(collision_count).to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: dict | None) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(DEFAULT_POD_TEMPLATE_HASH_LABEL, None)
        if not labels:
            del t["metadata"]["labels"]
    if "metadata" in t and not t["metadata"]:
        del t["metadata"]
    return t


def equal_ignore_hash(t1: dict | None, t2: dict | None) -> bool:
    """Whether two pod templates are equal apart from the pod-template-hash label."""
    return _without_hash(t1) == _without_hash(t2)


def revision(obj: dict) -> int:
    """The revision annotation as an int (0 when absent or malformed)."""
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def max_revision(rss: list[dict]) -> int:
    """Highest revision among ``rss`` (0 for none)."""
    return max((revision(rs) for rs in rss), default=0)


def replicas(obj: dict) -> int:
    """spec.replicas (default 1, as the apiserver defaults it)."""
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def _status(rs: dict, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def scaled_value(value: int | str | None, total: int, *, round_up: bool, default: str = "25%") -> int:
    """An IntOrString (``2`` or ``"25%"``) resolved against ``total``
    (intstr.GetScaledValueFromIntOrPercent). Raises ValueError for a malformed string."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    s = str(value)
    if not s.endswith("%"):
        try:
            return int(s)
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {s!r}") from None
    pct = int(s[:-1])
    exact = pct * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def is_rolling(d: dict) -> bool:
    """The strategy is RollingUpdate (the default)."""
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") != "Recreate"


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers: surge rounds up, unavailable down;
    both zero becomes unavailable 1 so a rollout can progress (ResolveFenceposts)."""
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge"), desired, round_up=True)
    unavailable = scaled_value(ru.get("maxUnavailable"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    """Pods allowed above spec.replicas during a rolling update (0 for Recreate)."""
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict) -> int:
    """Pods allowed to be unavailable, at most spec.replicas (0 for Recreate or 0 replicas)."""
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def new_rs_new_replicas(d: dict, all_rss: list[dict], new_rs: dict) -> int:
    """How many replicas the new ReplicaSet should have now (NewRSNewReplicas):
    Recreate jumps to spec.replicas; RollingUpdate adds at most up to
    spec.replicas + maxSurge pods in total."""
    if not is_rolling(d):
        return replicas(d)
    current = sum(replicas(rs) for rs in all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + max(scale_up, 0)


def filter_active(rss: list[dict]) -> list[dict]:
    """ReplicaSets with spec.replicas > 0."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def creation_key(rs: dict) -> tuple:
    """Sort key: oldest first (controller.ReplicaSetsByCreationTimestamp)."""
    meta = rs.get("metadata") or {}
    return (parse_time(meta.get("creationTimestamp")) or 0.0, meta.get("name", ""))


def replica_set_fraction(rs: dict, d: dict) -> int:
    """How much ``rs`` should change in a proportional scale (getReplicaSetFraction)."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = ((rs.get("metadata") or {}).get("annotations") or {}).get(MAX_REPLICAS_ANNOTATION)
    try:
        annotated_replicas = int(annotated)
    except (TypeError, ValueError):
        annotated_replicas = int((d.get("status") or {}).get("replicas") or 0)
    if annotated_replicas <= 0:
        return 0
    new_size = replicas(rs) * deployment_replicas / annotated_replicas
    return int(math.floor(new_size + 0.5)) - replicas(rs)


def proportional_sizes(d: dict, active: list[dict]) -> dict[str, int]:
    """New spec.replicas per ReplicaSet name when a Deployment with several
    active ReplicaSets is scaled mid-rollout (the proportional part of dc.scale)."""
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - sum(replicas(rs) for rs in active)
    if to_add > 0:  # larger first, newer first
        ordered = sorted(active, key=lambda rs: (-replicas(rs), -creation_key(rs)[0]))
    else:  # larger first, older first
        ordered = sorted(active, key=lambda rs: (-replicas(rs), creation_key(rs)))
    sizes, added = {}, 0
    for rs in ordered:
        proportion = 0
        if to_add != 0 and added != to_add and replicas(rs) != 0:
            fraction = replica_set_fraction(rs, d)
            allowed_left = to_add - added
            proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
        sizes[rs["metadata"]["name"]] = replicas(rs) + proportion
        added += proportion
    if ordered and added != to_add:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


def set_replicas_annotations(rs: dict, desired: int, max_replicas: int) -> bool:
    """Set desired-replicas / max-replicas on ``rs`` in place; True when changed."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, val in ((DESIRED_REPLICAS_ANNOTATION, str(desired)), (MAX_REPLICAS_ANNOTATION, str(max_replicas))):
        if ann.get(key) != val:
            ann[key] = val
            changed = True
    return changed


def set_new_rs_annotations(d: dict, rs: dict, new_revision: int, *, exists: bool) -> bool:
    """Copy the Deployment's annotations to ``rs`` and raise its revision to
    ``new_revision`` (SetNewReplicaSetAnnotations); a new RS also gets the
    replica annotations. In place; True when changed."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in _SKIP_COPY and ann.get(k) != v:
            ann[k] = v
            changed = True
    if revision(rs) < new_revision:
        ann[REVISION_ANNOTATION] = str(new_revision)
        changed = True
    if not exists:
        set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d))
        changed = True
    return changed


# -- status ---------------------------------------------------------------------------------
def get_condition(status: dict, ctype: str) -> dict | None:
    """The condition of type ``ctype`` in ``status``, or None."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def set_condition(status: dict, ctype: str, cstatus: str, reason: str, message: str, *,
                  refresh: bool = False) -> None:
    """Set a condition in place (SetDeploymentCondition): unchanged status and
    reason keep the old entry unless ``refresh``; the same status keeps lastTransitionTime."""
    current = get_condition(status, ctype)
    if current and current.get("status") == cstatus and current.get("reason") == reason and not refresh:
        return
    now = now_rfc3339()
    transition = current.get("lastTransitionTime") if current and current.get("status") == cstatus else now
    cond = {"type": ctype, "status": cstatus, "lastUpdateTime": now, "lastTransitionTime": transition,
            "reason": reason, "message": message}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype] + [cond]


def calculate_status(all_rss: list[dict], new_rs: dict | None, d: dict) -> dict:
    """Deployment status from its ReplicaSets (calculateStatus), including the Available condition."""
    old = d.get("status") or {}
    available = sum(_status(rs, "availableReplicas") for rs in all_rss)
    total_spec = sum(replicas(rs) for rs in all_rss)
    status = {
        "observedGeneration": (d.get("metadata") or {}).get("generation", 0),
        "replicas": sum(_status(rs, "replicas") for rs in all_rss),
        "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total_spec - available, 0),
        "conditions": copy.deepcopy(old.get("conditions") or []),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        set_condition(status, "Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.")
    return status


def deployment_complete(d: dict, status: dict) -> bool:
    """All replicas updated and available, no old ones left, generation observed (DeploymentComplete)."""
    want = replicas(d)
    return (status.get("updatedReplicas") == want and status.get("replicas") == want
            and status.get("availableReplicas") == want
            and status.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 0))


def deployment_progressing(d: dict, status: dict) -> bool:
    """Whether ``status`` shows progress compared with d.status (DeploymentProgressing)."""
    old = d.get("status") or {}

    def g(s: dict, k: str) -> int:
        return int(s.get(k) or 0)

    return (g(status, "updatedReplicas") > g(old, "updatedReplicas")
            or g(status, "replicas") - g(status, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(status, "readyReplicas") > g(old, "readyReplicas")
            or g(status, "availableReplicas") > g(old, "availableReplicas"))


def has_progress_deadline(d: dict) -> bool:
    """spec.progressDeadlineSeconds is set and not MaxInt32 (HasProgressDeadline)."""
    v = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return v is not None and v != _MAX_INT32


def remove_condition(status: dict, ctype: str) -> None:
    """Drop the condition of type ``ctype`` from ``status`` in place (RemoveDeploymentCondition)."""
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != ctype]


def deployment_timed_out(d: dict, status: dict, now: float) -> bool:
    """Whether the rollout made no progress for progressDeadlineSeconds since the Progressing
    condition's lastUpdateTime (DeploymentTimedOut); ``now`` in epoch seconds."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    last = parse_time(cond.get("lastUpdateTime"))
    return last is not None and last + d["spec"]["progressDeadlineSeconds"] < now


def stuck_requeue_after(d: dict, status: dict, now: float) -> float | None:
    """Seconds until a stuck rollout must be checked for its deadline again, 0 for "now (rate limited)",
    None when no check is due (requeueStuckDeployment): no deadline or Progressing condition,
    complete, or already timed out."""
    cond = get_condition(d.get("status") or {}, "Progressing")
    if not has_progress_deadline(d) or cond is None:
        return None
    if deployment_complete(d, status) or cond.get("reason") == TIMED_OUT_REASON:
        return None
    last = parse_time(cond.get("lastUpdateTime"))
    if last is None:
        return None
    after = last + d["spec"]["progressDeadlineSeconds"] - now
    return 0.0 if after < 1.0 else after + 1.0
