"""Strategies of batch/v1 Jobs and CronJobs.

Mirrors kube-apiserver's ``pkg/registry/batch/{job,cronjob}``, the defaulting
of ``pkg/apis/batch/v1/defaults.go`` (completions/parallelism 1, backoffLimit
6, completionMode NonIndexed, suspend false, podReplacementPolicy; CronJob
concurrencyPolicy Allow and history limits 3/1) and the Job's generated
selector: unless ``spec.manualSelector`` is true, the pod template gets the
``controller-uid`` / ``batch.kubernetes.io/controller-uid`` and ``job-name`` /
``batch.kubernetes.io/job-name`` labels and the selector matches the
controller uid, so a Job can never adopt another Job's pods.
"""
from __future__ import annotations

import re
import zoneinfo

from apiserver.registry.core import default_pod_spec, validate_pod_spec
from apiserver.registry.rest import (STATUS_VERBS, ResourceInfo, Strategy, immutable, invalid_value,
                                     not_supported, required, validate_labels)
from kubeling.api import resources, selectors

LEGACY_CONTROLLER_UID = "controller-uid"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
LEGACY_JOB_NAME = "job-name"
JOB_NAME = "batch.kubernetes.io/job-name"
JOB_RESTART_POLICIES = ("OnFailure", "Never")


def _nonneg(out: list, spec: dict, path: str, field: str, *, positive: bool = False) -> None:
    v = spec.get(field)
    if v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < (1 if positive else 0):
        out.append(invalid_value(f"{path}.{field}", v, "must be greater than 0" if positive
                                 else "must be greater than or equal to 0"))


def validate_job_spec(spec, path: str) -> list:
    """Causes for a JobSpec at ``path`` (``spec`` or ``spec.jobTemplate.spec``), selector checks excluded."""
    if not isinstance(spec, dict):
        return [required(path)]
    out: list = []
    for f in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        _nonneg(out, spec, path, f)
    _nonneg(out, spec, path, "activeDeadlineSeconds", positive=True)
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        out.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    elif mode == "Indexed" and spec.get("completions") is None:
        out.append(required(f"{path}.completions"))
    prp = spec.get("podReplacementPolicy")
    if prp is not None and prp not in ("TerminatingOrFailed", "Failed"):
        out.append(not_supported(f"{path}.podReplacementPolicy", prp, ["Failed", "TerminatingOrFailed"]))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        out.append(required(f"{path}.template"))
        return out
    out += validate_labels(f"{path}.template.metadata.labels", (tmpl.get("metadata") or {}).get("labels"))
    out += validate_pod_spec(tmpl.get("spec"), f"{path}.template.spec", restart_policies=JOB_RESTART_POLICIES)
    return out


def default_job_spec(spec: dict) -> None:
    """SetDefaults_Job's spec part, in place."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    tmpl = spec.get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        default_pod_spec(tmpl["spec"])


class JobStrategy(Strategy):
    """Jobs: defaulting, generated selector and labels, immutable selector and template."""

    info = ResourceInfo(resources.for_name("jobs"), "jobs", ("all",),
                        {"status": ("Job", "batch", "v1", STATUS_VERBS)})
    tracks_generation = True
    extra_fields = ("status.successful",)
    default_propagation_policy = "Orphan"

    def default(self, obj: dict) -> None:
        """SetDefaults_Job plus generateSelector (when manualSelector is not true); mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        default_job_spec(spec)
        tmpl = spec.get("template")
        if not isinstance(tmpl, dict):
            return
        meta = obj["metadata"]
        if spec.get("manualSelector") is not True and meta.get("uid"):
            tmeta = tmpl.setdefault("metadata", {})
            if isinstance(tmeta, dict):
                labels = tmeta.setdefault("labels", {})
                if isinstance(labels, dict):
                    for key in (LEGACY_JOB_NAME, JOB_NAME):
                        labels.setdefault(key, meta.get("name", ""))
                    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
                        labels.setdefault(key, meta["uid"])
            sel = spec.get("selector")
            if sel is None:
                sel = spec["selector"] = {}
            if isinstance(sel, dict):
                if not isinstance(sel.get("matchLabels"), dict):
                    sel["matchLabels"] = {}
                sel["matchLabels"].setdefault(CONTROLLER_UID, meta["uid"])
        # upstream copies the template's labels onto an unlabelled Job when decoding (also on reads from etcd,
        # after the generated labels were added), so a stored Job shows them
        tlabels = (tmpl.get("metadata") or {}).get("labels") if isinstance(tmpl.get("metadata"), dict) else None
        if isinstance(tlabels, dict) and tlabels and not meta.get("labels"):
            meta["labels"] = dict(tlabels)

    def validate(self, obj: dict) -> list:
        """Causes: the JobSpec checks, a selector that is missing / does not match the template, and
        (generated selectors) the template missing the controller-uid / job-name labels."""
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec")]
        out = validate_job_spec(spec, "spec")
        sel = spec.get("selector")
        tmpl = spec.get("template")
        labels = ((tmpl or {}).get("metadata") or {}).get("labels") or {} if isinstance(tmpl, dict) else {}
        if not isinstance(sel, dict):
            out.append(required("spec.selector"))
            return out
        try:
            selector = selectors.label_selector_from_object(sel)
        except ValueError as e:
            out.append(invalid_value("spec.selector", str(sel), str(e)))
            return out
        if isinstance(labels, dict) and isinstance(tmpl, dict) and not selector.matches(labels):
            out.append(invalid_value("spec.template.metadata.labels", labels,
                                     "`selector` does not match template `labels`"))
        if spec.get("manualSelector") is not True:
            meta = obj["metadata"]
            expected = {LEGACY_CONTROLLER_UID: meta.get("uid", ""), LEGACY_JOB_NAME: meta.get("name", ""),
                        CONTROLLER_UID: meta.get("uid", ""), JOB_NAME: meta.get("name", "")}
            for key in (LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME):
                if isinstance(labels, dict) and labels.get(key) != expected[key]:
                    out.append(invalid_value(f"spec.template.metadata.labels[{key}]", labels.get(key, ""),
                                             f"must be '{expected[key]}'"))
            if not selector.matches(expected):
                out.append(invalid_value("spec.selector", str(selector), "`selector` not auto-generated"))
        return out

    def validate_update(self, new: dict, old: dict) -> list:
        """``validate(new)`` plus immutable selector, completionMode and template (the template may change
        while the Job is suspended and has not started, as upstream's mutable scheduling directives)."""
        out = self.validate(new)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        for f in ("selector", "completionMode", "podFailurePolicy", "manualSelector"):
            if ns.get(f) != os_.get(f):
                out.append(immutable(f"spec.{f}", str(ns.get(f))))
        never_started = os_.get("suspend") and not (old.get("status") or {}).get("startTime")
        if ns.get("template") != os_.get("template") and not never_started:
            out.append(immutable("spec.template", "{...}"))
        return out


