"""The pieces of reconciling that are pure: drift detection, ownership."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mlplatform.controllers.base import (
    EVENTS_AFTER_PENDING_SECONDS,
    controlled_by,
    is_subset,
    up_to_date,
    warning_events_if_needed,
    with_intent_hash,
)
from mlplatform.labels import INTENT_HASH_ANNOTATION, OWNER_LABEL

from .fake_kube import FakeKube, make_context


def test_subset_sees_changed_fields_but_not_server_defaults():
    intent = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "a:1"}]}}}}
    live = {"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "server", "image": "a:1", "imagePullPolicy": "IfNotPresent"}]}}}}
    assert is_subset(intent, live)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    assert not is_subset(intent, live)
    assert is_subset({"metadata": {"annotations": {}}}, {"metadata": {}})
    assert not is_subset({"spec": {"ports": [1, 2]}}, {"spec": {"ports": [1]}})


def test_a_dropped_field_is_applied_although_the_live_object_still_has_it():
    before = with_intent_hash({"metadata": {"name": "d"}, "spec": {"replicas": 2, "x": 1}})
    live = {**before, "status": {}}
    assert up_to_date(before, live)
    after = with_intent_hash({"metadata": {"name": "d"}, "spec": {"x": 1}})  # replicas left to the HPA
    assert not up_to_date(after, live)
    assert before["metadata"]["annotations"][INTENT_HASH_ANNOTATION] != after["metadata"]["annotations"][INTENT_HASH_ANNOTATION]


def test_controlled_by_needs_the_controller_reference_with_that_uid():
    child = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert controlled_by(child, "u1") and not controlled_by(child, "u2")
    cron_made = {"metadata": {"ownerReferences": [{"uid": "cron", "controller": True}]}}
    assert not controlled_by(cron_made, "u1")


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def pending_pod(name: str, age_seconds: float, **status) -> dict:
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": name, "namespace": "team", "creationTimestamp": created,
                         "labels": {OWNER_LABEL: "modeldeployment.scorer"}},
            "status": {"phase": "Pending", **status}}


def test_events_are_read_only_for_pods_pending_for_a_while_and_the_owner_is_looked_at_again_then():
    kube, clock = FakeKube(), [100.0]
    ctx = make_context(kube, clock=lambda: clock[0])
    young, old = pending_pod("young", 3), pending_pod("old", EVENTS_AFTER_PENDING_SECONDS + 1)
    assert warning_events_if_needed(ctx, "team", [young], now=NOW) == {}
    assert kube.called("warning_events") == []
    clock[0] += EVENTS_AFTER_PENDING_SECONDS - 3 - 0.5
    assert ctx.queue.get(timeout=0) is None
    clock[0] += 0.5
    assert ctx.queue.get(timeout=0) == ("ModelDeployment", "team", "scorer")

    warning_events_if_needed(ctx, "team", [young, old], now=NOW)
    assert [c.detail for c in kube.called("warning_events")] == [["old"]]


def test_no_events_are_read_for_running_or_explained_pods():
    kube = FakeKube()
    ctx = make_context(kube)
    unschedulable = pending_pod("unschedulable", 60, conditions=[{"type": "PodScheduled", "status": "False",
                                                                  "reason": "Unschedulable", "message": "no fit"}])
    running = {**pending_pod("running", 60), "status": {"phase": "Running"}}
    assert warning_events_if_needed(ctx, "team", [unschedulable, running], now=NOW) == {}
    assert kube.called("warning_events") == []
