"""FeatureStore and the FeatureView additions as pure functions: rendering, secrets, status (no Feast, no cluster).

Feast's own config classes judge the rendered stores in tests/test_feast_stores.py (tools tier)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from mlplatform.api.featurestore import FeatureStoreSpec
from mlplatform.api.featureview import FeatureViewSpec
from mlplatform.config import OperatorConfig
from mlplatform.labels import BACKFILL_WINDOW_ANNOTATION, STORE_CONFIG_HASH_ANNOTATION
from mlplatform.render.common import Owner
from mlplatform.render.feast import feature_store_yaml
from mlplatform.render.featurestore import check_job_name, render_feature_store, store_config_hash
from mlplatform.render.featureview import (
    render_feature_view,
    schema_hash,
    source_store_problem,
)
from mlplatform.status.conditions import Cond
from mlplatform.status.dependencies import freshness_condition
from mlplatform.status.featurestore import FeatureStoreObserved, feature_store_report
from mlplatform.status.featureview import FeatureViewObserved, feature_view_report

from .conftest import load_example

CONFIG = OperatorConfig()
SECRET_NAMES = {"pg-feast", "redis", "feast-registry"}


def store() -> FeatureStoreSpec:
    return FeatureStoreSpec.model_validate(load_example("featurestore-postgres-redis.yaml")["spec"])


def view(**changes) -> FeatureViewSpec:
    spec = load_example("featureview-driver-stats.yaml")["spec"]
    spec = {**spec, **changes}
    return FeatureViewSpec.model_validate(spec)


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objects:
        out.setdefault(o["kind"], []).append(o)
    return out


def feast_containers(objects: list[dict]) -> list[dict]:
    containers = []
    for o in objects:
        spec = o.get("spec") or {}
        template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template") or spec.get("template")
        if template:
            containers += template["spec"]["containers"]
    return containers


# --- every offline, online and registry type renders the Feast block it means -----------------------

PG = {"host": "pg.data.svc", "database": "features", "user": "feast", "passwordSecretRef": {"name": "pg", "key": "pw"}}
OFFLINE = {
    "file": ({"type": "file"}, {"type": "file"}),
    "postgres": ({"type": "postgres", "postgres": PG},
                 {"type": "postgres", "host": "pg.data.svc", "port": 5432, "database": "features", "user": "feast",
                  "password": "${FEAST_OFFLINE_STORE_PASSWORD}"}),
    "bigquery": ({"type": "bigquery", "bigquery": {"projectId": "acme", "dataset": "feast", "location": "EU"}},
                 {"type": "bigquery", "project_id": "acme", "dataset": "feast", "location": "EU"}),
    "snowflake": ({"type": "snowflake", "snowflake": {"account": "acme", "user": "feast", "database": "FEATURES",
                                                      "passwordSecretRef": {"name": "sf", "key": "pw"}}},
                  {"type": "snowflake.offline", "account": "acme", "user": "feast",
                   "password": "${FEAST_OFFLINE_STORE_PASSWORD}", "database": "FEATURES"}),
    "redshift": ({"type": "redshift", "redshift": {"region": "eu-west-1", "workgroup": "wg", "database": "dev",
                                                    "s3StagingLocation": "s3://stage/", "iamRole": "arn:aws:iam::1:role/r"}},
                 {"type": "redshift", "region": "eu-west-1", "workgroup": "wg", "database": "dev",
                  "s3_staging_location": "s3://stage/", "iam_role": "arn:aws:iam::1:role/r"}),
    "spark": ({"type": "spark", "spark": {"sparkConf": {"spark.master": "local[2]"}}},
              {"type": "spark", "spark_conf": {"spark.master": "local[2]"}}),
}
ONLINE = {
    "redis": ({"type": "redis", "redis": {"connectionString": "redis:6379,db=1",
                                          "passwordSecretRef": {"name": "r", "key": "pw"}}},
              {"type": "redis", "connection_string": "redis:6379,db=1,password=${FEAST_ONLINE_STORE_PASSWORD}"}),
    "postgres": ({"type": "postgres", "postgres": {**PG, "sslMode": "verify-full"}},
                 {"type": "postgres", "host": "pg.data.svc", "port": 5432, "database": "features", "user": "feast",
                  "password": "${FEAST_ONLINE_STORE_PASSWORD}", "sslmode": "verify-full"}),
    "sqlite": ({"type": "sqlite"}, {"type": "sqlite"}),
    "dynamodb": ({"type": "dynamodb", "dynamodb": {"region": "eu-west-1"}}, {"type": "dynamodb", "region": "eu-west-1"}),
}
REGISTRY = {
    "sql": ({"type": "sql", "urlSecretRef": {"name": "reg", "key": "url"}},
            {"registry_type": "sql", "path": "${FEAST_REGISTRY_URL}", "cache_ttl_seconds": 60}),
    "file": ({"type": "file", "path": "s3://bucket/registry.db", "cacheTtlSeconds": 0},
             {"registry_type": "file", "path": "s3://bucket/registry.db", "cache_ttl_seconds": 0}),
}
STORE_CASES = ([("offline", k) for k in OFFLINE] + [("online", k) for k in ONLINE] + [("registry", k) for k in REGISTRY])


def store_with(which: str, key: str) -> tuple[FeatureStoreSpec, str, dict]:
    spec = {"offlineStore": OFFLINE["file"][0], "onlineStore": ONLINE["sqlite"][0], "registry": REGISTRY["file"][0]}
    table = {"offline": OFFLINE, "online": ONLINE, "registry": REGISTRY}[which]
    spec[{"offline": "offlineStore", "online": "onlineStore", "registry": "registry"}[which]] = table[key][0]
    yaml_key = {"offline": "offline_store", "online": "online_store", "registry": "registry"}[which]
    return FeatureStoreSpec.model_validate(spec), yaml_key, table[key][1]


@pytest.mark.parametrize("which,key", STORE_CASES, ids=[f"{w}-{k}" for w, k in STORE_CASES])
def test_every_store_type_renders_its_feast_block(which, key):
    spec, yaml_key, expected = store_with(which, key)
    config = yaml.safe_load(feature_store_yaml("risk", "driver-stats", CONFIG.feast, spec))
    assert config[yaml_key] == expected
    assert config["project"] == "risk__driver_stats" and config["provider"] == "local"


# --- the FeatureStore's children ---------------------------------------------------------------------


def test_feature_store_renders_config_and_check_job_with_secrets_only_as_references():
    spec = store()
    rendered = render_feature_store(Owner("FeatureStore", "default", "payments", "uid-1"), spec, CONFIG)
    kinds = by_kind(rendered.objects)
    assert sorted(kinds) == ["ConfigMap", "Job"]
    configmap = kinds["ConfigMap"][0]
    assert configmap["metadata"]["name"] == "default-feast-store"
    assert set(configmap["data"]) == {"feature_store.yaml", "check_stores.py"}
    job = kinds["Job"][0]
    config_hash = store_config_hash(spec, CONFIG)
    assert job["metadata"]["name"] == check_job_name("default", config_hash)
    assert job["metadata"]["annotations"][STORE_CONFIG_HASH_ANNOTATION] == config_hash
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == CONFIG.feast.image
    assert "python check_stores.py ." in container["command"][2]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"FEAST_OFFLINE_STORE_PASSWORD": {"name": "pg-feast", "key": "password"},
                    "FEAST_ONLINE_STORE_PASSWORD": {"name": "redis", "key": "password"},
                    "FEAST_REGISTRY_URL": {"name": "feast-registry", "key": "url"}}
    assert all("value" not in e for e in container["env"] if e["name"].startswith("FEAST_") and e["name"] != "FEAST_USAGE")


def test_check_job_is_keyed_on_the_configuration():
    spec = store()
    other = FeatureStoreSpec.model_validate({**spec.to_api(), "onlineStore": ONLINE["sqlite"][0]})
    assert store_config_hash(spec, CONFIG) != store_config_hash(other, CONFIG)
    rendered = render_feature_store(Owner("FeatureStore", "default", "payments"), spec, CONFIG, include_check_job=False)
    assert [o["kind"] for o in rendered.objects] == ["ConfigMap"]


def _job(name: str, config_hash: str, state: str | None, message: str | None = None) -> tuple[dict, list[dict]]:
    conditions = [{"type": state, "status": "True", "message": "BackoffLimitExceeded"}] if state else []
    job = {"metadata": {"name": name, "annotations": {STORE_CONFIG_HASH_ANNOTATION: config_hash}},
           "status": {"conditions": conditions, "completionTime": "2026-12-06T09:00:00Z" if state == "Complete" else None}}
    pods = []
    if message:
        pods.append({"metadata": {"name": f"{name}-abc", "creationTimestamp": "2026-12-06T09:00:00Z"},
                     "status": {"phase": "Failed", "containerStatuses": [
                         {"name": "feast", "state": {"terminated": {"exitCode": 1, "message": message}}}]}})
    return job, pods


@pytest.mark.parametrize("state,message,previous,ready,reason,phase", [
    (None, None, {}, False, "Checking", "Checking"),
    ("Complete", None, {}, True, "StoresReachable", "Ready"),
    ("Failed", "onlineStore (redis): unreachable: Authentication required.", {}, False, "StoreCheckFailed", "Failed"),
    ("gone", None, {"configHash": "h1"}, True, "StoresReachable", "Ready"),  # checked, then the Job's TTL removed it
    ("gone", None, {"configHash": "old"}, False, "Pending", "Pending"),
])
def test_feature_store_status(state, message, previous, ready, reason, phase):
    jobs, pods = [], []
    if state != "gone":
        job, pods = _job("default-check-h1", "h1", state, message)
        jobs = [job]
    report = feature_store_report(previous, FeatureStoreObserved("h1", "offlineStore postgres", jobs, pods))
    conds = {c.type: c for c in report.conditions}
    assert (conds["Ready"].status, conds["Ready"].reason, report.phase) == (ready, reason, phase)
    if message:
        assert conds["Ready"].message == message  # names the store that failed
        assert conds["Stalled"].status is True
    if ready:
        assert report.status["configHash"] == "h1"


# --- FeatureView with a team store --------------------------------------------------------------------


def test_feature_view_on_a_team_store_gets_its_config_and_secret_refs():
    spec = view(source={"postgres": {"table": "driver_stats"}, "timestampField": "event_timestamp", "push": True},
                materialization={"schedule": "0 * * * *", "timeZone": "Europe/Dublin"})
    rendered = render_feature_view(Owner("FeatureView", "driver-stats", "payments", "u"), spec, CONFIG, store=store())
    kinds = by_kind(rendered.objects)
    fsy = yaml.safe_load(kinds["ConfigMap"][0]["data"]["feature_store.yaml"])
    assert fsy["offline_store"]["password"] == "${FEAST_OFFLINE_STORE_PASSWORD}"
    assert "PostgreSQLSource(" in kinds["ConfigMap"][0]["data"]["features.py"]
    assert "push_source = PushSource(" in kinds["ConfigMap"][0]["data"]["features.py"]
    assert kinds["CronJob"][0]["spec"]["timeZone"] == "Europe/Dublin"
    for container in feast_containers(rendered.objects):
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        assert refs == SECRET_NAMES, container["name"]
    text = json.dumps(rendered.objects)
    assert "hunter" not in text and "password:" not in kinds["ConfigMap"][0]["data"]["feature_store.yaml"].replace(
        "password: ${FEAST_OFFLINE_STORE_PASSWORD}", "")


def test_feature_server_probes_pdb_and_autoscaling():
    owner = Owner("FeatureView", "driver-stats", "risk", "u")
    single = by_kind(render_feature_view(owner, view(serving={"replicas": 1}), CONFIG).objects)
    assert "PodDisruptionBudget" not in single and "HorizontalPodAutoscaler" not in single
    server = single["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert server["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    two = by_kind(render_feature_view(owner, view(serving={"replicas": 2}), CONFIG).objects)
    assert two["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1
    assert two["Deployment"][0]["spec"]["replicas"] == 2
    scaled = by_kind(render_feature_view(owner, view(serving={"autoscaling": {
        "minReplicas": 2, "maxReplicas": 6, "targets": {"cpuUtilization": 70}}}), CONFIG).objects)
    hpa = scaled["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["scaleTargetRef"]["name"]) == (2, 6, "driver-stats-features")
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert "replicas" not in scaled["Deployment"][0]["spec"]  # the HPA owns it
    assert "PodDisruptionBudget" in scaled


def test_feature_servers_spread_over_zones_and_nodes_when_there_are_several():
    owner = Owner("FeatureView", "driver-stats", "risk", "u")

    def spread(serving: dict) -> list[dict] | None:
        deployment = by_kind(render_feature_view(owner, view(serving=serving), CONFIG).objects)["Deployment"][0]
        return deployment["spec"]["template"]["spec"].get("topologySpreadConstraints")
    assert spread({"replicas": 1}) is None
    two = spread({"replicas": 2})
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in two] == [
        ("topology.kubernetes.io/zone", "ScheduleAnyway"), ("kubernetes.io/hostname", "ScheduleAnyway")]
    server_labels = by_kind(render_feature_view(owner, view(serving={"replicas": 2}), CONFIG).objects)[
        "Deployment"][0]["spec"]["selector"]["matchLabels"]
    assert two[0]["labelSelector"]["matchLabels"] == server_labels  # the servers only, not materialization pods
    assert spread({"autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targets": {"cpuUtilization": 70}}})


def test_backfill_is_one_job_per_window():
    owner = Owner("FeatureView", "driver-stats", "risk", "u")
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}
    first = by_kind(render_feature_view(owner, view(materialization={"backfill": window}), CONFIG).objects)["Job"]
    again = by_kind(render_feature_view(owner, view(materialization={"backfill": window, "schedule": "@daily"}),
                                        CONFIG).objects)["Job"]
    moved = by_kind(render_feature_view(owner, view(materialization={"backfill": {**window, "end": "2026-07-01T00:00:00Z"}}),
                                        CONFIG).objects)["Job"]
    backfills = [[j for j in jobs if BACKFILL_WINDOW_ANNOTATION in j["metadata"]["annotations"]]
                 for jobs in (first, again, moved)]
    assert [len(b) for b in backfills] == [1, 1, 1]
    assert backfills[0][0]["metadata"]["name"] == backfills[1][0]["metadata"]["name"]
    assert backfills[0][0]["metadata"]["name"] != backfills[2][0]["metadata"]["name"]
    script = backfills[0][0]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "feast materialize 2026-01-01T00:00:00Z 2026-06-01T00:00:00Z" in script


def test_schema_hash_is_stable_and_follows_types():
    base = view()
    reordered = view(features=list(reversed(load_example("featureview-driver-stats.yaml")["spec"]["features"])))
    assert schema_hash(base) == schema_hash(reordered)
    changed = load_example("featureview-driver-stats.yaml")["spec"]["features"]
    changed = [{**changed[0], "dtype": "INT64" if changed[0]["dtype"] != "INT64" else "FLOAT64"}] + changed[1:]
    assert schema_hash(view(features=changed)) != schema_hash(base)
    assert schema_hash(view(description="other words")) == schema_hash(base)


@pytest.mark.parametrize("source,store_type,problem", [
    ({"path": "/x.parquet"}, None, None),
    ({"postgres": {"table": "t"}}, None, "no FeatureStore is used"),
    ({"postgres": {"table": "t"}}, "postgres", None),
    ({"postgres": {"table": "t"}}, "file", "needs offlineStore.type postgres; FeatureStore default has offlineStore.type file"),
    ({"path": "/x.parquet"}, "postgres", "spec.source.path needs offlineStore.type file"),
])
def test_source_must_match_the_offline_store(source, store_type, problem):
    spec = view(source={**source, "timestampField": "event_timestamp"})
    team = None
    if store_type:
        team = FeatureStoreSpec.model_validate({**store().to_api(), "offlineStore": OFFLINE[store_type][0]})
    found = source_store_problem(spec, team, "default" if team else None)
    assert (found is None) if problem is None else (problem in found), found


# --- FeatureView status: backfill, watermark, waiting for the store ----------------------------------


def _fv_observed(jobs: list[dict], **kw) -> FeatureViewObserved:
    return FeatureViewObserved(online=True, suspended=False, spec_hash="h", max_staleness_seconds=3600,
                               materialization_jobs=jobs, server={"status": {"readyReplicas": 1}}, server_desired=1,
                               server_url="http://x", schema_hash="s1", **kw)


def _done(name: str, start: str, annotations: dict) -> dict:
    return {"metadata": {"name": name, "annotations": annotations},
            "status": {"startTime": start, "completionTime": start, "conditions": [{"type": "Complete", "status": "True"}]}}


def test_backfill_window_and_watermark_in_status():
    now = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
    backfill = _done("fv-backfill-1", "2026-12-06T08:59:00Z", {BACKFILL_WINDOW_ANNOTATION: "w"})
    report = feature_view_report({}, _fv_observed([backfill], backfill=("2026-01-01T00:00:00+01:00", "2026-06-01T00:00:00Z",
                                                                      "fv-backfill-1")), now)
    assert report.status["backfill"] == {"start": "2026-01-01T00:00:00+01:00", "end": "2026-06-01T00:00:00Z",
                                         "job": "fv-backfill-1", "phase": "Succeeded"}
    assert report.status["materializedUntil"] == "2026-06-01T00:00:00Z"
    assert report.status["lastMaterializedAt"] is None  # a backfill is old data: it makes nothing fresh
    assert report.status["schemaHash"] == "s1"
    incremental = _done("fv-materialize-h", "2026-12-06T08:30:00Z", {"mlplatform.dev/materialization-spec-hash": "h"})
    later = feature_view_report(report.status, _fv_observed([incremental], backfill=(
        "2026-01-01T00:00:00+01:00", "2026-06-01T00:00:00Z", "fv-backfill-1")), now)
    assert later.status["materializedUntil"] == "2026-12-06T08:30:00Z"
    assert later.status["backfill"]["phase"] == "Succeeded"  # its Job is gone (TTL): the phase is kept


def test_waiting_for_the_store_is_ready_false_naming_it():
    problem = Cond("Ready", False, "FeatureStoreNotFound", "spec.store: FeatureStore team does not exist in namespace risk")
    report = feature_view_report({}, _fv_observed([], store_problem=problem), datetime.now(timezone.utc))
    conds = {c.type: c for c in report.conditions}
    assert conds["Ready"] == problem and report.phase == "WaitingForStore"
    assert conds["Stalled"].status is False


def test_freshness_condition_names_the_stale_views():
    def fv(fresh: str, message: str = "") -> dict:
        return {"status": {"conditions": [{"type": "Fresh", "status": fresh, "message": message}]}}

    assert freshness_condition([], {}) is None
    ok = freshness_condition(["a", "b"], {"a": fv("True"), "b": fv("True")})
    assert (ok.status, ok.reason) == (True, "FeaturesFresh")
    stale = freshness_condition(["a", "b"], {"a": fv("True"), "b": fv("False", "stale since 2026-12-06T08:00:00Z")})
    assert (stale.status, stale.reason) == (False, "FeaturesStale")
    assert "b (stale since 2026-12-06T08:00:00Z)" in stale.message and "a (" not in stale.message


def test_now_after_budget_is_stale():
    now = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
    incremental = _done("fv-materialize-h", (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        {"mlplatform.dev/materialization-spec-hash": "h"})
    report = feature_view_report({}, _fv_observed([incremental]), now)
    assert {c.type: c.reason for c in report.conditions}["Fresh"] == "Stale"


def test_on_change_job_is_named_by_the_hash_the_controller_expects():
    from mlplatform.render.featureview import materialization_job_name, materialization_spec_hash

    spec = view(source={"postgres": {"table": "t"}, "timestampField": "event_timestamp"})
    team = store()
    jobs = by_kind(render_feature_view(Owner("FeatureView", "fv", "risk"), spec, CONFIG, store=team).objects)["Job"]
    expected = materialization_job_name("fv", materialization_spec_hash(spec, CONFIG, team))
    assert expected in {j["metadata"]["name"] for j in jobs}
    assert materialization_spec_hash(spec, CONFIG, team) != materialization_spec_hash(spec, CONFIG)  # the store counts