# ---------------------------------------------------------------- cronjobs

_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DOWS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DOWS))
_PART_RE = re.compile(r"^(\*|\?|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/([0-9]+))?$")


def parse_schedule_error(schedule: str) -> str | None:
    """Why a cron ``schedule`` is not valid (robfig/cron ParseStandard's rules), or None.

    Five space-separated fields (minute hour day-of-month month day-of-week,
    with ``*``, ``a-b``, ``/step``, lists and month/day names) or one of the
    ``@hourly``-style macros; ``@every <duration>`` is accepted too.
    """
    s = schedule.strip()
    if s.startswith("@"):
        if s in _MACROS or s.startswith("@every "):
            return None
        return f"unrecognized descriptor: {s}"
    parts = s.split()
    if len(parts) != 5:
        return f"expected exactly 5 fields, found {len(parts)}: [{' '.join(parts)}]"
    for text, (what, lo, hi, names) in zip(parts, _FIELDS):
        for item in text.split(","):
            m = _PART_RE.match(item)
            if not m:
                return f"failed to parse {what} field: {item}"
            if m.group(2) is not None and int(m.group(2)) == 0:
                return f"step of range should be a positive number: {item}"
            if m.group(1) in ("*", "?"):
                continue
            for bound in m.group(1).split("-"):
                n = names.get(bound.lower()) if not bound.isdigit() else int(bound)
                if n is None:
                    return f"failed to parse int from {bound}: strconv.Atoi: parsing \"{bound}\": invalid syntax"
                if not lo <= n <= hi:
                    return f"end of range ({n}) above maximum ({hi}): {item}" if n > hi \
                        else f"beginning of range ({n}) below minimum ({lo}): {item}"
    return None


class CronJobStrategy(Strategy):
    """CronJobs: schedule and time zone checks, concurrencyPolicy, history limits, job template."""

    info = ResourceInfo(resources.for_name("cronjobs"), "cronjobs", ("all",),
                        {"status": ("CronJob", "batch", "v1", STATUS_VERBS)})
    tracks_generation = True

    def default(self, obj: dict) -> None:
        """SetDefaults_CronJob (concurrencyPolicy Allow, suspend false, history limits 3 and 1) and pod
        template defaults of the job template; mutates ``obj``."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        jt = spec.get("jobTemplate")
        tmpl = ((jt or {}).get("spec") or {}).get("template") if isinstance(jt, dict) else None
        if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
            default_pod_spec(tmpl["spec"])

    def validate(self, obj: dict) -> list:
        """Causes: name over 52 characters (the Job names get a suffix), bad schedule / timeZone /
        concurrencyPolicy, negative limits, and the job template's JobSpec checks."""
        out = []
        name = obj["metadata"].get("name", "")
        if len(name) > 52:
            out.append(invalid_value("metadata.name", name, "must be no more than 52 characters"))
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return out + [required("spec")]
        schedule = spec.get("schedule")
        if not schedule or not isinstance(schedule, str):
            out.append(required("spec.schedule"))
        else:
            if "TZ=" in schedule or "CRON_TZ=" in schedule:
                out.append(invalid_value("spec.schedule", schedule,
                                         "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
            else:
                why = parse_schedule_error(schedule)
                if why:
                    out.append(invalid_value("spec.schedule", schedule, why))
        tz = spec.get("timeZone")
        if tz is not None:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
                out.append(invalid_value("spec.timeZone", tz, "unknown time zone " + str(tz)))
        cp = spec.get("concurrencyPolicy", "Allow")
        if cp not in ("Allow", "Forbid", "Replace"):
            out.append(not_supported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
        for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
            _nonneg(out, spec, "spec", f)
        jt = spec.get("jobTemplate")
        if not isinstance(jt, dict):
            out.append(required("spec.jobTemplate"))
        else:
            out += validate_job_spec(jt.get("spec"), "spec.jobTemplate.spec")
        return out
