"""The CronJob controller: creates Jobs on a cron schedule.

Mirrors pkg/controller/cronjob/cronjob_controllerv2.go (syncCronJob): the
CronJob's active Jobs are reconciled into ``status.active`` (finished ones
leave it, a Complete one sets ``lastSuccessfulTime``); then the most recent
unmet schedule time after ``status.lastScheduleTime`` (or the creation
time, bounded by ``startingDeadlineSeconds``) is run: skipped when it is past
the starting deadline, when ``suspend`` is set, or when
``concurrencyPolicy: Forbid`` finds a Job still active; ``Replace`` deletes
the active Jobs first. The Job is named ``<cronjob>-<scheduled minute since
the epoch>`` so that a retried sync can never create it twice, and carries
the ``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation. Finished
Jobs beyond ``successfulJobsHistoryLimit`` (3) / ``failedJobsHistoryLimit``
(1) are deleted, oldest first. The sync requeues itself for the next
schedule time.

Cron expressions are evaluated by croniter (standard five fields and the
``@hourly``-style macros, in ``spec.timeZone`` or UTC); ``@every <duration>``
is handled here as robfig/cron does.
"""
from __future__ import annotations

import datetime
import logging
import time
import zoneinfo
from typing import Callable

from croniter import croniter

from kubeling.client import ApiError, Client, Informer, deep_copy, split_key
from kubeling.client.record import NORMAL, WARNING, EventRecorder
from kubeling.duration import parse_duration
from controllers.controller_utils import (BaseController, controller_ref, get_controller_of, parse_time, rfc3339,
                                          write_status)
from controllers.job import condition, is_finished

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # upstream warns (TooManyMissedTimes) past this many unmet schedule times


def time_zone(cj: dict) -> datetime.tzinfo:
    """spec.timeZone (validated by the apiserver) or UTC. Raises ValueError for an unknown zone."""
    name = (cj.get("spec") or {}).get("timeZone")
    if not name:
        return datetime.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name}") from e


