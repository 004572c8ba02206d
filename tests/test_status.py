"""Status decisions, from observed children (plain dicts) to phase and conditions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mlplatform.status.conditions import Cond, kstatus, merge
from mlplatform.status.dependencies import features_condition, resolve_model
from mlplatform.status.featureview import FeatureViewObserved, feature_view_report
from mlplatform.status.modeldeployment import ModelDeploymentObserved, model_deployment_report
from mlplatform.status.pods import failed_pod_message, first_problem, pod_problem
from mlplatform.status.trainingjob import QueueState, plan_run, run_state, training_job_report

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)


def pod(name="p-0", ready=False, **status) -> dict:
    conditions = status.pop("conditions", [])
    if ready:
        conditions.append({"type": "Ready", "status": "True"})
    return {"metadata": {"name": name, "labels": {}}, "status": {"conditions": conditions, **status}}


def deployment(replicas=2, ready=2, updated=2, generation=1, observed=1) -> dict:
    return {"metadata": {"name": "d", "generation": generation},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                       "observedGeneration": observed}}


def job(*conditions, **status) -> dict:
    return {"metadata": {"name": "j-1", "annotations": status.pop("annotations", {})},
            "spec": {"suspend": status.pop("suspend", False)},
            "status": {"conditions": [{"type": c, "status": "True", "reason": r, "message": m,
                                       "lastTransitionTime": "2026-11-25T11:00:00Z"} for c, r, m in conditions],
                       **status}}


# --- conditions ------------------------------------------------------------------------------

def test_last_transition_time_moves_only_on_flips():
    first = merge(None, [Cond("Ready", False, "RollingOut", "0/2")], 1, "t1")
    same_status = merge(first, [Cond("Ready", False, "Unschedulable", "no GPU")], 2, "t2")
    flipped = merge(same_status, [Cond("Ready", True, "AllReplicasAvailable", "2/2")], 2, "t3")
    assert first[0]["lastTransitionTime"] == "t1"
    assert same_status[0]["lastTransitionTime"] == "t1" and same_status[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_kstatus_pair():
    converging = kstatus(Cond("Ready", False, "RollingOut", "1/2"), converging=True)
    assert [(c.type, c.status, c.reason) for c in converging] == [
        ("Ready", False, "RollingOut"), ("Reconciling", True, "RollingOut"), ("Stalled", False, "NotStalled")]
    stalled = kstatus(Cond("Ready", False, "X", "m"), converging=True, stalled=Cond("Stalled", True, "X", "m"))
    assert stalled[1].status is False and stalled[2].status is True


# --- pods ------------------------------------------------------------------------------------

def test_pod_problems_in_order_of_what_tells_most():
    unschedulable = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/8 nodes are available: 8 Insufficient nvidia.com/gpu."}])
    assert pod_problem(unschedulable).reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in pod_problem(unschedulable).message
    missing_claim = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": 'persistentvolumeclaim "models" not found'}])
    assert pod_problem(missing_claim).reason == "ClaimNotFound"
    crash = pod(containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                                            "message": "back-off 40s"}}}])
    assert pod_problem(crash) .reason == "CrashLoopBackOff" and "container server: back-off 40s" in pod_problem(crash).message
    pull = pod(initContainerStatuses=[{"name": "storage-initializer",
                                       "state": {"waiting": {"reason": "ImagePullBackOff"}}}])
    assert pod_problem(pull).reason == "ImagePullBackOff"
    starting = pod(containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "ContainerCreating"}}}])
    assert pod_problem(starting) is None
    event = {"reason": "FailedMount", "message": "secret s3-creds not found", "lastTimestamp": "2026-11-25T10:00:00Z"}
    assert pod_problem(starting, [event]).reason == "FailedMount"
    assert pod_problem(pod(ready=True)) is None
    assert first_problem([pod("b", ready=True), crash]).reason == "CrashLoopBackOff"


def test_failed_pod_message_names_exit_code():
    failed = pod(phase="Failed", containerStatuses=[{"name": "trainer", "state": {"terminated": {
        "exitCode": 3, "reason": "Error", "message": "CUDA out of memory"}}}])
    assert failed_pod_message([failed]) == "pod p-0: container trainer exited with code 3 (Error): CUDA out of memory"
    assert failed_pod_message([pod(ready=True)]) is None


# --- ModelDeployment -------------------------------------------------------------------------

def md_observed(**overrides) -> ModelDeploymentObserved:
    values = dict(suspended=False, fixed_replicas=2, resolution=resolve_model("s3://m/", None, None),
                  features=features_condition([], {}), deployment=deployment(), hpa=None)
    values.update(overrides)
    return ModelDeploymentObserved(**values)


def ready_of(report):
    return next(c for c in report.conditions if c.type == "Ready")


def test_model_deployment_ready_only_when_replicas_are():
    report = model_deployment_report(md_observed())
    assert report.phase == "Ready" and ready_of(report).status and report.desired_replicas == 2
    rolling = model_deployment_report(md_observed(deployment=deployment(ready=1)))
    assert rolling.phase == "Progressing" and ready_of(rolling).reason == "RollingOut"
    stale = model_deployment_report(md_observed(deployment=deployment(generation=2, observed=1)))
    assert not ready_of(stale).status
    crash = pod(containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
    degraded = model_deployment_report(md_observed(deployment=deployment(ready=1), pods=[crash]))
    assert degraded.phase == "Degraded" and ready_of(degraded).reason == "CrashLoopBackOff"


def test_model_deployment_desired_replicas_follow_the_hpa():
    hpa = {"spec": {"minReplicas": 2}, "status": {"desiredReplicas": 5}}
    report = model_deployment_report(md_observed(fixed_replicas=None, hpa=hpa, deployment=deployment(5, 5, 5)))
    assert report.desired_replicas == 5 and ready_of(report).status


def test_model_deployment_waits_for_features_and_training():
    missing = features_condition(["driver-stats"], {"driver-stats": None})
    assert missing.reason == "FeatureViewNotFound"
    not_ready = features_condition(["a"], {"a": {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}})
    assert not_ready.reason == "FeatureViewNotReady"
    report = model_deployment_report(md_observed(features=not_ready))
    assert report.phase == "WaitingForFeatures" and not ready_of(report).status
    waiting = resolve_model(None, "train", {"status": {"phase": "Running", "run": 1}})
    report = model_deployment_report(md_observed(resolution=waiting, deployment=None))
    assert report.phase == "WaitingForTrainingJob" and ready_of(report).reason == "WaitingForTrainingJob"


def test_training_job_outcomes_resolve_or_stall_the_model():
    done = resolve_model(None, "t", {"status": {"phase": "Succeeded", "artifactUri": "s3://m/run-2/", "artifactRun": 2}})
    assert (done.uri, done.run, done.condition.status) == ("s3://m/run-2/", 2, True)
    # A later failed run keeps the earlier artifact deployed.
    kept = resolve_model(None, "t", {"status": {"phase": "Failed", "artifactUri": "s3://m/run-2/", "artifactRun": 2}})
    assert kept.uri == "s3://m/run-2/" and not kept.stalled
    failed = resolve_model(None, "t", {"status": {"phase": "Failed", "run": 1}})
    assert failed.stalled and failed.condition.reason == "TrainingJobFailed"
    report = model_deployment_report(md_observed(resolution=failed, deployment=None))
    stalled = next(c for c in report.conditions if c.type == "Stalled")
    assert report.phase == "Stalled" and stalled.status and stalled.reason == "TrainingJobFailed"
    no_output = resolve_model(None, "t", {"status": {"phase": "Succeeded", "run": 1}})
    assert no_output.stalled and no_output.condition.reason == "TrainingJobHasNoOutput"


def kstatus_of(report) -> dict:
    """What kstatus reads: Ready, Reconciling and Stalled."""
    return {c.type: (c.status, c.reason) for c in report.conditions if c.type in ("Ready", "Reconciling", "Stalled")}


def test_suspended_and_invalid_model_deployments():
    suspended = model_deployment_report(md_observed(suspended=True, deployment=deployment(0, 0, 0)))
    assert suspended.phase == "Suspended" and suspended.desired_replicas == 0
    # Suspended as asked: Ready (kstatus Current), neither converging nor stalled.
    assert kstatus_of(suspended) == {"Ready": (True, "Suspended"), "Reconciling": (False, "Reconciled"),
                                     "Stalled": (False, "NotStalled")}
    invalid = model_deployment_report(md_observed(render_error="spec.resources.gpu.type: found 'x'"))
    assert invalid.phase == "Stalled" and ready_of(invalid).reason == "InvalidSpec"
    assert kstatus_of(invalid)["Stalled"] == (True, "InvalidSpec") and kstatus_of(invalid)["Reconciling"][0] is False
    # An invalid spec stays Stalled when suspended too: resuming could not help.
    invalid_suspended = model_deployment_report(md_observed(suspended=True, render_error="bad"))
    assert kstatus_of(invalid_suspended)["Stalled"] == (True, "InvalidSpec")


def test_suspended_model_deployment_does_not_wait_for_its_training_job():
    waiting = resolve_model(None, "train", {"status": {"phase": "Running", "run": 1}})
    report = model_deployment_report(md_observed(suspended=True, resolution=waiting, deployment=None))
    assert report.phase == "Suspended" and kstatus_of(report)["Ready"] == (True, "Suspended")
    assert next(c for c in report.conditions if c.type == "ModelResolved").reason == "WaitingForTrainingJob"
    # A TrainingJob that failed stalls the deployment, suspended or not: only a change helps.
    failed = resolve_model(None, "train", {"status": {"phase": "Failed", "run": 1}})
    stalled = model_deployment_report(md_observed(suspended=True, resolution=failed, deployment=None))
    assert stalled.phase == "Stalled" and kstatus_of(stalled)["Stalled"] == (True, "TrainingJobFailed")
    assert kstatus_of(stalled)["Ready"][0] is False


# --- TrainingJob -----------------------------------------------------------------------------

def test_runs_start_on_create_and_on_spec_change_only():
    assert plan_run({}, "h1", False).run == 1 and plan_run({}, "h1", False).new_run
    running = {"run": 1, "runSpecHash": "h1", "runs": [{"run": 1, "phase": "Running"}]}
    assert plan_run(running, "h1", True).new_run is False
    assert plan_run(running, "h2", True).run == 2 and plan_run(running, "h2", True).new_run
    finished = {"run": 1, "runSpecHash": "h1", "runs": [{"run": 1, "phase": "Succeeded"}]}
    assert plan_run(finished, "h1", False).render_job is False  # its Job was removed by the TTL: not again
    assert plan_run(finished, "h1", True).render_job is True


def test_run_states_from_the_job():
    assert run_state(None, [], 1, False, None, None, None).reason == "Creating"
    done = run_state(job(("Complete", "", ""), completionTime="2026-11-25T11:05:00Z", succeeded=2), [], 2, False,
                     None, None, None)
    assert (done.phase, done.succeeded, done.completion_time) == ("Succeeded", 2, "2026-11-25T11:05:00Z")
    failed_pod = pod(phase="Failed", containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 1}}}])
    failed = run_state(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                       [failed_pod], 1, False, None, None, None)
    assert failed.phase == "Failed" and failed.reason == "BackoffLimitExceeded" and "exited with code 1" in failed.message
    running = run_state(job(active=2, ready=2), [], 2, False, None, None, None)
    assert running.phase == "Running" and running.active == 2
    unschedulable = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "Insufficient nvidia.com/gpu"}])
    pending = run_state(job(active=2, ready=1), [unschedulable], 2, False, None, None, None)
    assert pending.phase == "Pending" and pending.reason == "Unschedulable"
    no_kueue = run_state(job(suspend=True), [], 1, False, "team-a", QueueState(False, False), None)
    assert no_kueue.reason == "KueueNotInstalled" and "team-a" in no_kueue.message
    no_queue = run_state(job(suspend=True), [], 1, False, "team-a", QueueState(True, False), None)
    assert no_queue.reason == "LocalQueueNotFound"
    queued = run_state(job(suspend=True), [], 1, False, "team-a", QueueState(True, True), None)
    assert queued.reason == "WaitingForAdmission"
    assert run_state(job(suspend=True), [], 1, True, None, None, None).phase == "Suspended"
    gone = run_state(None, [], 1, False, None, None, {"phase": "Succeeded", "completionTime": "t"})
    assert gone.phase == "Succeeded"


def test_training_job_report_records_runs_and_artifacts():
    previous = {"run": 1, "runSpecHash": "h1", "runs": [{"run": 1, "generation": 1, "job": "t-1", "phase": "Running"}]}
    plan = plan_run(previous, "h2", True)
    state = run_state(job(active=1, ready=1), [], 1, False, None, None, None)
    report = training_job_report(previous, plan, "h2", 2, state, "s3://m/run-2/", "t-2")
    runs = report.status["runs"]
    assert [(r["run"], r["phase"]) for r in runs] == [(1, "Superseded"), (2, "Running")]
    assert runs[0]["reason"] == "SpecChanged" and report.status["runSpecHash"] == "h2"
    assert "artifactUri" not in report.status
    done = run_state(job(("Complete", "", "")), [], 1, False, None, None, None)
    finished = training_job_report(report.status, plan_run(report.status, "h2", True), "h2", 2, done,
                                   "s3://m/run-2/", "t-2")
    assert finished.status["artifactUri"] == "s3://m/run-2/" and finished.status["artifactRun"] == 2
    kinds = {c.type: c.status for c in finished.conditions}
    assert kinds == {"Ready": True, "Reconciling": False, "Stalled": False, "Running": False, "Succeeded": True,
                     "Failed": False}


def test_a_held_run_is_ready_as_suspended_and_a_failed_run_stalls():
    plan = plan_run({}, "h1", False)
    held = run_state(job(suspend=True), [], 1, True, None, None, None)
    report = training_job_report({}, plan, "h1", 1, held, "s3://m/run-1/", "t-1")
    assert report.status["phase"] == "Suspended" and "artifactUri" not in report.status
    assert kstatus_of(report) == {"Ready": (True, "Suspended"), "Reconciling": (False, "Reconciled"),
                                  "Stalled": (False, "NotStalled")}
    running = run_state(job(active=1, ready=1), [], 1, False, None, None, None)
    report = training_job_report({}, plan, "h1", 1, running, None, "t-1")
    assert kstatus_of(report) == {"Ready": (False, "WorkersRunning"), "Reconciling": (True, "WorkersRunning"),
                                  "Stalled": (False, "NotStalled")}
    failed = run_state(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                       [], 1, True, None, None, None)  # failed before it was suspended: still failed
    report = training_job_report({}, plan, "h1", 1, failed, None, "t-1")
    assert kstatus_of(report) == {"Ready": (False, "BackoffLimitExceeded"), "Reconciling": (False, "Reconciled"),
                                  "Stalled": (True, "BackoffLimitExceeded")}


def test_run_history_is_bounded():
    status = {}
    for run in range(1, 15):
        plan = plan_run(status, f"h{run}", False)
        status = training_job_report(status, plan, f"h{run}", run, run_state(None, [], 1, False, None, None, None),
                                     None, f"t-{run}").status
    assert [r["run"] for r in status["runs"]] == list(range(5, 15))


# --- FeatureView -----------------------------------------------------------------------------

def fv_observed(**overrides) -> FeatureViewObserved:
    values = dict(online=True, suspended=False, spec_hash="h1", max_staleness_seconds=3600,
                  materialization_jobs=[], server={"status": {"readyReplicas": 1}}, server_desired=1,
                  server_url="http://fv-features.ns.svc.cluster.local")
    values.update(overrides)
    return FeatureViewObserved(**values)


def materialized(at: str, spec_hash="h1", name="fv-materialize-h1") -> dict:
    return {"metadata": {"name": name, "annotations": {"mlplatform.dev/materialization-spec-hash": spec_hash}},
            "status": {"completionTime": at, "conditions": [{"type": "Complete", "status": "True"}]}}


def conds(report) -> dict:
    return {c.type: (c.status, c.reason) for c in report.conditions}


def test_feature_view_ready_fresh_and_one_wake_up():
    report = feature_view_report({}, fv_observed(materialization_jobs=[materialized("2026-11-25T11:30:00Z")]), NOW)
    assert conds(report)["Ready"] == (True, "Serving") and conds(report)["Fresh"] == (True, "WithinBudget")
    assert report.status["lastMaterializedAt"] == "2026-11-25T11:30:00Z"
    assert report.status["servingUrl"] == "http://fv-features.ns.svc.cluster.local"
    assert report.wake_at == datetime(2026, 11, 25, 12, 30, 1, tzinfo=timezone.utc)
    later = feature_view_report(report.status, fv_observed(), NOW + timedelta(hours=1))
    assert conds(later)["Fresh"] == (False, "Stale") and later.phase == "Stale" and later.wake_at is None
    assert conds(later)["Ready"][0] is True  # stale data is still served


def test_cron_materializations_advance_the_clock_and_old_jobs_do_not_rewind_it():
    previous = {"lastMaterializedAt": "2026-11-25T11:30:00Z", "materializationSpecHash": "h1"}
    cron_job = materialized("2026-11-25T11:55:00Z", spec_hash=None, name="fv-materialize-29123")
    older = materialized("2026-11-25T10:00:00Z")
    report = feature_view_report(previous, fv_observed(materialization_jobs=[older, cron_job]), NOW)
    assert report.status["lastMaterializedAt"] == "2026-11-25T11:55:00Z"
    assert report.status["lastMaterializationJob"] == "fv-materialize-29123"


def test_feature_view_materialization_states():
    running = {"metadata": {"name": "fv-materialize-h2", "annotations": {
        "mlplatform.dev/materialization-spec-hash": "h2"}}, "status": {"active": 1}}
    report = feature_view_report({"materializationSpecHash": "h1"}, fv_observed(spec_hash="h2",
                                 materialization_jobs=[running]), NOW)
    assert conds(report)["Materialized"] == (False, "Materializing") and report.phase == "Materializing"
    assert conds(report)["Reconciling"] == (True, "Materializing") and conds(report)["Stalled"][0] is False
    failed = {**running, "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}
    report = feature_view_report({}, fv_observed(spec_hash="h2", materialization_jobs=[failed]), NOW)
    assert conds(report)["Materialized"] == (False, "MaterializationFailed") and report.phase == "Failed"
    never = feature_view_report({}, fv_observed(), NOW)
    assert conds(never)["Fresh"] == (False, "NeverMaterialized")


def test_feature_server_gates_ready_and_the_url():
    jobs = [materialized("2026-11-25T11:30:00Z")]
    report = feature_view_report({}, fv_observed(materialization_jobs=jobs, server={"status": {}}), NOW)
    assert conds(report)["Ready"] == (False, "FeatureServerNotReady") and "servingUrl" not in {
        k for k, v in report.status.items() if v}
    offline = feature_view_report({}, fv_observed(online=False, server=None, materialization_jobs=jobs), NOW)
    assert conds(offline)["Ready"] == (True, "Registered") and conds(offline)["Fresh"] == (True, "Offline")


def test_status_messages_do_not_change_with_time():
    """A message that changed on every reconcile would rewrite status forever."""
    previous = {"lastMaterializedAt": "2026-11-25T11:30:00Z", "materializationSpecHash": "h1"}
    first = feature_view_report(previous, fv_observed(), NOW)
    second = feature_view_report(previous, fv_observed(), NOW + timedelta(minutes=5))
    assert first.conditions == second.conditions


def failed_job(name="fv-materialize-h2", spec_hash="h2", at="2026-11-25T11:10:00Z") -> dict:
    return {"metadata": {"name": name, "creationTimestamp": "2026-11-25T11:00:00Z",
                         "annotations": {"mlplatform.dev/materialization-spec-hash": spec_hash}},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                       "message": "Job has reached the specified backoff limit",
                                       "lastTransitionTime": at}]}}


def scheduled(name: str, created: str, completed: str) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"completionTime": completed, "conditions": [{"type": "Complete", "status": "True"}]}}


def test_failed_materialization_stalls_until_a_later_scheduled_one_succeeds():
    previous = {"lastMaterializedAt": "2026-11-25T10:00:00Z", "materializationSpecHash": "h1"}
    report = feature_view_report(previous, fv_observed(spec_hash="h2", materialization_jobs=[failed_job()]), NOW)
    stalled = next(c for c in report.conditions if c.type == "Stalled")
    assert report.phase == "Failed" and stalled.status is True and stalled.reason == "MaterializationFailed"
    assert "backoff limit" in stalled.message
    assert "a later successful scheduled materialization or a spec change clears it" in stalled.message
    assert conds(report)["Reconciling"] == (False, "Reconciled") and conds(report)["Ready"][0] is False
    assert report.status["materializationSpecHash"] == "h1"
    # A scheduled Job that started before the failure may have run the previous spec: still stalled.
    before = scheduled("fv-materialize-29000", "2026-11-25T11:05:00Z", "2026-11-25T11:12:00Z")
    report = feature_view_report(previous, fv_observed(spec_hash="h2", materialization_jobs=[failed_job(), before]),
                                 NOW)
    assert conds(report)["Stalled"] == (True, "MaterializationFailed")
    assert report.status["lastMaterializedAt"] == "2026-11-25T11:12:00Z"  # it did materialize, though
    # One created after the failure ran this spec: its success clears the failure, for good.
    after = scheduled("fv-materialize-29001", "2026-11-25T11:30:00Z", "2026-11-25T11:31:00Z")
    jobs = [failed_job(), before, after]
    report = feature_view_report(previous, fv_observed(spec_hash="h2", materialization_jobs=jobs), NOW)
    assert conds(report)["Stalled"] == (False, "NotStalled") and conds(report)["Ready"] == (True, "Serving")
    assert conds(report)["Materialized"] == (True, "Materialized") and report.phase == "Ready"
    assert report.status["materializationSpecHash"] == "h2"
    later = feature_view_report(report.status, fv_observed(spec_hash="h2", materialization_jobs=[failed_job()]), NOW)
    assert conds(later)["Ready"] == (True, "Serving")


def test_failed_materialization_is_cleared_by_a_spec_change():
    previous = {"lastMaterializedAt": "2026-11-25T10:00:00Z", "materializationSpecHash": "h1"}
    retry = {"metadata": {"name": "fv-materialize-h3", "annotations": {
        "mlplatform.dev/materialization-spec-hash": "h3"}}, "status": {"active": 1}}
    report = feature_view_report(previous, fv_observed(spec_hash="h3", materialization_jobs=[failed_job(), retry]), NOW)
    assert conds(report)["Stalled"] == (False, "NotStalled") and conds(report)["Reconciling"] == (True, "Materializing")


def test_stalled_message_of_suspended_and_offline_views():
    suspended = feature_view_report({}, fv_observed(spec_hash="h2", suspended=True,
                                                    materialization_jobs=[failed_job()]), NOW)
    assert "scheduled materialization (suspended now: spec.suspend is true) or a spec change clears it" in \
        next(c for c in suspended.conditions if c.type == "Stalled").message
    offline = feature_view_report({}, fv_observed(spec_hash="h2", online=False, server=None,
                                                  materialization_jobs=[failed_job()]), NOW)
    stalled = next(c for c in offline.conditions if c.type == "Stalled")
    assert stalled.status and stalled.message.endswith("a spec change clears it (an offline-only view has no "
                                                       "scheduled materialization)")


def test_suspending_is_announced_once_and_resuming_as_progress():
    from mlplatform.status.events import condition_events

    def md(ready: tuple[str, str], reconciling: str = "False") -> list[dict]:
        return [{"type": "Ready", "status": ready[0], "reason": ready[1], "message": "m"},
                {"type": "Reconciling", "status": reconciling, "reason": "r", "message": ""},
                {"type": "Stalled", "status": "False", "reason": "NotStalled", "message": ""}]
    serving, suspended = md(("True", "AllReplicasAvailable")), md(("True", "Suspended"))
    assert [(e.type, e.reason) for e in condition_events(None, suspended)] == [("Normal", "Suspended")]
    assert [(e.type, e.reason) for e in condition_events(serving, suspended)] == [("Normal", "Suspended")]
    assert condition_events(suspended, suspended) == []
    resumed = md(("False", "RollingOut"), "True")
    assert [(e.type, e.reason) for e in condition_events(suspended, resumed)] == [("Normal", "RollingOut")]
