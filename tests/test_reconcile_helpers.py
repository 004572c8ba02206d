"""The pieces of reconciling that are pure: drift detection, ownership."""

from __future__ import annotations

from mlplatform.labels import INTENT_HASH_ANNOTATION
from mlplatform.controllers.base import controlled_by, is_subset, up_to_date, with_intent_hash


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
