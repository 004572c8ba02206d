"""The TrainingJob reconciler records worker 0's metrics when a run succeeds (fake Kube)."""

from __future__ import annotations

import pytest

from mlplatform.render.trainingjob import COMPONENT

from .test_reconcilers import RUNNING_CONDITIONS, TRAINER, Harness, applied, job_condition, pod, run_status, with_status


def succeeded_pod(index: str, message: str) -> dict:
    p = pod(TRAINER, COMPONENT, f"trainer-1-{index}", run=1, phase="Succeeded", containerStatuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}}])
    p["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": index}
    return p


@pytest.mark.parametrize("message,metrics,warning", [
    ('{"auc": 0.93, "loss": 0.21}', {"auc": 0.93, "loss": 0.21}, None),
    ('{"auc": "high"}', None, "run 1 succeeded without metrics: the termination message's 'auc' is not a number"),
])
def test_a_succeeded_run_records_worker_zero_metrics(message, metrics, warning):
    h = Harness()
    h.add(with_status(TRAINER, run_status(TRAINER, conditions=RUNNING_CONDITIONS)))
    h.add(with_status(applied(TRAINER, "Job"), {"succeeded": 1, "completionTime": "2026-11-25T11:45:00Z",
                                                "conditions": [job_condition("Complete", "Completed")]}))
    h.add(succeeded_pod("0", message))
    h.add(succeeded_pod("1", '{"auc": 0.1}'))  # only worker 0 counts
    h.reconcile(TRAINER)
    status = h.kube.stored(TRAINER["apiVersion"], "TrainingJob", "team", "trainer")["status"]
    assert status["phase"] == "Succeeded"
    assert status["runs"][0].get("metrics") == metrics and status.get("metrics") == metrics
    events = [c.detail for c in h.kube.calls if c.method == "post_event"]
    assert (("Warning", "MetricsUnreadable") in events) == (warning is not None)
    h.kube.calls.clear()
    h.reconcile(h.ctx.cache.resource(("TrainingJob", "team", "trainer")))
    assert [c for c in h.kube.calls if c.method in ("patch_status", "post_event")] == []  # said once
