"""Node-pressure eviction: when memory runs low, fail pods until it does not.

Mirrors pkg/kubelet/eviction (the eviction manager's synchronize loop) for
the memory signal: every monitoring interval the kubelet observes
``memory.available`` (here /proc/meminfo's MemAvailable, the kernel's own
estimate of what can be had without swapping; upstream derives the same
quantity from the root cgroup's working set), compares it with the hard
thresholds (``--eviction-hard memory.available<100Mi``, also ``<5%``) and,
while one is met:

- reports the node condition MemoryPressure=True (kept True for
  ``--eviction-pressure-transition-period`` after the last time a threshold
  was met, so the condition does not flap);
- evicts one pod per interval, ranked as upstream's rankMemoryPressure:
  pods whose usage exceeds their memory requests first, then lower
  priority, then the largest usage above requests; an evicted pod's
  containers are killed at once (hard thresholds allow no grace period)
  and its phase becomes Failed with reason ``Evicted``;
- makes the kubelet refuse new BestEffort pods (upstream's admission
  handler: "The node had condition: [MemoryPressure].").

This module is pure: observations in, decisions out; the kubelet does the I/O.
"""
from __future__ import annotations

import dataclasses
import re

from kubeling.api import quantity

SIGNAL_MEMORY = "memory.available"
DEFAULT_HARD = "memory.available<100Mi"


@dataclasses.dataclass(frozen=True)
class Threshold:
    """``signal < quantity`` (bytes) or ``signal < percentage`` (of capacity, 0..1)."""

    signal: str
    quantity: int | None = None
    percentage: float | None = None

    def value(self, capacity: int) -> int:
        """The threshold in bytes for a node of ``capacity`` bytes."""
        return self.quantity if self.quantity is not None else int(capacity * (self.percentage or 0))

    def text(self, capacity: int) -> str:
        """Upstream's rendering of the threshold quantity in messages, e.g. ``100Mi``."""
        return _format_bytes(self.value(capacity))


def parse_thresholds(text: str) -> list[Threshold]:
    """``memory.available<100Mi,memory.available<5%`` -> Thresholds. Raises ValueError (one line)
    for an unknown signal, an operator other than ``<``, or a bad quantity."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"([a-z.]+)<(.+)", part)
        if not m:
            raise ValueError(f"invalid eviction threshold {part!r}: want SIGNAL<QUANTITY")
        signal, value = m.group(1), m.group(2).strip()
        if signal != SIGNAL_MEMORY:
            raise ValueError(f"unsupported eviction signal {signal!r} (kubeling supports {SIGNAL_MEMORY})")
        if value.endswith("%"):
            try:
                pct = float(value[:-1]) / 100
            except ValueError:
                raise ValueError(f"invalid eviction threshold percentage {value!r}") from None
            if not 0 < pct <= 1:
                raise ValueError(f"eviction threshold percentage {value!r} must be in (0%, 100%]")
            out.append(Threshold(signal, percentage=pct))
        else:
            try:
                out.append(Threshold(signal, quantity=int(quantity.value(value))))
            except (ValueError, TypeError):
                raise ValueError(f"invalid eviction threshold quantity {value!r}") from None
    return out


def _format_bytes(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n // 1024}Ki" if n >= 1024 else str(n)


def memory_requests(pod: dict) -> int:
    """Sum of the containers' memory requests in bytes (limits stand in when requests are unset)."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req = (res.get("requests") or {}).get("memory") or (res.get("limits") or {}).get("memory")
        if req:
            total += int(quantity.value(req))
    return total


def qos_class(pod: dict) -> str:
    """BestEffort when no container requests or limits anything, else Burstable or Guaranteed
    (mirrors v1qos.GetPodQOS for cpu and memory)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if not lim.get(r) or (req.get(r) and quantity.value(req[r]) != quantity.value(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def rank_for_memory_pressure(pods: list[dict], usage: dict[str, int]) -> list[dict]:
    """``pods`` in eviction order (upstream's rankMemoryPressure): usage above requests first,
    then lower ``spec.priority``, then the largest usage above requests. ``usage`` maps pod uid
    to working-set bytes (pods without stats count as 0)."""
    def key(pod: dict):
        uid = pod["metadata"].get("uid", "")
        used = usage.get(uid, 0)
        over = used - memory_requests(pod)
        return (0 if over > 0 else 1, int((pod.get("spec") or {}).get("priority") or 0), -over)
    return sorted(pods, key=key)


@dataclasses.dataclass
class Decision:
    """One synchronize's outcome: pressure now, and the pod to evict (with its message), if any."""

    under_pressure: bool
    evict: dict | None = None
    message: str = ""


class EvictionManager:
    """Tracks memory pressure and picks pods to evict (the kubelet calls ``synchronize``)."""

    def __init__(self, thresholds: list[Threshold], *, pressure_transition_period: float = 300.0):
        self.thresholds = [t for t in thresholds if t.signal == SIGNAL_MEMORY]
        self.pressure_transition_period = pressure_transition_period
        self._last_met: float | None = None

    def met(self, available: int, capacity: int) -> Threshold | None:
        """The first threshold that ``available`` bytes fall under, else None."""
        for t in self.thresholds:
            if available < t.value(capacity):
                return t
        return None

    def under_pressure(self, now: float) -> bool:
        """MemoryPressure: a threshold was met within the transition period."""
        return self._last_met is not None and now - self._last_met < self.pressure_transition_period

    def synchronize(self, *, now: float, available: int, capacity: int, pods: list[dict],
                    usage: dict[str, int]) -> Decision:
        """Observe ``available`` of ``capacity`` bytes; when a threshold is met, pick the first
        pod of ``pods`` (the active ones) in memory-pressure order to evict."""
        t = self.met(available, capacity)
        if t is not None:
            self._last_met = now
        pressure = self.under_pressure(now)
        if t is None or not pods:
            return Decision(pressure)
        victim = rank_for_memory_pressure(pods, usage)[0]
        used = usage.get(victim["metadata"].get("uid", ""), 0)
        message = (f"The node was low on resource: memory. Threshold quantity: {t.text(capacity)}, "
                   f"available: {available // 1024}Ki. Container usage: {used // 1024}Ki, "
                   f"request: {memory_requests(victim) // 1024}Ki.")
        return Decision(pressure, victim, message)

    def admit(self, pod: dict, *, now: float) -> str | None:
        """Why a new pod may not start on this node now (None: it may): under memory pressure
        only BestEffort pods are refused, as upstream's eviction admission handler."""
        if self.under_pressure(now) and qos_class(pod) == "BestEffort":
            return "The node had condition: [MemoryPressure]."
        return None
