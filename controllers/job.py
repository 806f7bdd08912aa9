"""The Job controller: runs pods to completion.

Mirrors pkg/controller/job/job_controller.go (syncJob / manageJob) for
NonIndexed and Indexed Jobs: pods are claimed by the Job's generated
selector and controllerRef, counted as active / succeeded / failed, and the
controller creates pods until ``spec.completions`` succeeded (at most
``spec.parallelism`` at once), recreating failed ones after an exponential
back-off (10 s doubling, 6 min cap) until more than ``spec.backoffLimit``
failed. A Job that ran longer than ``spec.activeDeadlineSeconds`` fails too.
Terminal states are written as upstream 1.31+ does: ``SuccessCriteriaMet``
then ``Complete`` (reason CompletionsReached), ``FailureTarget`` then
``Failed`` (reason BackoffLimitExceeded or DeadlineExceeded), each once the
Job's remaining active pods are deleted. ``spec.suspend`` deletes the active
pods and records the ``Suspended`` condition.

Not modelled: pod failure policies, backoffLimitPerIndex, success policies,
podReplacementPolicy (a terminating pod counts as gone, i.e. the
TerminatingOrFailed policy), and finalizer-based tracking of pods deleted
before they were counted (counts come from the pods that still exist, as
the pre-1.26 "legacy tracking" did).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from kubeling.client import ApiError, Client, Informer, deep_copy, meta_key, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from controllers.controller_utils import (BaseController, ControllerExpectations, claim_objects, controller_ref,
                                          get_controller_of, is_pod_ready, parse_time, pod_delete_rank,
                                          resolve_controller_ref, rfc3339, write_status)
from controllers.replicaset import BURST_REPLICAS, SLOW_START_INITIAL_BATCH, slow_start_batch

log = logging.getLogger(__name__)

# Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 360.0
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETE_MESSAGE = "Reached expected number of succeeded pods"


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _finished_at(pod: dict) -> float:
    """When a terminated pod's last container finished (else its creation time)."""
    ends = [parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for c in (pod.get("status") or {}).get("containerStatuses") or []]
    ends = [e for e in ends if e is not None]
    return max(ends) if ends else (parse_time(pod["metadata"].get("creationTimestamp")) or 0.0)


