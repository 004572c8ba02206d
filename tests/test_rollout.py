"""The canary state machine (operator/mlplatform/rollout.py) as a table: inputs -> what runs, weight, status."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pytest

from mlplatform.rollout import (
    CanaryPolicy,
    RolloutInputs,
    canary_replicas,
    plan_rollout,
    without_canary,
)

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
POLICY = CanaryPolicy(steps=(10, 50), step_seconds=30)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def running(step: int, phase: str = "Progressing", canary: str = "new", step_start: datetime | None = None) -> dict:
    status = {"phase": phase, "step": step, "canaryWeight": POLICY.steps[step - 1], "canaryHash": canary,
              "stableHash": "old", "startTime": iso(T0)}
    if step_start:
        status["stepStartTime"] = iso(step_start)
    return status


# 4 replicas behind a Gateway: 10% needs 1 Ready canary pod, 50% needs 2.
BASE = RolloutInputs(policy=POLICY, desired_hash="new", desired_model_uri="s3://m/run-3/", stable_hash="old",
                     stable_model_uri="s3://m/run-2/", previous=None, now=T0, total_replicas=4, exact_weights=True)
READY_1, READY_2 = 1, 2


@dataclass
class Row:
    name: str
    inputs: RolloutInputs
    stable_takes_desired: bool
    canary: bool
    weight: int
    status: dict | None = field(default_factory=dict)  # expected subset of status.rollout; None: no status
    requeue_after: float | None = None
    aborted: bool = False
    capacity_weight: int | None = None


ROWS = [
    Row("first deployment: never a canary", replace(BASE, stable_hash=None), True, False, 0, None),
    Row("template unchanged: nothing to do", replace(BASE, desired_hash="old"), True, False, 0, None),
    Row("no canary policy: the change goes out directly", replace(BASE, policy=None), True, False, 0, None),
    Row("a change starts the canary at step 1: sized for 10%, no traffic until Ready", BASE, False, True, 0,
        {"phase": "Progressing", "step": 1, "canaryWeight": 0, "canaryModelUri": "s3://m/run-3/",
         "stableModelUri": "s3://m/run-2/", "canaryHash": "new", "startTime": iso(T0)}, capacity_weight=10),
    Row("step 1, canary not Ready yet: no weight, no clock", replace(BASE, previous=running(1)), False, True, 0,
        {"phase": "Progressing", "step": 1, "canaryWeight": 0, "stepStartTime": None,
         "message": "step 1/2 at 10%: waiting for 1 Ready canary replica(s) (0 Ready), 0% routed to the canary "
                    "meanwhile"}, capacity_weight=10),
    Row("step 1, canary Ready: the weight is set and the step's clock starts",
        replace(BASE, previous=running(1), canary_ready_replicas=READY_1),
        False, True, 10, {"step": 1, "canaryWeight": 10, "stepStartTime": iso(T0)}, requeue_after=30),
    Row("step 1 held 10 of 30 s: holds, requeued for the rest",
        replace(BASE, previous=running(1, step_start=T0 - timedelta(seconds=10)), canary_ready_replicas=READY_1),
        False, True, 10, {"step": 1, "stepStartTime": iso(T0 - timedelta(seconds=10))}, requeue_after=20),
    Row("step 1 held 29.6 of 30 s: sub-second precision, the step does not end early",
        replace(BASE, previous=running(1, step_start=T0 - timedelta(seconds=29.6)), canary_ready_replicas=READY_1),
        False, True, 10, {"step": 1, "stepStartTime": iso(T0 - timedelta(seconds=29.6))},
        requeue_after=pytest.approx(0.4)),
    Row("step 1 held 30 s, 1 Ready: step 2, sized for 50%, keeps routing 10% until 2 are Ready",
        replace(BASE, previous=running(1, step_start=T0 - timedelta(seconds=30)), canary_ready_replicas=READY_1),
        False, True, 10, {"phase": "Progressing", "step": 2, "canaryWeight": 10, "stepStartTime": None},
        capacity_weight=50),
    Row("step 2 with 2 Ready: 50% routed, its clock starts",
        replace(BASE, previous={**running(2), "canaryWeight": 10}, canary_ready_replicas=READY_2),
        False, True, 50, {"step": 2, "canaryWeight": 50, "stepStartTime": iso(T0)}, requeue_after=30),
    Row("canary not Ready after growing for step 2: the step's clock waits",
        replace(BASE, previous=running(2, step_start=T0 - timedelta(seconds=5)), canary_ready_replicas=READY_1),
        False, True, 10, {"step": 2, "stepStartTime": None, "canaryWeight": 10}),
    Row("last step held: promoting, the stable takes the new template, the canary keeps its 50%",
        replace(BASE, previous=running(2, step_start=T0 - timedelta(seconds=31)), canary_ready_replicas=READY_2),
        True, True, 50, {"phase": "Promoting", "step": 3, "canaryWeight": 50, "stableHash": "old"},
        capacity_weight=50),
    Row("promoting, the stable Deployment still rolling: the canary keeps serving its share",
        replace(BASE, stable_hash="new", canary_ready_replicas=READY_2,
                previous={**running(2), "phase": "Promoting", "step": 3}),
        True, True, 50, {"phase": "Promoting", "stableHash": "old"}),
    Row("promoting, the stable Deployment available on the new template: promoted, the canary goes",
        replace(BASE, stable_hash="new", canary_ready_replicas=READY_2, stable_rolled=True,
                previous={**running(2), "phase": "Promoting", "step": 3}),
        True, False, 0, {"phase": "Promoted", "step": 3, "canaryWeight": 100, "stableModelUri": "s3://m/run-3/",
                         "stableHash": "new"}),
    Row("a promotion whose status write was lost is a promotion, not a revert",
        replace(BASE, stable_hash="new", canary_ready_replicas=READY_2,
                previous=running(2, step_start=T0 - timedelta(seconds=31))),
        True, True, 50, {"phase": "Promoting"}),
    Row("after promotion the stable runs the new template: status stays",
        replace(BASE, stable_hash="new", previous={"phase": "Promoted", "canaryHash": "new", "step": 3}),
        True, False, 0, {"phase": "Promoted", "step": 3}),
    Row("pause holds at the current step, however long",
        replace(BASE, policy=replace(POLICY, pause=True), canary_ready_replicas=READY_1,
                previous=running(1, step_start=T0 - timedelta(hours=5))),
        False, True, 10, {"phase": "Paused", "step": 1, "stepStartTime": None}),
    Row("pause lifted: the step holds its full time again",
        replace(BASE, canary_ready_replicas=READY_1, previous=running(1, phase="Paused")),
        False, True, 10, {"phase": "Progressing", "step": 1, "stepStartTime": iso(T0)}, requeue_after=30),
    Row("a canary starting while paused is Paused at step 1",
        replace(BASE, policy=replace(POLICY, pause=True)), False, True, 0, {"phase": "Paused", "step": 1}),
    Row("progress deadline exceeded: aborted, weight 0, canary removed, stable kept",
        replace(BASE, previous=running(2), canary_failure="CrashLoopBackOff: container server keeps crashing"),
        False, False, 0, {"phase": "Aborted", "step": 2, "canaryWeight": 0, "reason": "ProgressDeadlineExceeded",
                          "message": "canary aborted at step 2/2: CrashLoopBackOff: container server keeps crashing"},
        aborted=True),
    Row("aborted stays aborted for the same template",
        replace(BASE, previous={**running(1), "phase": "Aborted", "canaryWeight": 0}), False, False, 0,
        {"phase": "Aborted"}),
    Row("a later spec change after an abort starts a new canary",
        replace(BASE, desired_hash="newer", previous={**running(1), "phase": "Aborted", "canaryWeight": 0}),
        False, True, 0, {"phase": "Progressing", "step": 1, "canaryHash": "newer"}),
    Row("an edit mid-canary restarts from step 1 with the newest template, no weight until it is Ready",
        replace(BASE, desired_hash="newer", canary_ready_replicas=READY_2,
                previous=running(2, step_start=T0 - timedelta(seconds=10))),
        False, True, 0, {"phase": "Progressing", "step": 1, "canaryHash": "newer", "startTime": iso(T0),
                         "message": "the spec changed during the canary: restarted from step 1; step 1/2 at 10%: "
                                    "waiting for 1 Ready canary replica(s) (0 Ready), 0% routed to the canary "
                                    "meanwhile"}),
    Row("the spec reverted to the stable template mid-canary: canary removed",
        replace(BASE, desired_hash="old", previous=running(1, step_start=T0)), True, False, 0,
        {"phase": "Aborted", "reason": "SpecReverted", "canaryWeight": 0, "stepStartTime": None}),
    Row("canary policy removed mid-canary: the new template goes out directly",
        replace(BASE, policy=None, previous=running(1)), True, False, 0, {"phase": "Promoted", "canaryWeight": 100}),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_plan_rollout(row: Row):
    decision = plan_rollout(row.inputs)
    assert (decision.stable_takes_desired, decision.canary, decision.weight) == \
        (row.stable_takes_desired, row.canary, row.weight)
    if row.status is None:
        assert decision.status is None
    else:
        for k, v in row.status.items():
            assert (decision.status or {}).get(k) == v, f"status.rollout.{k}: {decision.status}"
    assert decision.requeue_after == row.requeue_after
    assert (decision.aborted is not None) == row.aborted
    if row.aborted:
        assert decision.aborted == decision.status["message"]
    if row.capacity_weight is not None:
        assert decision.capacity_weight == row.capacity_weight


def test_a_whole_canary_goes_10_50_100():
    """Feeding each decision back as the previous status walks every step to the promotion; the canary's
    pods become Ready one reconcile after it is sized, the stable one rolls one reconcile after promotion."""
    inputs, seen, now = BASE, [], T0
    for _ in range(12):
        decision = plan_rollout(inputs)
        seen.append((decision.status["phase"], decision.weight if decision.canary else None))
        if decision.status["phase"] == "Promoted":
            break
        now += timedelta(seconds=31)
        ready = canary_replicas(4, decision.capacity_weight, True)
        inputs = replace(inputs, previous=decision.status, canary_ready_replicas=ready, now=now,
                         stable_hash="new" if decision.stable_takes_desired else "old",
                         stable_rolled=decision.status["phase"] == "Promoting")
    assert seen == [("Progressing", 0), ("Progressing", 10), ("Progressing", 10), ("Progressing", 50),
                    ("Promoting", 50), ("Promoted", None)]


def test_the_step_start_time_keeps_sub_second_precision():
    first = plan_rollout(replace(BASE, previous=running(1), canary_ready_replicas=READY_1,
                                 now=T0 + timedelta(microseconds=700_000)))
    assert first.status["stepStartTime"] == "2026-11-28T12:00:00.700000Z"
    later = plan_rollout(replace(BASE, previous=first.status, canary_ready_replicas=READY_1,
                                 now=T0 + timedelta(seconds=30, microseconds=400_000)))
    assert later.status["step"] == 1 and later.requeue_after == pytest.approx(0.3)


def test_without_canary_ends_a_running_one_and_keeps_others():
    assert without_canary(None).status is None
    assert without_canary({"phase": "Aborted"}).status == {"phase": "Aborted"}
    assert without_canary(running(1)).status["phase"] == "Promoted"


@pytest.mark.parametrize("total,weight,exact,canary", [
    (10, 10, True, 1),      # a Gateway splits exactly: capacity for the share
    (10, 50, True, 5),
    (3, 50, True, 2),
    (10, 10, False, 1),     # the Service splits by pods: 1 of 11 ~ 10%
    (10, 50, False, 10),    # 10 of 20
    (2, 25, False, 1),      # 1 of 3
    (4, 10, False, 1),      # never zero while the canary runs
    (9, 25, False, 3),      # 3 of 12 = 25%
    (10, 0, False, 0),
])
def test_canary_replicas(total, weight, exact, canary):
    assert canary_replicas(total, weight, exact) == canary
