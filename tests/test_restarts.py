"""failurePolicy: the Job that renders it (podFailurePolicy, backoffLimit) and the pure decisions about a
failed attempt or a Kueue eviction (status/restarts.py), with the Job controller's real messages."""

from __future__ import annotations

import pytest

from mlplatform.api.trainingjob import TrainingJobSpec, restart_policy
from mlplatform.config import OperatorConfig
from mlplatform.render.common import Owner
from mlplatform.render.trainingjob import render_training_job
from mlplatform.status.events import condition_events
from mlplatform.status.kueue import mirrored_conditions, waiting_message
from mlplatform.status.restarts import failed_attempt, kueue_eviction, record_decision, worker_of

OWNER = Owner("TrainingJob", "tj", "ns", uid="u1", generation=1)


def job_spec(**spec) -> dict:
    rendered = render_training_job(OWNER, TrainingJobSpec.model_validate({"image": "x", **spec}), OperatorConfig(), 3)
    return next(o for o in rendered.objects if o["kind"] == "Job")["spec"]


POLICY_SPEC = {"workers": 2, "failurePolicy": {"maxRestarts": 2, "nonRetryableExitCodes": [2]}}


def failed_job(reason: str, message: str, spec: dict | None = None) -> dict:
    """The run's Job, rendered from spec (POLICY_SPEC), as the Job controller marks it Failed."""
    return {"metadata": {"name": "tj-3", "uid": "j1"}, "spec": job_spec(**(spec or POLICY_SPEC)),
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}]}}


def test_without_failure_policy_a_single_worker_keeps_its_pod_retries_and_no_pod_failure_policy():
    spec = job_spec(backoffLimit=2)
    assert spec["backoffLimit"] == 2 and "podFailurePolicy" not in spec
    assert restart_policy(TrainingJobSpec.model_validate({"image": "x", "backoffLimit": 2})).max_restarts == 0


def test_a_distributed_run_never_replaces_one_worker_backoff_limit_becomes_whole_run_restarts():
    spec = job_spec(workers=4, backoffLimit=2)
    assert spec["backoffLimit"] == 0
    assert restart_policy(TrainingJobSpec.model_validate({"image": "x", "workers": 4, "backoffLimit": 2})).max_restarts == 2


def test_failure_policy_renders_fail_job_rules_disruption_first():
    spec = job_spec(workers=2, failurePolicy={"maxRestarts": 3, "nonRetryableExitCodes": [42, 2]})
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 42]}},
    ]
    # Disruptions counted: no rule for them, a disrupted pod is an ordinary failure.
    spec = job_spec(workers=2, failurePolicy={"restartOnPreemption": False, "nonRetryableExitCodes": [2]})
    assert [r.get("onExitCodes", {}).get("values") for r in spec["podFailurePolicy"]["rules"]] == [[2]]


POLICY = restart_policy(TrainingJobSpec.model_validate({"image": "x", **POLICY_SPEC}))


def test_a_listed_exit_code_fails_the_run_naming_worker_and_code():
    job = failed_job("PodFailurePolicy",
                     "Container trainer for pod ns/tj-3-1-x7k2p failed with exit code 2 matching FailJob rule at index 1")
    decision = failed_attempt(job, POLICY, {})
    assert not decision.restart and decision.reason == "NonRetryableExitCode"
    assert "worker 1 (pod tj-3-1-x7k2p) exited with code 2" in decision.message


def test_the_failed_rule_is_read_from_the_job_s_own_rules_not_from_a_failure_policy_edited_since():
    """The Job was created with restartOnPreemption false (its only rule: the exit codes); failurePolicy was
    edited since (restartOnPreemption back to true starts no run): rule 0 is still the exit code rule."""
    created_with = {"workers": 2, "failurePolicy": {"restartOnPreemption": False, "nonRetryableExitCodes": [2]}}
    job = failed_job("PodFailurePolicy", "Container trainer for pod ns/tj-3-1-x7k2p failed with exit code 2 "
                     "matching FailJob rule at index 0", created_with)
    decision = failed_attempt(job, POLICY, {})
    assert not decision.restart and decision.reason == "NonRetryableExitCode"


