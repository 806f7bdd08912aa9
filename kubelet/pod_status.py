"""Turning what the runtime reports about a pod into the API's PodStatus.

Pure functions, no I/O: the kubelet's status manager calls
``generate_api_pod_status`` after each sync and writes the result only when
it differs from what the apiserver has. Mirrors kubelet_pods.go
(generateAPIPodStatus, convertToAPIContainerStatuses, getPhase),
pkg/kubelet/status/generate.go (the Initialized / ContainersReady / Ready
conditions) and pkg/apis/core/v1/helper/qos (GetPodQOS).
"""
from __future__ import annotations

import datetime

from kubelet.container import (STATE_CREATED, STATE_EXITED, STATE_RUNNING, ContainerStatus,
                               PodStatus)

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL_PHASES = (SUCCEEDED, FAILED)


def rfc3339(ts: float) -> str:
    """Seconds since the epoch -> ``2024-05-01T12:00:00Z`` (API timestamps are whole seconds)."""
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def should_restart(container: dict, pod: dict, latest: ContainerStatus | None) -> bool:
    """Whether the latest run of ``container`` should be followed by another
    (mirrors kubecontainer.ShouldContainerBeRestarted): never-started
    containers always start; exited ones per the pod's restartPolicy."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    if latest is None or latest.state not in (STATE_EXITED,):
        return latest is None or latest.state != STATE_RUNNING
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return latest.exit_code != 0
    return True


def should_restart_init(pod: dict, latest: ContainerStatus | None) -> bool:
    """Init containers: a run that exited 0 is done; a failed one is retried
    unless restartPolicy is Never."""
    if latest is None:
        return True
    if latest.state == STATE_EXITED:
        return latest.exit_code != 0 and pod.get("spec", {}).get("restartPolicy", "Always") != "Never"
    return latest.state != STATE_RUNNING


def _convert_state(c: ContainerStatus) -> dict:
    if c.state == STATE_RUNNING:
        return {"running": {"startedAt": rfc3339(c.started_at or c.created_at)}}
    if c.state == STATE_EXITED:
        reason = c.reason or ("Completed" if c.exit_code == 0 else "Error")
        term = {"exitCode": c.exit_code, "reason": reason, "containerID": f"docker://{c.id}"}
        if c.message:
            term["message"] = c.message
        if c.started_at:
            term["startedAt"] = rfc3339(c.started_at)
        if c.finished_at:
            term["finishedAt"] = rfc3339(c.finished_at)
        return {"terminated": term}
    if c.state == STATE_CREATED:
        return {"waiting": {"reason": "ContainerCreating"}}
    return {"waiting": {}}


def convert_container_statuses(pod: dict, containers: list[dict], runtime: PodStatus, *,
                               reasons: dict[str, tuple[str, str]], ready: dict[str, bool],
                               is_init: bool, default_reason: str) -> list[dict]:
    """API ContainerStatus list for ``containers`` (spec order).

    ``reasons`` maps a container name to the (reason, message) of its last
    failed start (ErrImagePull, CrashLoopBackOff ...), ``ready`` to the
    readiness probe result for containers that have a readinessProbe.
    Mirrors convertToAPIContainerStatuses.
    """
    out = []
    for spec in containers:
        name = spec["name"]
        runs = runtime.all_of(name)
        status: dict = {"name": name, "image": spec.get("image", ""), "imageID": "",
                        "ready": False, "restartCount": 0, "started": False,
                        "state": {"waiting": {"reason": default_reason}}, "lastState": {}}
        latest = runs[0] if runs else None
        if latest is not None:
            status.update(imageID=latest.image_ref or latest.image, containerID=f"docker://{latest.id}",
                          restartCount=latest.restart_count, state=_convert_state(latest))
            if len(runs) > 1:
                status["lastState"] = _convert_state(runs[1])
            status["started"] = latest.state == STATE_RUNNING
        restart = (should_restart_init(pod, latest) if is_init else should_restart(spec, pod, latest))
        if restart and name in reasons:
            reason, message = reasons[name]
            if "terminated" in status["state"]:
                status["lastState"] = status["state"]
            status["state"] = {"waiting": {"reason": reason, "message": message} if message
                               else {"reason": reason}}
        if is_init:
            term = status["state"].get("terminated")
            status["ready"] = bool(term and term.get("exitCode") == 0)
        elif "running" in status["state"]:
            status["ready"] = ready.get(name, True) if spec.get("readinessProbe") else True
        out.append(status)
    return out


def get_phase(pod: dict, init_statuses: list[dict], statuses: list[dict], *,
              pod_is_terminal: bool = False) -> str:
    """The pod phase from its container statuses (mirrors kubelet_pods.go getPhase)."""
    spec = pod.get("spec", {})
    policy = spec.get("restartPolicy", "Always")
    pending_init = failed_init = 0
    for st in init_statuses:
        state, last = st.get("state", {}), st.get("lastState", {})
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif "waiting" in state and "terminated" in last:
            if last["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        else:
            pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    for st in statuses:
        state, last = st.get("state", {}), st.get("lastState", {})
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return FAILED
    any_started = any("running" in st.get("state", {}) or "terminated" in st.get("state", {})
                      or "terminated" in st.get("lastState", {}) for st in statuses)
    if (pending_init > 0 and not any_started) or waiting > 0:
        return PENDING
    if running > 0 and unknown == 0:
        return RUNNING
    if running == 0 and stopped > 0 and unknown == 0:
        if pod_is_terminal:
            return SUCCEEDED if stopped == succeeded else FAILED
        if policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if policy == "Never":
            return FAILED
        return RUNNING
    return PENDING


def qos_class(pod: dict) -> str:
    """Guaranteed / Burstable / BestEffort from requests and limits (mirrors GetPodQOS)."""
    containers = pod.get("spec", {}).get("containers", []) + pod.get("spec", {}).get("initContainers", [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits:
                guaranteed = False
            elif requests.get(r, limits[r]) != limits[r]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> dict:
    cond = {"type": ctype, "status": "True" if ok else "False"}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def generate_conditions(pod: dict, phase: str, init_statuses: list[dict], statuses: list[dict], *,
                        sandbox_ready: bool) -> list[dict]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled
    (without lastTransitionTime; see ``carry_transition_times``). Mirrors status/generate.go."""
    conds = [_condition("PodReadyToStartContainers", sandbox_ready)]
    not_init = [s["name"] for s in init_statuses if not s.get("ready")]
    if not init_statuses or (phase == SUCCEEDED) or not not_init:
        conds.append(_condition("Initialized", True, "PodCompleted" if phase == SUCCEEDED and init_statuses else ""))
    else:
        conds.append(_condition("Initialized", False, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(not_init)}]"))
    unready = [s["name"] for s in statuses if not s.get("ready")]
    if phase == SUCCEEDED:
        cr = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        cr = _condition("ContainersReady", False, "ContainersNotReady",
                        f"containers with unready status: [{' '.join(unready)}]")
    else:
        cr = _condition("ContainersReady", True)
    ready = dict(cr, type="Ready")
    conds += [ready, cr, _condition("PodScheduled", True)]
    return conds