def condition(job: dict, ctype: str) -> dict | None:
    """The Job's condition of ``ctype`` if its status is True."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def is_finished(job: dict) -> bool:
    """Complete or Failed (job.IsJobFinished)."""
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


def completion_index(pod: dict) -> int | None:
    """The pod's completion index annotation of an Indexed Job, or None."""
    try:
        return int(((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX))
    except (TypeError, ValueError):
        return None


def pod_failure_backoff(failures: int, *, base: float = POD_FAILURE_BACKOFF,
                        cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
    """Seconds to wait after the ``failures``-th failure before a new pod: base * 2^(failures-1), capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * (2 ** min(failures - 1, 20)))


def pod_from_template(job: dict, *, index: int | None = None) -> dict:
    """A pod of ``job``: the template's labels, annotations and spec, generateName ``<job>-``
    (``<job>-<index>-`` and the completion-index annotation, JOB_COMPLETION_INDEX env and
    hostname ``<job>-<index>`` for Indexed Jobs), and the Job as controller."""
    template = (job.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = job["metadata"]["name"]
    meta = {"generateName": f"{name}-", "namespace": job["metadata"].get("namespace"),
            "labels": dict(tmeta.get("labels") or {}), "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [controller_ref(job)]}
    spec = deep_copy(template.get("spec") or {})
    if index is not None:
        meta["generateName"] = f"{name}-{index}-"
        meta["annotations"][COMPLETION_INDEX] = str(index)
        meta["labels"][COMPLETION_INDEX] = str(index)
        spec.setdefault("hostname", f"{name}-{index}")
        for c in spec.get("containers") or []:
            env = [e for e in c.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
            c["env"] = env + [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}]
    if not meta["annotations"]:
        del meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


class JobController(BaseController):
    """Reconciles batch/v1 Jobs against their pods."""

    name = "job"

    def __init__(self, client: Client, job_informer: Informer, pod_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time,
                 failure_backoff: float = POD_FAILURE_BACKOFF):
        super().__init__(client, [job_informer, pod_informer])
        self.job_lister = job_informer.lister
        self.pod_lister = pod_informer.lister
        self.recorder = recorder or EventRecorder(client, "job-controller")
        self.clock = clock
        self.failure_backoff = failure_backoff
        self.expectations = ControllerExpectations()
        job_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                  on_delete=self._delete_job)
        pod_informer.add_handlers(on_add=self._pod_event, on_update=lambda old, new: self._pod_event(new, old),
                                  on_delete=self._pod_deleted)

    # -- event handlers ------------------------------------------------------------------
    def _delete_job(self, job: dict) -> None:
        self.expectations.delete(meta_key(job))

    def _owner(self, pod: dict) -> dict | None:
        return resolve_controller_ref(pod, self.job_lister, "Job")

    def _pod_event(self, pod: dict, old: dict | None = None) -> None:
        job = self._owner(pod)
        if job is None:
            if old is not None and (old_job := self._owner(old)) is not None:
                self.enqueue(old_job)
            return
        if old is None:
            self.expectations.creation_observed(meta_key(job))
        self.enqueue(job)

    def _pod_deleted(self, pod: dict) -> None:
        job = self._owner(pod)
        if job is not None:
            self.expectations.deletion_observed(meta_key(job), meta_key(pod))
            self.enqueue(job)

    # -- reconcile ----------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        """Reconcile Job ``namespace/name`` (mirrors Controller.syncJob). Raises ApiError to be retried."""
        ns, name = split_key(key)
        job = self.job_lister.get(name, ns)
        if job is None:
            self.expectations.delete(key)
            return
        if is_finished(job):
            return
        now = self.clock()
        spec = job.get("spec") or {}
        status = deep_copy(job.get("status") or {})
        candidates = self.pod_lister.list(ns, match=lambda p: get_controller_of(p) is None
                                          or get_controller_of(p).get("uid") == job["metadata"].get("uid"))
        pods = await claim_objects(self.client, job, candidates, "pods")
        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        failed = [p for p in pods if _phase(p) == "Failed"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = rfc3339(now)
        requeue_after: float | None = None

        if indexed:
            done_indexes = {completion_index(p) for p in succeeded} - {None}
            n_succeeded = len({i for i in done_indexes if i < int(completions or 0)})
        else:
            n_succeeded = len(succeeded)
        finished_reason = finished_type = message = None
        backoff_limit = int(spec.get("backoffLimit", 6))
        started = parse_time(status.get("startTime"))
        deadline = spec.get("activeDeadlineSeconds")
        if len(failed) > backoff_limit or _past_backoff_limit_on_failure(job, active):
            finished_type, finished_reason, message = "Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE
        elif deadline is not None and started is not None and not suspended and now - started >= int(deadline):
            finished_type, finished_reason, message = "Failed", "DeadlineExceeded", DEADLINE_MESSAGE
        elif completions is not None and n_succeeded >= int(completions):
            finished_type, finished_reason, message = "Complete", "CompletionsReached", COMPLETE_MESSAGE
        elif completions is None and succeeded and not active:
            finished_type, finished_reason, message = "Complete", "CompletionsReached", COMPLETE_MESSAGE

        manage_error: Exception | None = None
        if finished_type is not None:
            manage_error = await self._delete_pods(key, job, active)
            active = [] if manage_error is None else active
        elif self.expectations.satisfied(key) and not job["metadata"].get("deletionTimestamp"):
            try:
                requeue_after = await self._manage(key, job, active, succeeded, failed, now=now)
            except Exception as e:  # status is still worth recording
                manage_error = e
            _set_condition(status, "Suspended", suspended, now,
                           reason="JobSuspended" if suspended else "JobResumed",
                           message="Job suspended" if suspended else "Job resumed")
        status.update({"active": len(active), "succeeded": n_succeeded, "failed": len(failed),
                       "ready": sum(1 for p in active if is_pod_ready(p)),
                       "terminating": sum(1 for p in pods if p["metadata"].get("deletionTimestamp"))})
        if indexed:
            status["completedIndexes"] = _format_indexes(
                sorted({completion_index(p) for p in succeeded} - {None}))
        if finished_type is not None and not active:
            interim = "SuccessCriteriaMet" if finished_type == "Complete" else "FailureTarget"
            _set_condition(status, interim, True, now, reason=finished_reason, message=message)
            _set_condition(status, finished_type, True, now, reason=finished_reason, message=message)
            if finished_type == "Complete":
                status["completionTime"] = rfc3339(now)
                self.recorder.event(job, NORMAL, "Completed", "Job completed")
            else:
                self.recorder.event(job, WARNING, finished_reason, message)
        await self._update_status(job, status)
        if manage_error is not None:
            raise manage_error
        if finished_type is None and deadline is not None and started is not None and not suspended:
            left = started + int(deadline) - now
            requeue_after = left if requeue_after is None else min(requeue_after, left)
        if requeue_after is not None:
            self.queue.add_after(key, max(requeue_after, 0.05))

    async def _manage(self, key: str, job: dict, active: list[dict], succeeded: list[dict],
                      failed: list[dict], *, now: float) -> float | None:
        """Create or delete pods toward the wanted number of active pods (manageJob).
        Returns seconds until a back-off ends and the Job should be synced again, or None."""
        spec = job["spec"]
        ns = job["metadata"].get("namespace")
        parallelism = int(spec.get("parallelism") or 0)
        completions = spec.get("completions")
        indexed = spec.get("completionMode") == "Indexed"
        if spec.get("suspend"):
            wanted = 0
        elif completions is None:
            wanted = len(active) if succeeded else parallelism
        else:
            done = len({completion_index(p) for p in succeeded} - {None}) if indexed else len(succeeded)
            wanted = max(0, min(parallelism, int(completions) - done))
        if len(active) > wanted:
            on_node: dict[str, int] = {}
            for p in active:
                node = (p.get("spec") or {}).get("nodeName") or ""
                on_node[node] = on_node.get(node, 0) + 1
            victims = sorted(active, key=lambda p: pod_delete_rank(p, on_node))[:len(active) - wanted]
            error = await self._delete_pods(key, job, victims)
            if error is not None:
                raise error
            return None
        missing = min(wanted - len(active), BURST_REPLICAS)
        if missing <= 0:
            return None
        if failed:
            last = max(_finished_at(p) for p in failed)
            wait = last + pod_failure_backoff(len(failed), base=self.failure_backoff) - now
            if wait > 0:
                return wait
        indexes: list[int | None] = [None] * missing
        if indexed:
            taken = {completion_index(p) for p in active + succeeded}
            indexes = [i for i in range(int(completions)) if i not in taken][:missing]
            missing = len(indexes)
        self.expectations.expect_creations(key, missing)
        pending = list(indexes)

        async def create() -> None:
            body = pod_from_template(job, index=pending.pop(0))
            try:
                created = await self.client.create("pods", body, namespace=ns)
            except ApiError as e:
                self.recorder.event(job, WARNING, "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.event(job, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

        successes, error = await slow_start_batch(missing, SLOW_START_INITIAL_BATCH, create)
        for _ in range(missing - successes):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error
        return None

    async def _delete_pods(self, key: str, job: dict, pods: list[dict]) -> Exception | None:
        """Delete ``pods`` concurrently; the first error, if any."""
        if not pods:
            return None
        self.expectations.expect_deletions(key, [meta_key(p) for p in pods])

        async def delete(pod: dict) -> None:
            pname = pod["metadata"]["name"]
            try:
                await self.client.delete("pods", pname, namespace=pod["metadata"].get("namespace"))
            except ApiError as e:
                self.expectations.deletion_observed(key, meta_key(pod))
                if e.code == 404:
                    return
                self.recorder.event(job, WARNING, "FailedDelete", f"Error deleting: {e}")
                raise
            self.recorder.event(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {pname}")

        results = await asyncio.gather(*(delete(p) for p in pods), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        return errors[0] if errors else None

    async def _update_status(self, job: dict, status: dict) -> None:
        """PUT the status when it changed (a 409 is retried by the queue)."""
        await write_status(self.client, "jobs", job, status)


def _past_backoff_limit_on_failure(job: dict, active: list[dict]) -> bool:
    """With restartPolicy OnFailure the kubelet restarts failing containers in place, so their
    restarts count against backoffLimit (job_controller.go's pastBackoffLimitOnFailure)."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    limit = int(spec.get("backoffLimit", 6))
    restarts = sum(int(c.get("restartCount") or 0) for p in active
                   for c in ((p.get("status") or {}).get("containerStatuses") or [])
                   + ((p.get("status") or {}).get("initContainerStatuses") or []))
    return restarts > 0 if limit == 0 else restarts >= limit


def _set_condition(status: dict, ctype: str, value: bool, now: float, *, reason: str, message: str) -> None:
    """Add or flip condition ``ctype``; an absent False condition is not added (only a change is recorded)."""
    conds = status.setdefault("conditions", [])
    want = "True" if value else "False"
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != want:
                c.update({"status": want, "reason": reason, "message": message,
                          "lastProbeTime": rfc3339(now), "lastTransitionTime": rfc3339(now)})
            return
    if value:
        conds.append({"type": ctype, "status": want, "reason": reason, "message": message,
                      "lastProbeTime": rfc3339(now), "lastTransitionTime": rfc3339(now)})
    if not conds:
        del status["conditions"]


def _format_indexes(indexes: list[int]) -> str:
    """Sorted indexes as upstream's compressed intervals: [0,1,2,5] -> "0-2,5"."""
    out: list[str] = []
    i = 0
    while i < len(indexes):
        j = i
        while j + 1 < len(indexes) and indexes[j + 1] == indexes[j] + 1:
            j += 1
        out.append(str(indexes[i]) if i == j else f"{indexes[i]}-{indexes[j]}")
        i = j + 1
    return ",".join(out)