def test_a_disruption_restarts_without_counting():
    job = failed_job("PodFailurePolicy", "Pod ns/tj-3-0-abcde has condition DisruptionTarget matching FailJob rule at index 0")
    decision = failed_attempt(job, POLICY, {"restarts": 2})
    assert decision.restart and not decision.counted and decision.reason == "WorkerDisrupted"
    assert record_decision({"restarts": 2}, decision) == {"restarts": 2, "disruptions": 1}


def test_other_failures_restart_until_max_restarts_then_fail():
    job = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    first = failed_attempt(job, POLICY, {})
    assert first.restart and first.counted and "restart 1/2" in first.message
    assert record_decision({}, first) == {"restarts": 1}
    last = failed_attempt(job, POLICY, {"restarts": 2})
    assert not last.restart and last.reason == "BackoffLimitExceeded" and "after 2 restarts" in last.message
    assert failed_attempt({"metadata": {"name": "tj-3"}, "status": {}}, POLICY, {}) is None
    assert not failed_attempt(failed_job("DeadlineExceeded", "too long"), POLICY, {}).restart


def test_kueue_eviction_counts_only_without_restart_on_preemption():
    evicted = {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "Preempted to accommodate a workload"}
    decision = kueue_eviction(evicted, POLICY, {})
    assert decision.restart and not decision.counted and "Preempted" in decision.message
    strict = restart_policy(TrainingJobSpec.model_validate(
        {"image": "x", "failurePolicy": {"maxRestarts": 1, "restartOnPreemption": False}}))
    assert kueue_eviction(evicted, strict, {}).counted and kueue_eviction(evicted, strict, {}).restart
    assert not kueue_eviction(evicted, strict, {"restarts": 1}).restart
    # Without failurePolicy, as before it existed: Kueue re-queues the evicted run, nothing counts.
    undeclared = restart_policy(TrainingJobSpec.model_validate({"image": "x"}))
    assert kueue_eviction(evicted, undeclared, {}).restart and not kueue_eviction(evicted, undeclared, {}).counted


def test_worker_of_reads_the_completion_index_from_the_pod_name():
    assert worker_of("tj-3", "tj-3-12-abcde") == "worker 12 (pod tj-3-12-abcde)"
    assert worker_of("tj-3", "other") == "pod other"


@pytest.mark.parametrize("workload,expected", [
    (None, "waiting for Kueue admission in LocalQueue 'team-a' (Kueue has not created the Workload yet)"),
    ({"status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                 "message": "couldn't assign flavors to pod set main: insufficient unused quota"}]}},
     "waiting for Kueue admission in LocalQueue 'team-a': couldn't assign flavors to pod set main: insufficient unused quota"),
])
def test_waiting_for_admission_names_the_local_queue_and_kueues_reason(workload, expected):
    assert waiting_message("team-a", workload) == expected


def test_workload_conditions_are_mirrored_and_announced():
    workload = {"status": {"conditions": [
        {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved in ClusterQueue cq"},
        {"type": "Admitted", "status": "True", "reason": "Admitted", "message": "The workload is admitted"},
        {"type": "Finished", "status": "False", "reason": "x"}]}}
    conds = mirrored_conditions(workload)
    assert [(c.type, c.status, c.reason) for c in conds] == [("QuotaReserved", True, "QuotaReserved"),
                                                               ("Admitted", True, "Admitted")]
    merged = [{"type": c.type, "status": c.status_text, "reason": c.reason, "message": c.message} for c in conds]
    assert {(e.type, e.reason) for e in condition_events([], merged)} == {("Normal", "Admitted")}
    preempted = [{"type": "Evicted", "status": "True", "reason": "Preempted", "message": "preempted"},
                 {"type": "Preempted", "status": "True", "reason": "InClusterQueue", "message": "preempted"}]
    assert {(e.type, e.reason) for e in condition_events([], preempted)} == {("Warning", "Preempted"),
                                                                             ("Warning", "InClusterQueue")}
