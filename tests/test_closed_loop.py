"""The closed loop (issue 21): triggered runs, run inputs, lineage, the feature contract, X-Model-Version.
Pure decisions as tables, then the reconcilers against the fake Kube."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from mlplatform.api.modeldeployment import Gateway, MetricBound, Model
from mlplatform.api.trainingjob import Trigger
from mlplatform.api.validation import validate_document
from mlplatform.controllers.lineage import contract_changed
from mlplatform.render.common import Owner
from mlplatform.render.gateway import http_route, model_version
from mlplatform.status.conditions import Cond
from mlplatform.status.lineage import feature_contract, lineage_status
from mlplatform.status.promotion import resolve_promoted
from mlplatform.status.run_inputs import feature_input, pod_image
from mlplatform.triggers import decide_trigger, last_tick, next_tick

from .gateway_schema import validate_httproute
from .test_reconcilers import Harness, cond, feature_view, model_deployment, training_job

UTC = timezone.utc
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
W1, W2 = "2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z"
FRESH = [{"type": "Fresh", "status": "True", "reason": "Fresh"}]
STALE = [{"type": "Fresh", "status": "False", "reason": "Stale"}]


def view(until: str | None = W2, fresh: bool = True, schema: str = "aaaa", features=None) -> dict:
    status = {"conditions": FRESH if fresh else STALE, "schemaHash": schema}
    if until:
        status["materializedUntil"] = until
    return {"metadata": {"name": "driver-stats"}, "spec": {"features": features or [
        {"name": "trips_7d", "dtype": "FLOAT32"}, {"name": "rating", "dtype": "FLOAT64"}]}, "status": status}


def record(run: int = 1, phase: str = "Succeeded", until: str | None = W1, trigger: str = "spec",
           at: str = "2026-12-06T09:00:00Z", schema: str = "aaaa", **extra) -> dict:
    features = [{"name": "driver-stats", "schemaHash": schema, "materializedUntil": until,
                 "featureTypes": {"trips_7d": "FLOAT32", "rating": "FLOAT64"}}]
    return {"run": run, "phase": phase, "trigger": trigger, "triggeredAt": at,
            "artifactUri": f"s3://models/trainer/run-{run}/", "inputs": {"features": features}, **extra}


def trigger(**kw) -> Trigger:
    return Trigger.model_validate(kw)


# --- trigger decisions ----------------------------------------------------------------------------------------

AFTER = {"afterMaterialization": ["driver-stats"]}


@pytest.mark.parametrize("id_,spec,runs,views,start,reason", [
    ("watermark moved", AFTER, [record()], {"driver-stats": view(W2)}, "afterMaterialization", "Triggered"),
    ("watermark not moved", AFTER, [record(until=W2)], {"driver-stats": view(W2)}, None, "Waiting"),
    ("watermark moved back", AFTER, [record(until=W2)], {"driver-stats": view(W1)}, None, "Waiting"),
    ("view not Fresh", AFTER, [record()], {"driver-stats": view(W2, fresh=False)}, None, "FeatureViewNotFresh"),
    ("view missing", AFTER, [record()], {"driver-stats": None}, None, "FeatureViewNotFound"),
    ("view never materialized", AFTER, [record()], {"driver-stats": view(None)}, None, "FeatureViewNotMaterialized"),
    ("current run still going", AFTER, [record(phase="Running")], {"driver-stats": view(W2)}, None, "RunInProgress"),
    ("min interval not over", {**AFTER, "minIntervalSeconds": 3600},
     [record(1, trigger="afterMaterialization", at="2026-12-06T11:30:00Z", until=W1)],
     {"driver-stats": view(W2)}, None, "MinInterval"),
    ("min interval over", {**AFTER, "minIntervalSeconds": 3600},
     [record(1, trigger="afterMaterialization", at="2026-12-06T10:30:00Z", until=W1)],
     {"driver-stats": view(W2)}, "afterMaterialization", "Triggered"),
    ("min interval counts triggered runs only", {**AFTER, "minIntervalSeconds": 3600},
     [record(1, trigger="spec", at="2026-12-06T11:59:00Z", until=W1)],
     {"driver-stats": view(W2)}, "afterMaterialization", "Triggered"),
    ("a run without inputs: any watermark is new", AFTER, [{"run": 1, "phase": "Succeeded"}],
     {"driver-stats": view(W2)}, "afterMaterialization", "Triggered"),
    ("schedule tick passed since the last run", {"schedule": "0 * * * *"}, [record(at="2026-12-06T10:30:00Z")], {},
     "schedule", "Triggered"),
    ("schedule: no tick since the last run", {"schedule": "30 * * * *"}, [record(at="2026-12-06T11:45:00Z")], {},
     None, "Waiting"),
    ("schedule: a stale view blocks it too", {"schedule": "0 * * * *", **AFTER}, [record(at="2026-12-06T10:30:00Z")],
     {"driver-stats": view(W2, fresh=False)}, None, "FeatureViewNotFresh"),
])
def test_trigger_decision(id_, spec, runs, views, start, reason):
    decision = decide_trigger(trigger(**spec), {"run": runs[-1]["run"], "runs": runs}, views, NOW)
    assert (decision.start, decision.condition.reason) == (start, reason), decision.condition.message


def test_no_trigger_no_decision():
    decision = decide_trigger(None, {"runs": [record()]}, {}, NOW)
    assert decision.start is None and decision.condition is None and decision.wake_at is None


def test_not_fresh_names_the_view():
    decision = decide_trigger(trigger(**AFTER), {"runs": [record()]}, {"driver-stats": view(fresh=False)}, NOW)
    assert decision.condition.status is False and "driver-stats" in decision.condition.message


def test_min_interval_wakes_when_it_ends():
    decision = decide_trigger(trigger(**AFTER, minIntervalSeconds=3600),
                              {"runs": [record(trigger="afterMaterialization", at="2026-12-06T11:30:00Z")]},
                              {"driver-stats": view(W2)}, NOW)
    assert decision.wake_at == datetime(2026, 12, 6, 12, 30, tzinfo=UTC)


def test_schedule_wakes_at_the_next_tick_in_its_time_zone():
    # 03:00 in New York is 08:00 UTC in December (EST, UTC-5).
    spec = trigger(schedule="0 3 * * *", timeZone="America/New_York")
    decision = decide_trigger(spec, {"runs": [record(at="2026-12-06T09:00:00Z")]}, {}, NOW)
    assert decision.start is None and decision.wake_at == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert "2026-12-07T08:00:00Z" in decision.condition.message
    # The same tick, seen after it passed: a run, since the last run started before it.
    later = datetime(2026, 12, 7, 8, 0, 30, tzinfo=UTC)
    assert decide_trigger(spec, {"runs": [record(at="2026-12-06T09:00:00Z")]}, {}, later).start == "schedule"


@pytest.mark.parametrize("zone,now,last,following", [
    ("UTC", "2026-12-06T12:00:00+00:00", "2026-12-06T03:00:00+00:00", "2026-12-07T03:00:00+00:00"),
    ("Europe/Dublin", "2026-07-06T12:00:00+00:00", "2026-07-06T02:00:00+00:00", "2026-07-07T02:00:00+00:00"),  # IST
    ("Asia/Kolkata", "2026-12-06T12:00:00+00:00", "2026-12-05T21:30:00+00:00", "2026-12-06T21:30:00+00:00"),
    ("UTC", "2026-12-06T03:00:00+00:00", "2026-12-06T03:00:00+00:00", "2026-12-07T03:00:00+00:00"),  # on the tick
])
def test_ticks_in_a_time_zone(zone, now, last, following):
    at = datetime.fromisoformat(now)
    assert last_tick("0 3 * * *", zone, at) == datetime.fromisoformat(last)
    assert next_tick("0 3 * * *", zone, at) == datetime.fromisoformat(following)


def test_macros_tick():
    assert last_tick("@hourly", None, NOW) == NOW


# --- validation -----------------------------------------------------------------------------------------------

def tj_doc(trigger_: dict) -> dict:
    return {"apiVersion": "mlplatform.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "t", "namespace": "n"},
            "spec": {"image": "x", "trigger": trigger_}}


@pytest.mark.parametrize("trigger_,path,words", [
    ({"schedule": "61 * * * *"}, "spec.trigger", "cron"),
    ({"schedule": "every day"}, "spec.trigger.schedule", "5-field cron schedule"),
    ({"schedule": "0 3 * * *", "timeZone": "Mars/Olympus"}, "spec.trigger", "IANA"),
    ({"timeZone": "UTC", "afterMaterialization": ["a"]}, "spec.trigger", "timeZone needs schedule"),
    ({"afterMaterialization": ["Driver_Stats"]}, "spec.trigger.afterMaterialization", "DNS label"),
    ({"minIntervalSeconds": 60}, "spec.trigger", "schedule or afterMaterialization"),
    ({"schedule": "0 3 * * *", "minIntervalSeconds": -1}, "spec.trigger.minIntervalSeconds", ""),
])
def test_bad_triggers_are_refused_naming_the_field(trigger_, path, words):
    _, problems = validate_document(tj_doc(trigger_))
    assert problems, trigger_
    text = " ".join(f"{p.path}: {p.message}" for p in problems)
    assert path in text and words in text, text


def test_the_example_trigger_is_valid(example):
    resource, problems = validate_document(example("trainingjob-triggered.yaml"))
    assert problems == [] and resource.spec.trigger.time_zone == "Europe/Dublin"


# --- inputs ---------------------------------------------------------------------------------------------------

def test_feature_input_records_hash_watermark_and_types():
    assert feature_input("driver-stats", view(W2)) == {
        "name": "driver-stats", "schemaHash": "aaaa", "materializedUntil": W2,
        "featureTypes": {"trips_7d": "FLOAT32", "rating": "FLOAT64"}}
    assert feature_input("gone", None) == {"name": "gone"}


def test_pod_image_is_the_digest_when_reported():
    digest = "ghcr.io/acme/train@sha256:" + "a" * 64
    pods = [{"status": {"containerStatuses": [{"imageID": ""}]}},
            {"status": {"containerStatuses": [{"imageID": "docker-pullable://" + digest}]}}]
    assert pod_image(pods) == digest
    assert pod_image([{"status": {}}]) is None


# --- promotion and the contract -------------------------------------------------------------------------------

def tj(*records: dict) -> dict:
    return {"status": {"phase": "Succeeded", "runs": list(records)}}


BOUNDS = [MetricBound(name="auc", min=0.9)]


@pytest.mark.parametrize("id_,records,schemas,run,words", [
    ("same schema: newest qualifying run", [record(1, metrics={"auc": 0.95}), record(2, metrics={"auc": 0.96})],
     {"driver-stats": "aaaa"}, 2, ""),
    ("newest run on another schema is skipped, naming the view",
     [record(1, metrics={"auc": 0.95}, schema="bbbb"), record(2, metrics={"auc": 0.96})],
     {"driver-stats": "bbbb"}, 1, "run 2 skipped: trained on FeatureView driver-stats schema aaaa"),
    ("no run on the current schema", [record(1, metrics={"auc": 0.95})], {"driver-stats": "bbbb"}, None,
     "run 1 skipped: trained on FeatureView driver-stats"),
    ("a view without a hash does not block", [record(1, metrics={"auc": 0.95})], {"driver-stats": None}, 1, ""),
    ("failing metric skipped as before", [record(1, metrics={"auc": 0.95}), record(2, metrics={"auc": 0.5})],
     {"driver-stats": "aaaa"}, 1, "run 2 skipped: auc 0.5 < min 0.9"),
])
def test_promotion_never_picks_a_run_on_another_schema(id_, records, schemas, run, words):
    resolution = resolve_promoted("trainer", tj(*records), BOUNDS, schemas)
    assert resolution.run == run
    assert words in resolution.condition.message


def test_a_schema_change_does_not_take_away_the_run_being_served():
    job = tj(record(1, metrics={"auc": 0.95}), record(2, metrics={"auc": 0.96}))
    kept = resolve_promoted("trainer", job, BOUNDS, {"driver-stats": "bbbb"}, serving_run=2)
    assert kept.run == 2 and kept.condition.status is True
    # Not served: the same run on the old schema is never promoted.
    assert resolve_promoted("trainer", job, BOUNDS, {"driver-stats": "bbbb"}, serving_run=None).run is None


@pytest.mark.parametrize("id_,current,status,reason,words", [
    ("same hash", view(schema="aaaa"), True, "SchemaMatches", "run 1"),
    ("type changed", view(schema="bbbb", features=[{"name": "trips_7d", "dtype": "INT64"},
                                                   {"name": "rating", "dtype": "FLOAT64"}]),
     False, "SchemaChanged", "driver-stats: feature trips_7d FLOAT32 -> INT64 since run 1 was trained"),
    ("feature removed and added", view(schema="bbbb", features=[{"name": "trips_7d", "dtype": "FLOAT32"},
                                                                {"name": "speed", "dtype": "INT32"}]),
     False, "SchemaChanged", "feature rating removed, feature speed INT32 added"),
    ("only the hash tells (an entity changed)", view(schema="bbbb"), False, "SchemaChanged", "schema aaaa -> bbbb"),
    ("no hash on the view", {**view(), "status": {}}, None, "SchemaUnknown", "driver-stats"),
])
def test_feature_contract(id_, current, status, reason, words):
    c = feature_contract(["driver-stats"], {"driver-stats": current}, tj(record(1)), "s3://models/trainer/run-1/")
    assert (c.status, c.reason) == (status, reason)
    assert words in c.message


def test_no_contract_without_features_and_unknown_without_a_record():
    assert feature_contract([], {}, tj(record(1)), "s3://models/trainer/run-1/") is None
    c = feature_contract(["driver-stats"], {"driver-stats": view()}, None, "s3://models/fixed/")
    assert (c.status, c.reason) == (None, "NoTrainingRecord")


# --- lineage --------------------------------------------------------------------------------------------------

def test_lineage_names_the_serving_run_and_the_canary_while_one_runs():
    job = tj(record(1, until=W1), record(2, until=W2))
    stable = lineage_status("trainer", job, "s3://models/trainer/run-2/", {"phase": "Promoted"})
    assert stable == {"trainingJob": "trainer", "run": 2, "artifactUri": "s3://models/trainer/run-2/",
                      "features": [{"name": "driver-stats", "schemaHash": "aaaa", "materializedUntil": W2}]}
    rollout = {"phase": "Progressing", "stableModelUri": "s3://models/trainer/run-1/",
               "canaryModelUri": "s3://models/trainer/run-2/"}
    both = lineage_status("trainer", job, "s3://models/trainer/run-2/", rollout)
    assert both["run"] == 1 and both["features"][0]["materializedUntil"] == W1
    assert both["canary"]["run"] == 2 and both["canary"]["features"][0]["materializedUntil"] == W2
    assert lineage_status(None, None, "s3://fixed/", None) == {"artifactUri": "s3://fixed/"}


# --- X-Model-Version ------------------------------------------------------------------------------------------

OWNER = Owner("ModelDeployment", "scorer", "team", "uid-1", 1)
GATEWAY = Gateway.model_validate({"parentRefs": [{"name": "inference"}]})


def test_model_version_names_the_run_or_the_uri():
    from_tj = Model.model_validate({"fromTrainingJob": "fraud-train", "format": "xgboost"})
    fixed = Model.model_validate({"uri": "s3://m/fraud/v12/", "format": "xgboost"})
    assert model_version(from_tj, "s3://models/fraud/run-7/") == "fraud-train/run-7"
    assert model_version(fixed, "s3://m/fraud/v12/") == "s3://m/fraud/v12/"
    assert model_version(fixed, None) is None


def test_each_backend_carries_its_version_and_the_route_is_valid():
    route = http_route(OWNER, GATEWAY, "predictor", 80, 10, versions=("fraud-train/run-6", "fraud-train/run-7"))
    validate_httproute(route)
    headers = [b["filters"][0]["responseHeaderModifier"]["set"][0] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert headers == [{"name": "X-Model-Version", "value": "fraud-train/run-6"},
                       {"name": "X-Model-Version", "value": "fraud-train/run-7"}]


def test_versions_and_a_mirror_on_one_route_are_valid():
    route = http_route(OWNER, GATEWAY, "predictor", 80, 0, mirror_percent=100,
                       versions=("fraud-train/run-6", "fraud-train/run-7"))
    validate_httproute(route)
    (rule,) = route["spec"]["rules"]
    assert [f["type"] for f in rule["filters"]] == ["RequestMirror"]
    assert all(b["filters"][0]["type"] == "ResponseHeaderModifier" for b in rule["backendRefs"])


# --- reconcilers against the fake Kube ------------------------------------------------------------------------

def triggered_tj(runs: list[dict]) -> dict:
    body = training_job(features=["driver-stats"], trigger={"afterMaterialization": ["driver-stats"]})
    from .test_reconcilers import run_status
    status = run_status(body, runs[-1]["run"], runs[-1]["phase"])
    status["runs"] = runs
    body["status"] = status
    return body


def fv(until: str, schema: str = "aaaa", fresh: bool = True) -> dict:
    body = feature_view({"conditions": [cond("Ready", "True", "Ready"), cond("Fresh", "True" if fresh else "False",
                                                                              "Fresh" if fresh else "Stale")],
                         "schemaHash": schema, "materializedUntil": until})
    return body


def test_a_materialization_past_the_watermark_starts_a_run_without_a_spec_change():
    h = Harness()
    h.add(fv(W2))
    body = h.add(triggered_tj([record(1, until=W1)]))
    h.reconcile(body)
    assert ("Job", "trainer-2") in [(c.kind, c.name) for c in h.kube.called("apply")]
    written = h.kube.called("patch_status")[-1].detail
    assert written["run"] == 2
    new = next(r for r in h.ctx.cache.resource(("TrainingJob", "team", "trainer"))["status"]["runs"] if r["run"] == 2)
    assert new["trigger"] == "afterMaterialization"
    assert new["inputs"]["features"][0]["materializedUntil"] == W2
    assert new["inputs"]["image"] == "ghcr.io/acme/train:1"
    assert ("Normal", "TriggeredRunStarted") in [(c.detail[0], c.detail[1]) for c in h.kube.called("post_event")]
    # The status now records what run 2 read: the same watermark starts nothing more (an operator restart
    # decides the same from status).
    h.kube.calls.clear()
    h.reconcile(h.ctx.cache.resource(("TrainingJob", "team", "trainer")))
    assert ("Job", "trainer-3") not in [(c.kind, c.name) for c in h.kube.called("apply")]


def test_an_unmoved_watermark_or_a_stale_view_starts_nothing():
    for view_ in (fv(W1), fv(W2, fresh=False)):
        h = Harness()
        h.add(view_)
        body = h.add(triggered_tj([record(1, until=W1)]))
        h.reconcile(body)
        assert [(c.kind, c.name) for c in h.kube.called("apply")] == []
        status = h.ctx.cache.resource(("TrainingJob", "team", "trainer"))["status"]
        assert status["run"] == 1
        trigger_ready = next(c for c in status["conditions"] if c["type"] == "TriggerReady")
        assert trigger_ready["reason"] in ("Waiting", "FeatureViewNotFresh")


def test_a_first_run_records_its_trigger_and_inputs():
    h = Harness()
    h.add(fv(W1))
    body = h.add(training_job(features=["driver-stats"]))
    h.reconcile(body)
    (first,) = h.ctx.cache.resource(("TrainingJob", "team", "trainer"))["status"]["runs"]
    assert first["trigger"] == "spec" and first["inputs"]["features"][0]["schemaHash"] == "aaaa"


def test_a_model_deployment_refuses_a_run_on_the_old_schema_and_reports_the_contract():
    h = Harness()
    h.add(fv(W2, schema="bbbb"))
    job = training_job(status={"phase": "Succeeded", "run": 2, "runs": [
        record(1, metrics={"auc": 0.95}, schema="bbbb"), record(2, metrics={"auc": 0.97}, schema="aaaa")],
        "artifactUri": "s3://models/trainer/run-2/", "artifactRun": 2})
    h.add(job)
    md = model_deployment(model={"fromTrainingJob": "trainer", "format": "sklearn",
                                 "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}},
                          features=["driver-stats"])
    md["status"] = {"conditions": [{"type": "FeatureContract", "status": "True", "reason": "SchemaMatches",
                                    "message": "", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}
    h.reconcile(h.add(md))
    status = h.ctx.cache.resource(("ModelDeployment", "team", "scorer"))["status"]
    assert status["trainingJobRun"] == 1
    resolved = next(c for c in status["conditions"] if c["type"] == "ModelResolved")
    assert "run 2 skipped: trained on FeatureView driver-stats" in resolved["message"]
    contract = next(c for c in status["conditions"] if c["type"] == "FeatureContract")
    assert (contract["status"], contract["reason"]) == ("True", "SchemaMatches")  # run 1 serves, on bbbb
    assert status["lineage"]["run"] == 1
    reasons = [c.detail[1] for c in h.kube.called("post_event")]
    assert "RunSkippedByPromotion" in reasons


def test_a_schema_edit_turns_the_contract_false_with_an_event():
    h = Harness()
    h.add(fv(W2, schema="bbbb"))
    h.add(training_job(status={"phase": "Succeeded", "run": 1, "runs": [record(1, metrics={"auc": 0.95})],
                               "artifactUri": "s3://models/trainer/run-1/", "artifactRun": 1}))
    md = model_deployment(model={"fromTrainingJob": "trainer", "format": "sklearn"}, features=["driver-stats"])
    md["status"] = {"conditions": [{"type": "FeatureContract", "status": "True", "reason": "SchemaMatches",
                                    "message": "", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}
    h.reconcile(h.add(copy.deepcopy(md)))
    status = h.ctx.cache.resource(("ModelDeployment", "team", "scorer"))["status"]
    contract = next(c for c in status["conditions"] if c["type"] == "FeatureContract")
    assert (contract["status"], contract["reason"]) == ("False", "SchemaChanged")
    assert "driver-stats" in contract["message"]
    assert ("Warning", "FeatureContractChanged") in [(c.detail[0], c.detail[1]) for c in h.kube.called("post_event")]


@pytest.mark.parametrize("old,new,news", [
    (None, Cond("FeatureContract", False, "SchemaChanged", "x"), False),  # first verdict: the condition tells
    ({"status": "Unknown"}, Cond("FeatureContract", True, "SchemaMatches", "ok"), False),
    ({"status": "True"}, Cond("FeatureContract", False, "SchemaChanged", "x"), True),
    ({"status": "False", "message": "x"}, Cond("FeatureContract", True, "SchemaMatches", "ok"), True),
    ({"status": "False", "message": "x"}, Cond("FeatureContract", False, "SchemaChanged", "y"), True),
    ({"status": "False", "message": "x"}, Cond("FeatureContract", False, "SchemaChanged", "x"), False),
    ({"status": "True"}, Cond("FeatureContract", None, "SchemaUnknown", "?"), False),
])
def test_which_contract_changes_are_news(old, new, news):
    assert contract_changed(old, new) is news


def test_a_skipped_run_is_announced_once():
    h = Harness()
    h.add(fv(W2))
    h.add(training_job(status={"phase": "Succeeded", "run": 2, "runs": [
        record(1, metrics={"auc": 0.95}), record(2, metrics={"auc": 0.5})]}))
    md = model_deployment(model={"fromTrainingJob": "trainer", "format": "sklearn",
                                 "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}}, features=["driver-stats"])
    h.reconcile(h.add(md))
    h.reconcile(h.ctx.cache.resource(("ModelDeployment", "team", "scorer")))
    skipped = [e for e in h.kube.events if e["reason"] == "RunSkippedByPromotion"]
    assert [e["message"] for e in skipped] == ["run 2 of TrainingJob trainer skipped: auc 0.5 < min 0.9"]


def test_a_held_training_job_is_not_triggered():
    h = Harness()
    h.add(fv(W2))
    body = triggered_tj([record(1, until=W1)])
    body["spec"]["suspend"] = True
    h.reconcile(h.add(body))
    assert ("Job", "trainer-2") not in [(c.kind, c.name) for c in h.kube.called("apply")]
    assert h.ctx.cache.resource(("TrainingJob", "team", "trainer"))["status"]["run"] == 1