def schedule_times(schedule: str, tz: datetime.tzinfo, earliest: float, now: float) -> tuple[float | None, int, float]:
    """(most recent schedule time in (earliest, now] or None, how many there were, the next one after now).

    Raises ValueError for a schedule croniter cannot read (mirrors getMostRecentScheduleTime)."""
    s = schedule.strip()
    if s.startswith("@every "):
        every = parse_duration(s[len("@every "):])
        if every <= 0:
            raise ValueError(f"invalid schedule {schedule!r}")
        missed = int((now - earliest) // every)
        recent = earliest + missed * every if missed > 0 else None
        return recent, missed, earliest + (missed + 1) * every
    if s.startswith("TZ=") or s.startswith("CRON_TZ="):
        raise ValueError("CRON_TZ or TZ used in schedule is not supported, use spec.timeZone")
    if not croniter.is_valid(s):
        raise ValueError(f"unparseable schedule: {schedule!r}")
    it = croniter(s, datetime.datetime.fromtimestamp(earliest, tz))
    recent, missed = None, 0
    while True:
        t = it.get_next(datetime.datetime).timestamp()
        if t > now:
            return recent, missed, t
        recent, missed = t, missed + 1
        if missed > MAX_MISSED:  # skip ahead: only the latest one matters
            back = croniter(s, datetime.datetime.fromtimestamp(now, tz))
            recent = back.get_prev(datetime.datetime).timestamp()
            return recent, missed, croniter(s, datetime.datetime.fromtimestamp(now, tz)).get_next(
                datetime.datetime).timestamp()


def job_from_template(cj: dict, scheduled: float, tz: datetime.tzinfo) -> dict:
    """The Job of ``cj`` for ``scheduled`` (getJobFromTemplate2): deterministic name, template labels and
    annotations plus the scheduled-timestamp annotation, the CronJob as controller."""
    tmpl = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmeta = tmpl.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = rfc3339(scheduled, tz)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{cj['metadata']['name']}-{int(scheduled // 60)}",
                         "namespace": cj["metadata"].get("namespace"), "labels": dict(tmeta.get("labels") or {}),
                         "annotations": annotations, "ownerReferences": [controller_ref(cj)]},
            "spec": deep_copy(tmpl.get("spec") or {})}


def _ref(job: dict) -> dict:
    m = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "namespace": m.get("namespace"),
            "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}


class CronJobController(BaseController):
    """Reconciles batch/v1 CronJobs into Jobs."""

    name = "cronjob"

    def __init__(self, client: Client, cj_informer: Informer, job_informer: Informer, *,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time):
        super().__init__(client, [cj_informer, job_informer])
        self.cj_lister = cj_informer.lister
        self.job_lister = job_informer.lister
        self.recorder = recorder or EventRecorder(client, "cronjob-controller")
        self.clock = clock
        cj_informer.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        job_informer.add_handlers(on_add=self._job_changed, on_update=lambda old, new: self._job_changed(new),
                                  on_delete=self._job_changed)

    def _job_changed(self, job: dict) -> None:
        ref = get_controller_of(job)
        if ref and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata'].get('namespace')}/{ref.get('name')}")

    async def sync(self, key: str) -> None:
        """Reconcile CronJob ``namespace/name``. Raises ApiError to be retried."""
        ns, name = split_key(key)
        cj = self.cj_lister.get(name, ns)
        if cj is None:
            return
        uid = cj["metadata"].get("uid")
        jobs = self.job_lister.list(ns, match=lambda j: (get_controller_of(j) or {}).get("uid") == uid)
        status = deep_copy(cj.get("status") or {})
        spec = cj.get("spec") or {}
        now = self.clock()
        by_uid = {j["metadata"].get("uid"): j for j in jobs}
        active = []
        for ref in status.get("active") or []:
            j = by_uid.get(ref.get("uid"))
            if j is not None and not is_finished(j):
                active.append(ref)
        for j in jobs:
            if is_finished(j):
                done = condition(j, "Complete")
                if done is not None:
                    t = (j.get("status") or {}).get("completionTime") or done.get("lastTransitionTime")
                    if t and (parse_time(t) or 0) > (parse_time(status.get("lastSuccessfulTime")) or 0):
                        status["lastSuccessfulTime"] = t
                        self.recorder.event(cj, NORMAL, "SawCompletedJob",
                                            f"Saw completed job: {j['metadata']['name']}, status: Complete")
            elif j["metadata"].get("uid") not in {r.get("uid") for r in active}:
                active.append(_ref(j))  # an active Job we did not know of (e.g. status lost)
        status["active"] = active
        requeue: float | None = None
        if not cj["metadata"].get("deletionTimestamp") and not spec.get("suspend"):
            try:
                requeue = await self._run_schedule(cj, status, jobs, now)
            except ValueError as e:
                self.recorder.event(cj, WARNING, "UnparseableSchedule", str(e))
                log.info("cronjob %s: %s", key, e)
        await self._clean_history(cj, jobs)
        if not status["active"]:
            del status["active"]
        await write_status(self.client, "cronjobs", cj, status)
        if requeue is not None:
            self.queue.add_after(key, max(0.1, requeue - self.clock() + 0.1))

    async def _run_schedule(self, cj: dict, status: dict, jobs: list[dict], now: float) -> float:
        """Start the Job of the most recent unmet schedule time, if due; returns the next schedule time."""
        spec = cj["spec"]
        tz = time_zone(cj)
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp")) \
            or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - int(deadline))
        scheduled, missed, next_time = schedule_times(spec["schedule"], tz, earliest, now)
        if scheduled is None:
            return next_time
        if missed > MAX_MISSED:
            self.recorder.event(cj, WARNING, "TooManyMissedTimes",
                                f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew")
        if deadline is not None and scheduled < now - int(deadline):
            self.recorder.event(cj, WARNING, "MissSchedule",
                                f"Missed scheduled time to start a job: {rfc3339(scheduled, tz)}")
            return next_time
        policy = spec.get("concurrencyPolicy") or "Allow"
        if status["active"] and policy == "Forbid":
            self.recorder.event(cj, NORMAL, "JobAlreadyActive", "Not starting job because prior execution is running "
                                "and concurrency policy is Forbid")
            return next_time
        if status["active"] and policy == "Replace":
            for ref in list(status["active"]):
                try:
                    await self.client.delete("jobs", ref["name"], namespace=cj["metadata"].get("namespace"),
                                             propagation_policy="Background")
                    self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {ref['name']}")
                except ApiError as e:
                    if e.code != 404:
                        raise
                status["active"].remove(ref)
        body = job_from_template(cj, scheduled, tz)
        ns = cj["metadata"].get("namespace")
        try:
            created = await self.client.create("jobs", body, namespace=ns)
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        except ApiError as e:
            if e.code != 409:
                self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {e}")
                raise
            created = await self.client.get("jobs", body["metadata"]["name"], namespace=ns)
            if (get_controller_of(created) or {}).get("uid") != cj["metadata"].get("uid"):
                return next_time  # someone else's Job holds the name: do not adopt it
        if created["metadata"].get("uid") not in {r.get("uid") for r in status["active"]} and not is_finished(created):
            status["active"].append(_ref(created))
        status["lastScheduleTime"] = rfc3339(scheduled)
        return next_time

    async def _clean_history(self, cj: dict, jobs: list[dict]) -> None:
        """Delete finished Jobs beyond the history limits, oldest first (cleanupFinishedJobs)."""
        spec = cj.get("spec") or {}
        for ctype, limit_field, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                            ("Failed", "failedJobsHistoryLimit", 1)):
            limit = spec.get(limit_field, default)
            if limit is None:
                continue
            done = [j for j in jobs if condition(j, ctype) is not None and not j["metadata"].get("deletionTimestamp")]
            done.sort(key=lambda j: (parse_time((j.get("status") or {}).get("startTime"))
                                     or parse_time(j["metadata"].get("creationTimestamp")) or 0.0))
            for j in done[:max(0, len(done) - int(limit))]:
                try:
                    await self.client.delete("jobs", j["metadata"]["name"], namespace=j["metadata"].get("namespace"),
                                             propagation_policy="Background")
                    self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {j['metadata']['name']}")
                except ApiError as e:
                    if e.code != 404:
                        raise
