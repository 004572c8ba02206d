"""The TrainingJob reconciler records worker 0's metrics when a run succeeds (fake Kube)."""

from __future__ import annotations

import pytest

from mlplatform.labels import JOB_COMPLETION_INDEX_LABEL, JOB_UID_LABEL
from mlplatform.render.trainingjob import COMPONENT

from .test_reconcilers import RUNNING_CONDITIONS, TRAINER, Harness, applied, job_condition, pod, run_status, with_status

KEY = ("TrainingJob", "team", "trainer")
COMPLETE = {"succeeded": 1, "completionTime": "2026-11-25T11:45:00Z",
            "conditions": [job_condition("Complete", "Completed")]}


def worker_pod(job: dict, index: str, phase: str, message: str | None = None, job_uid: str | None = None) -> dict:
    """A pod of the run's Indexed Job (or of an earlier attempt's, job_uid), labelled as the Job controller does."""
    job_uid = job_uid or job["metadata"]["uid"]
    terminated = {"exitCode": 0, "reason": "Completed", "message": message} if phase == "Succeeded" else None
    p = pod(TRAINER, COMPONENT, f"trainer-1-{index}-{job_uid}", run=1, phase=phase, containerStatuses=[
        {"name": "trainer", "state": {"terminated": terminated} if terminated else {"running": {}}}])
    p["metadata"]["labels"].update({JOB_UID_LABEL: job_uid, JOB_COMPLETION_INDEX_LABEL: index})
    p["metadata"]["annotations"] = {JOB_COMPLETION_INDEX_LABEL: index}
    return p


def running_run_with_a_complete_job() -> tuple[Harness, dict]:
    h = Harness()
    h.add(with_status(TRAINER, run_status(TRAINER, conditions=RUNNING_CONDITIONS)))
    return h, h.add(with_status(applied(TRAINER, "Job"), COMPLETE))


def stored_status(h: Harness) -> dict:
    return h.kube.stored(TRAINER["apiVersion"], "TrainingJob", "team", "trainer")["status"]


@pytest.mark.parametrize("message,metrics,warning", [
    ('{"auc": 0.93, "loss": 0.21}', {"auc": 0.93, "loss": 0.21}, None),
    ('{"auc": "high"}', None, "run 1 succeeded without metrics: the termination message's 'auc' is not a number"),
])
def test_a_succeeded_run_records_worker_zero_metrics(message, metrics, warning):
    h, job = running_run_with_a_complete_job()
    h.add(worker_pod(job, "0", "Succeeded", message))
    h.add(worker_pod(job, "1", "Succeeded", '{"auc": 0.1}'))  # only worker 0 counts
    h.reconcile(TRAINER)
    status = stored_status(h)
    assert status["phase"] == "Succeeded"
    assert status["runs"][0].get("metrics") == metrics and status.get("metrics") == metrics
    events = [c.detail for c in h.kube.calls if c.method == "post_event"]
    assert (("Warning", "MetricsUnreadable") in events) == (warning is not None)
    h.kube.calls.clear()
    h.reconcile(h.ctx.cache.resource(KEY))
    assert [c for c in h.kube.calls if c.method in ("patch_status", "post_event", "list_pods")] == []  # said once


def test_metrics_are_read_from_the_api_server_when_the_job_completes_before_the_pod_watch_catches_up():
    """The Job's Complete is handled while the pod cache still holds worker 0 Running: the metrics come from
    the pod as the API server holds it, and are recorded in the same status write that says Succeeded."""
    h, job = running_run_with_a_complete_job()
    h.add(worker_pod(job, "0", "Running"))  # what the pod watch delivered so far
    h.kube.put(worker_pod(job, "0", "Succeeded", '{"auc": 0.93}'))  # the API server, not yet in the cache

    h.reconcile(TRAINER)

    status = stored_status(h)
    assert status["phase"] == "Succeeded"
    assert status["runs"][0]["metrics"] == {"auc": 0.93} and status["metrics"] == {"auc": 0.93}
    assert [c.detail for c in h.kube.called("list_pods")] == [
        f"{JOB_UID_LABEL}={job['metadata']['uid']},{JOB_COMPLETION_INDEX_LABEL}=0"]


def test_another_job_s_worker_zero_is_not_read():
    """A restarted run's earlier attempt (same run, another Job UID) left a worker 0 pod: not this attempt's."""
    h, job = running_run_with_a_complete_job()
    h.kube.put(worker_pod(job, "0", "Succeeded", '{"auc": 0.5}', job_uid="uid-of-an-earlier-attempt"))
    h.reconcile(TRAINER)
    status = stored_status(h)
    assert status["phase"] == "Succeeded" and "metrics" not in status["runs"][0]
