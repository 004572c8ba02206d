"""Run metrics from worker 0's termination message, promotion bounds, and the route's status: pure functions."""

from __future__ import annotations

import pytest

from mlplatform.api.modeldeployment import MetricBound
from mlplatform.status.conditions import Cond
from mlplatform.status.gateway import route_condition, with_route
from mlplatform.status.promotion import missed_bound, resolve_promoted
from mlplatform.status.run_metrics import parse_metrics, record_metrics, worker_zero_message


@pytest.mark.parametrize("message,metrics,problem", [
    ('{"auc": 0.95, "loss": 0.2, "epochs": 10}', {"auc": 0.95, "loss": 0.2, "epochs": 10.0}, None),
    ("", None, None),
    (None, None, None),
    ("auc=0.9", None, "not JSON"),
    ("[0.9]", None, "JSON list, not an object of numbers"),
    ('{"auc": "high"}', None, "'auc' is not a number"),
    ('{"auc": true, "f1": null}', None, "'auc', 'f1' are not numbers"),
    ('{"auc": NaN}', None, "'auc' is not a number"),
])
def test_parse_metrics(message, metrics, problem):
    reading = parse_metrics(message)
    assert reading.metrics == metrics
    assert (reading.problem is None) == (problem is None)
    if problem:
        assert problem in reading.problem


