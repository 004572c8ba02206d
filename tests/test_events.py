"""Which condition changes become Events, and of which type (status.events.condition_events)."""

from __future__ import annotations

import pytest

from mlplatform.status.events import condition_events


def c(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message}


MD_CREATING = [c("Ready", "False", "Creating"), c("Reconciling", "True", "Creating"),
               c("Stalled", "False", "NotStalled"), c("ModelResolved", "True", "ModelUri"),
               c("FeaturesReady", "True", "NoFeatures")]
MD_ROLLING_OUT = [c("Ready", "False", "RollingOut"), *MD_CREATING[1:]]
MD_READY = [c("Ready", "True", "AllReplicasAvailable"), c("Reconciling", "False", "Reconciled"), *MD_CREATING[2:]]


def run(ready: tuple[str, str], running: tuple[str, str], succeeded: tuple[str, str], failed: tuple[str, str],
        stalled: tuple[str, str] = ("False", "NotStalled")) -> list[dict]:
    return [c("Ready", *ready), c("Stalled", *stalled), c("Running", *running), c("Succeeded", *succeeded),
            c("Failed", *failed)]


TJ_STARTING = run(("False", "WorkersStarting"), ("False", "Pending"), ("False", "Pending"), ("False", "NotFailed"))
TJ_RUNNING = run(("False", "WorkersRunning"), ("True", "WorkersRunning"), ("False", "Running"), ("False", "NotFailed"))
TJ_FAILED = run(("False", "BackoffLimitExceeded"), ("False", "Failed"), ("False", "Failed"),
                ("True", "BackoffLimitExceeded"), stalled=("True", "BackoffLimitExceeded"))
TJ_SUCCEEDED = run(("True", "Succeeded"), ("False", "Succeeded"), ("True", "Completed"), ("False", "NotFailed"))


def replace(conditions: list[dict], *changed: dict) -> list[dict]:
    by_type = {x["type"]: x for x in changed}
    return [by_type.get(x["type"], x) for x in conditions]


CASES = [
    ("first appearance in the initial state", None, MD_CREATING, []),
    ("first appearance of a waiting TrainingJob", None, TJ_STARTING, []),
    ("first appearance already Ready", None, MD_READY, [("Normal", "AllReplicasAvailable")]),
    ("first appearance crash-looping", None, replace(MD_CREATING, c("Ready", "False", "CrashLoopBackOff")),
     [("Warning", "CrashLoopBackOff")]),
    ("no change", MD_ROLLING_OUT, MD_ROLLING_OUT, []),
    ("progress reason changes while not Ready", MD_CREATING, MD_ROLLING_OUT, []),
    ("Ready False -> True", MD_ROLLING_OUT, MD_READY, [("Normal", "AllReplicasAvailable")]),
    ("Ready True -> False for a rollout after an edit", MD_READY, MD_ROLLING_OUT, [("Normal", "RollingOut")]),
    ("recovering from a crash loop", replace(MD_ROLLING_OUT, c("Ready", "False", "CrashLoopBackOff")), MD_READY,
     [("Normal", "AllReplicasAvailable")]),
    ("CrashLoopBackOff", MD_ROLLING_OUT, replace(MD_ROLLING_OUT, c("Ready", "False", "CrashLoopBackOff")),
     [("Warning", "CrashLoopBackOff")]),
    ("ImagePullBackOff", MD_ROLLING_OUT, replace(MD_ROLLING_OUT, c("Ready", "False", "ImagePullBackOff")),
     [("Warning", "ImagePullBackOff")]),
    ("Unschedulable", MD_ROLLING_OUT, replace(MD_ROLLING_OUT, c("Ready", "False", "Unschedulable")),
     [("Warning", "Unschedulable")]),
    ("one trouble turning into another", replace(MD_ROLLING_OUT, c("Ready", "False", "ImagePullBackOff")),
     replace(MD_ROLLING_OUT, c("Ready", "False", "CrashLoopBackOff")), [("Warning", "CrashLoopBackOff")]),
    ("Ready falls from True to trouble", MD_READY, replace(MD_ROLLING_OUT, c("Ready", "False", "Unschedulable")),
     [("Warning", "Unschedulable")]),
    ("healthy run going Running", TJ_STARTING, TJ_RUNNING, [("Normal", "WorkersRunning")]),
    ("failed run: one Warning for Ready, Stalled and Failed", TJ_RUNNING, TJ_FAILED,
     [("Warning", "BackoffLimitExceeded")]),
    ("run succeeded", TJ_RUNNING, TJ_SUCCEEDED, [("Normal", "Succeeded"), ("Normal", "Completed")]),
    ("Running True -> False on success", [c("Running", "True", "WorkersRunning")],
     [c("Running", "False", "Succeeded")], []),
    ("Succeeded stays False with a new reason", [c("Succeeded", "False", "Pending")],
     [c("Succeeded", "False", "Running")], []),
    ("Fresh False Stale", [c("Fresh", "True", "WithinBudget")], [c("Fresh", "False", "Stale")], [("Warning", "Stale")]),
    ("Fresh recovers", [c("Fresh", "False", "Stale")], [c("Fresh", "True", "WithinBudget")],
     [("Normal", "WithinBudget")]),
    ("never materialized yet is progress", None, [c("Fresh", "False", "NeverMaterialized")], []),
    ("materialization failed", [c("Materialized", "False", "Materializing")],
     [c("Materialized", "False", "MaterializationFailed")], [("Warning", "MaterializationFailed")]),
    ("FeatureView gone missing", [c("FeaturesReady", "True", "FeatureViewsReady")],
     [c("FeaturesReady", "False", "FeatureViewNotFound")], [("Warning", "FeatureViewNotFound")]),
    ("waiting for a FeatureView to become Ready is progress", [c("FeaturesReady", "True", "FeatureViewsReady")],
     [c("FeaturesReady", "False", "FeatureViewNotReady")], []),
    ("conditions outside the policy are never announced", [c("Reconciling", "False", "Reconciled")],
     [c("Reconciling", "True", "CrashLoopBackOff")], []),
]


@pytest.mark.parametrize("previous,merged,expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_condition_events(previous, merged, expected):
    assert [(e.type, e.reason) for e in condition_events(previous, merged)] == expected


def test_a_healthy_run_never_warns():
    transitions = [(None, TJ_STARTING), (TJ_STARTING, TJ_RUNNING), (TJ_RUNNING, TJ_SUCCEEDED)]
    events = [e for before, after in transitions for e in condition_events(before, after)]
    assert [e.type for e in events] == ["Normal", "Normal", "Normal"]
    assert all(e.reason != "WorkersRunning" or e.type == "Normal" for e in events)


def test_the_message_is_the_condition_s_or_says_its_state():
    [with_message] = condition_events(MD_ROLLING_OUT, replace(MD_ROLLING_OUT, c(
        "Ready", "False", "CrashLoopBackOff", "pod p-0: container server: back-off 5m")))
    assert with_message.message == "pod p-0: container server: back-off 5m"
    [without] = condition_events([c("Fresh", "True", "WithinBudget")], [c("Fresh", "False", "Stale")])
    assert without.message == "Fresh is False"