def carry_transition_times(new: list[dict], old: list[dict], now: str) -> list[dict]:
    """Keep each condition's lastTransitionTime when its status did not change;
    stamp ``now`` otherwise; also set lastProbeTime null as upstream does."""
    old_by_type = {c.get("type"): c for c in old or []}
    for c in new:
        prev = old_by_type.get(c["type"])
        if prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            c["lastTransitionTime"] = now
        c["lastProbeTime"] = None
    return new


def generate_api_pod_status(pod: dict, runtime: PodStatus, *, node_ip: str, now: float,
                            reasons: dict[str, tuple[str, str]] | None = None,
                            ready: dict[str, bool] | None = None,
                            pod_is_terminal: bool = False) -> dict:
    """The full v1 PodStatus for ``pod`` given its runtime state.

    ``now`` is seconds since the epoch (used for startTime and transition
    times). A pod whose old status is terminal keeps its phase (phases never
    go back). Mirrors generateAPIPodStatus.
    """
    reasons = reasons or {}
    ready = ready or {}
    spec = pod.get("spec", {})
    old = pod.get("status") or {}
    init_done = all(
        (c := runtime.find(ic["name"])) is not None and c.state == STATE_EXITED and c.exit_code == 0
        for ic in spec.get("initContainers", []))
    init_statuses = convert_container_statuses(pod, spec.get("initContainers", []), runtime,
                                               reasons=reasons, ready=ready, is_init=True,
                                               default_reason="PodInitializing")
    statuses = convert_container_statuses(pod, spec.get("containers", []), runtime, reasons=reasons,
                                          ready=ready, is_init=False,
                                          default_reason="ContainerCreating" if init_done else "PodInitializing")
    phase = get_phase(pod, init_statuses, statuses, pod_is_terminal=pod_is_terminal)
    if old.get("phase") in TERMINAL_PHASES:
        phase = old["phase"]
    sandbox_ready = any(s.ready for s in runtime.sandboxes)
    now_s = rfc3339(now)
    conds = generate_conditions(pod, phase, init_statuses, statuses, sandbox_ready=sandbox_ready)
    status: dict = {
        "phase": phase,
        "conditions": carry_transition_times(conds, old.get("conditions", []), now_s),
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "startTime": old.get("startTime") or now_s,
        "qosClass": qos_class(pod),
        "containerStatuses": statuses,
    }
    pod_ip = node_ip if spec.get("hostNetwork") else runtime.ip
    if not pod_ip and phase in TERMINAL_PHASES:
        pod_ip = old.get("podIP", "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if spec.get("ephemeralContainers"):
        eph = convert_container_statuses(pod, spec["ephemeralContainers"], runtime, reasons=reasons, ready={},
                                         is_init=False, default_reason="ContainerCreating")
        for s in eph:  # never ready, never restarted (upstream's ephemeralContainerStatuses)
            s["ready"] = False
            s["restartCount"] = 0
        status["ephemeralContainerStatuses"] = eph
    return status


def strip_times(status: dict) -> dict:
    """``status`` without condition timestamps, to compare two statuses for a real change."""
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
                         for c in status.get("conditions", [])]
    return out
