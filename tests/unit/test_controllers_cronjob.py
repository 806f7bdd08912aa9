"""The CronJob controller's schedule arithmetic and Job template."""
import datetime
import zoneinfo

import pytest

from controllers import cronjob

UTC = datetime.timezone.utc


def _t(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_most_recent_missed_and_next():
    recent, missed, nxt = cronjob.schedule_times("*/5 * * * *", UTC, _t("2026-01-01T00:00:30"),
                                                 _t("2026-01-01T00:17:00"))
    assert (recent, missed, nxt) == (_t("2026-01-01T00:15:00"), 3, _t("2026-01-01T00:20:00"))
    assert cronjob.schedule_times("@hourly", UTC, _t("2026-01-01T00:00:30"), _t("2026-01-01T00:59:00"))[:2] == (None, 0)


def test_every_and_time_zone():
    recent, missed, nxt = cronjob.schedule_times("@every 90s", UTC, 0.0, 200.0)
    assert (recent, missed, nxt) == (180.0, 2, 270.0)
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    recent, _, _ = cronjob.schedule_times("0 9 * * *", berlin, _t("2026-01-01T00:00:00"), _t("2026-01-01T12:00:00"))
    assert recent == _t("2026-01-01T08:00:00")  # 09:00 in Berlin is 08:00 UTC in winter


def test_too_many_missed_jumps_to_the_latest():
    recent, missed, nxt = cronjob.schedule_times("* * * * *", UTC, 0.0, _t("2026-01-01T00:00:30"))
    assert missed > cronjob.MAX_MISSED and recent == _t("2026-01-01T00:00:00") and nxt == _t("2026-01-01T00:01:00")


def test_bad_schedules():
    for bad in ("nope", "61 * * * *", "TZ=UTC * * * * *"):
        with pytest.raises(ValueError):
            cronjob.schedule_times(bad, UTC, 0.0, 100.0)


def test_job_from_template():
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "ns", "uid": "u"},
          "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"backoffLimit": 2}}}}
    job = cronjob.job_from_template(cj, _t("2026-01-01T00:05:00"), UTC)
    assert job["metadata"]["name"] == f"nightly-{int(_t('2026-01-01T00:05:00') // 60)}"
    assert job["metadata"]["annotations"][cronjob.SCHEDULED_TIMESTAMP] == "2026-01-01T00:05:00Z"
    assert job["metadata"]["labels"] == {"a": "b"} and job["spec"] == {"backoffLimit": 2}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
