"""The Job controller's pure helpers: back-off, pod template, index formatting, OnFailure restarts."""
from controllers import job as jobctl


def test_pod_failure_backoff_doubles_and_caps():
    assert jobctl.pod_failure_backoff(0) == 0
    assert [jobctl.pod_failure_backoff(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert jobctl.pod_failure_backoff(50) == 360


def _job(**spec):
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"batch.kubernetes.io/job-name": "pi"}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "busybox:1.35"}]}}, **spec}}


def test_pod_from_template_nonindexed_and_indexed():
    pod = jobctl.pod_from_template(_job())
    assert pod["metadata"]["generateName"] == "pi-"
    assert pod["metadata"]["ownerReferences"][0] == {"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                                      "uid": "u1", "controller": True, "blockOwnerDeletion": True}
    assert "annotations" not in pod["metadata"] and "env" not in pod["spec"]["containers"][0]
    pod = jobctl.pod_from_template(_job(completionMode="Indexed", completions=3), index=2)
    meta = pod["metadata"]
    assert meta["generateName"] == "pi-2-" and meta["annotations"][jobctl.COMPLETION_INDEX] == "2"
    assert meta["labels"][jobctl.COMPLETION_INDEX] == "2" and pod["spec"]["hostname"] == "pi-2"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "JOB_COMPLETION_INDEX"
    assert jobctl.completion_index(pod) == 2


def test_format_indexes_as_intervals():
    assert jobctl._format_indexes([]) == ""
    assert jobctl._format_indexes([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_on_failure_restarts_count_against_backoff_limit():
    j = _job(backoffLimit=2)
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    pod = {"status": {"containerStatuses": [{"restartCount": 1}]}}
    assert not jobctl._past_backoff_limit_on_failure(j, [pod])
    pod["status"]["containerStatuses"][0]["restartCount"] = 2
    assert jobctl._past_backoff_limit_on_failure(j, [pod])
    j["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert not jobctl._past_backoff_limit_on_failure(j, [pod])


def test_set_condition_records_changes_only():
    status: dict = {}
    jobctl._set_condition(status, "Suspended", False, 0.0, reason="JobResumed", message="Job resumed")
    assert "conditions" not in status
    jobctl._set_condition(status, "Suspended", True, 0.0, reason="JobSuspended", message="Job suspended")
    assert status["conditions"][0]["status"] == "True"
    jobctl._set_condition(status, "Suspended", False, 60.0, reason="JobResumed", message="Job resumed")
    assert status["conditions"][0]["status"] == "False" and status["conditions"][0]["reason"] == "JobResumed"