def pod(index: str, phase: str = "Succeeded", message: str | None = None, exit_code: int = 0) -> dict:
    terminated = {"exitCode": exit_code, **({"message": message} if message is not None else {})}
    return {"metadata": {"name": f"p{index}", "annotations": {"batch.kubernetes.io/job-completion-index": index}},
            "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]}}


def test_only_worker_zero_counts():
    assert worker_zero_message([pod("1", message='{"auc": 1}'), pod("0", message='{"auc": 0.5}')]) == '{"auc": 0.5}'
    assert worker_zero_message([pod("1", message='{"auc": 1}')]) is None
    assert worker_zero_message([pod("0", phase="Running", message='{"auc": 1}')]) is None


def status_with(run: int, phase: str, runs: list[dict] | None = None) -> dict:
    return {"run": run, "runs": (runs or []) + [{"run": run, "phase": phase}]}


def test_metrics_are_recorded_once_when_the_run_succeeds():
    previous = status_with(2, "Running", [{"run": 1, "phase": "Succeeded", "metrics": {"auc": 0.9}}])
    previous["metrics"] = {"auc": 0.9}
    status = status_with(2, "Succeeded", [{"run": 1, "phase": "Succeeded", "metrics": {"auc": 0.9}}])
    assert record_metrics(status, previous, 2, [pod("0", message='{"auc": 0.95}')]) is None
    assert status["runs"][-1]["metrics"] == {"auc": 0.95} and status["metrics"] == {"auc": 0.95}


def test_bad_json_succeeds_without_metrics_and_says_why():
    previous = status_with(2, "Running", [{"run": 1, "phase": "Succeeded", "metrics": {"auc": 0.9}}])
    status = status_with(2, "Succeeded", [{"run": 1, "phase": "Succeeded", "metrics": {"auc": 0.9}}])
    problem = record_metrics(status, previous, 2, [pod("0", message="{oops")])
    assert problem.startswith("run 2 succeeded without metrics: the termination message is not JSON")
    assert "metrics" not in status["runs"][-1]
    assert "metrics" not in status  # status.metrics is of the latest succeeded run, which has none
    # Next reconcile: already Succeeded, nothing announced again.
    assert record_metrics(status_with(2, "Succeeded"), status, 2, [pod("0", message="{oops")]) is None


def test_a_failed_run_keeps_the_previous_metrics():
    previous = {"run": 3, "metrics": {"auc": 0.9}, "runs": [{"run": 2, "phase": "Succeeded", "metrics": {"auc": 0.9}},
                                                           {"run": 3, "phase": "Running"}]}
    status = {"run": 3, "runs": [{"run": 2, "phase": "Succeeded", "metrics": {"auc": 0.9}}, {"run": 3, "phase": "Failed"}]}
    assert record_metrics(status, previous, 3, []) is None
    assert status["metrics"] == {"auc": 0.9}


BOUNDS = [MetricBound(name="auc", min=0.9), MetricBound(name="loss", max=0.3)]


@pytest.mark.parametrize("metrics,miss", [
    ({"auc": 0.95, "loss": 0.2}, None),
    ({"auc": 0.9, "loss": 0.3}, None),          # bounds are inclusive
    ({"auc": 0.8, "loss": 0.2}, "auc 0.8 < min 0.9"),
    ({"auc": 0.95, "loss": 0.5}, "loss 0.5 > max 0.3"),
    ({"auc": 0.95}, "loss not recorded"),
    (None, "auc not recorded"),                   # no metrics: every bound fails
])
def test_missed_bound(metrics, miss):
    assert missed_bound(metrics, BOUNDS) == miss


def tj_with_runs(*runs: tuple[int, str, dict | None]) -> dict:
    return {"status": {"run": runs[-1][0], "phase": runs[-1][1], "runs": [
        {"run": n, "phase": phase, **({"artifactUri": f"s3://m/run-{n}/"} if phase == "Succeeded" else {}),
         **({"metrics": m} if m is not None else {})} for n, phase, m in runs]}}


def test_promotion_follows_the_newest_qualifying_run_and_names_the_skipped():
    job = tj_with_runs((1, "Succeeded", {"auc": 0.85, "loss": 0.2}), (2, "Succeeded", {"auc": 0.95, "loss": 0.2}),
                       (3, "Succeeded", {"auc": 0.80, "loss": 0.2}), (4, "Failed", None))
    r = resolve_promoted("train", job, BOUNDS)
    assert (r.uri, r.run, r.condition.status, r.condition.reason) == ("s3://m/run-2/", 2, True, "TrainingJobSucceeded")
    assert "run 3 skipped: auc 0.8 < min 0.9" in r.condition.message


def test_no_qualifying_run():
    r = resolve_promoted("train", tj_with_runs((1, "Succeeded", {"auc": 0.5, "loss": 0.2}), (2, "Succeeded", None)), BOUNDS)
    assert r.uri is None and r.stalled  # the TrainingJob finished: only an edit (of it or the bounds) helps
    assert r.condition.reason == "NoQualifyingRun"
    assert "run 2 skipped: auc not recorded; run 1 skipped: auc 0.5 < min 0.9" in r.condition.message


def test_no_qualifying_run_while_a_newer_run_goes_is_not_stalled():
    r = resolve_promoted("train", tj_with_runs((1, "Succeeded", {"auc": 0.5, "loss": 0.2}), (2, "Running", None)), BOUNDS)
    assert r.condition.reason == "NoQualifyingRun" and not r.stalled


def test_no_succeeded_run_yet_waits_as_without_bounds():
    r = resolve_promoted("train", tj_with_runs((1, "Running", None)), BOUNDS)
    assert r.uri is None and r.condition.reason == "WaitingForTrainingJob"
    assert resolve_promoted("train", None, BOUNDS).condition.reason == "WaitingForTrainingJob"


def route(*parents: dict, refs: int = 1) -> dict:
    return {"spec": {"parentRefs": [{"name": f"g{i}"} for i in range(refs)]}, "status": {"parents": list(parents)}}


def parent(name: str, accepted: tuple[str, str, str], resolved: tuple[str, str, str] = ("True", "ResolvedRefs", "")) -> dict:
    return {"parentRef": {"name": name, "namespace": "gw"}, "controllerName": "example.com/gw",
            "conditions": [{"type": "Accepted", "status": accepted[0], "reason": accepted[1], "message": accepted[2]},
                           {"type": "ResolvedRefs", "status": resolved[0], "reason": resolved[1], "message": resolved[2]}]}


@pytest.mark.parametrize("obj,status,reason,text", [
    (None, None, "WaitingForGateway", "not created"),
    (route(), None, "WaitingForGateway", "0/1"),
    (route(parent("g0", ("True", "Accepted", ""))), True, "Accepted", "accepted by 1"),
    (route(parent("g0", ("False", "NotAllowedByListeners", "no listener allows this namespace"))), False,
     "NotAllowedByListeners", "Gateway gw/g0: Accepted False: no listener allows this namespace"),
    (route(parent("g0", ("True", "Accepted", ""), ("False", "BackendNotFound", "service scorer-canary not found"))),
     False, "BackendNotFound", "ResolvedRefs False: service scorer-canary not found"),
    (route(parent("g0", ("True", "Accepted", "")), refs=2), None, "WaitingForGateway", "1/2"),
])
def test_route_condition(obj, status, reason, text):
    cond = route_condition(obj, "team")
    assert (cond.status, cond.reason) == (status, reason)
    assert text in cond.message


def test_route_condition_without_the_gateway_api():
    cond = route_condition(None, "team", gateway_api_installed=False)
    assert cond.reason == "GatewayAPINotInstalled"
    phase, out = with_route("Ready", [Cond("Ready", True, "AllReplicasAvailable"), Cond("Stalled", False, "NotStalled")],
                            cond)
    assert phase == "Stalled" and [c.status for c in out[:2]] == [False, True]


def test_a_refused_route_makes_a_ready_resource_not_ready():
    conds = [Cond("Ready", True, "AllReplicasAvailable", "2/2"), Cond("Stalled", False, "NotStalled")]
    refused = Cond("RouteAccepted", False, "NotAllowedByListeners", "Gateway gw/g0: ...")
    phase, out = with_route("Ready", conds, refused)
    assert phase == "Degraded"
    assert out[0] == Cond("Ready", False, "NotAllowedByListeners", "Gateway gw/g0: ...") and out[-1] == refused
    waiting = Cond("RouteAccepted", None, "WaitingForGateway", "")
    assert with_route("Ready", conds, waiting) == ("Ready", conds + [waiting])
