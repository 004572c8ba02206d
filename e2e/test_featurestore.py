"""Team FeatureStores on the local control plane: the store and its views Ready with their Jobs and CronJob,
credentials only as secretKeyRef, feature server PDB; a model with featurePolicy.requireFresh follows its view's
freshness. (kwok runs no containers: what the Feast pods do is tested against real PostgreSQL and Redis in
tests/test_feast_stores.py, with the same commands.)"""

from __future__ import annotations

import json

import pytest

from harness import GROUP, VERSION, condition, feature_view_spec, resource

STORE = {
    "offlineStore": {"type": "postgres", "postgres": {
        "host": "pg.data.svc", "database": "features", "user": "feast",
        "passwordSecretRef": {"name": "pg-feast", "key": "password"}}},
    "onlineStore": {"type": "redis", "redis": {"connectionString": "redis.data.svc:6379",
                                               "passwordSecretRef": {"name": "redis", "key": "password"}}},
    "registry": {"type": "sql", "urlSecretRef": {"name": "feast-registry", "key": "url"}},
}
SECRETS = {"pg-feast", "redis", "feast-registry"}
PLURALS = {"FeatureStore": "featurestores", "FeatureView": "featureviews", "ModelDeployment": "modeldeployments"}


def get(custom, kind: str, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)


def wait_cond(wait_for, custom, kind, namespace, name, type_, status, reason=None, timeout=90):
    def check():
        body = get(custom, kind, namespace, name)
        c = condition(body, type_)
        return body if c.get("status") == status and (reason is None or c.get("reason") == reason) else None
    try:
        return wait_for(check, timeout=timeout, what=f"{kind} {name} {type_}={status} {reason or ''}")
    except pytest.fail.Exception as failed:  # say where it stands
        conditions = (get(custom, kind, namespace, name).get("status") or {}).get("conditions")
        raise AssertionError(f"{failed}; conditions now: {json.dumps(conditions)}") from None


def secret_refs(pod_spec) -> set[str]:
    names = set()
    for container in pod_spec.containers:
        for env in container.env or []:
            assert env.value_from is None or env.value_from.secret_key_ref is not None, env
            if env.value_from is not None:
                names.add(env.value_from.secret_key_ref.name)
            else:
                assert not env.name.endswith(("PASSWORD", "_URL")), env  # no secret as a literal value
    return names


def test_store_and_views_ready_with_jobs_cronjob_and_secret_refs_only(operator, kubectl, custom, namespace, batch_v1,
                                                                       apps_v1, core_v1, policy_v1, wait_for):
    kubectl.apply(resource("FeatureStore", "default", STORE), namespace)
    store = wait_cond(wait_for, custom, "FeatureStore", namespace, "default", "Ready", "True", "StoresReachable")
    assert store["status"]["configHash"]
    check_jobs = [j for j in batch_v1.list_namespaced_job(namespace).items if j.metadata.name.startswith("default-check-")]
    assert len(check_jobs) == 1 and secret_refs(check_jobs[0].spec.template.spec) == SECRETS

    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}
    spec = feature_view_spec(
        source={"postgres": {"table": "driver_stats"}, "timestampField": "event_timestamp", "push": True},
        materialization={"schedule": "0 * * * *", "timeZone": "Europe/Dublin", "backfill": window},
        serving={"replicas": 2})
    kubectl.apply(resource("FeatureView", "driver-stats", spec), namespace)
    view = wait_cond(wait_for, custom, "FeatureView", namespace, "driver-stats", "Ready", "True", "Serving")
    status = view["status"]
    assert len(status["schemaHash"]) == 8 and status["materializedUntil"]
    backfill = wait_for(lambda: (get(custom, "FeatureView", namespace, "driver-stats")["status"].get("backfill") or {})
                        if (get(custom, "FeatureView", namespace, "driver-stats")["status"].get("backfill") or {})
                        .get("phase") == "Succeeded" else None, timeout=60, what="backfill Succeeded")
    assert (backfill["start"], backfill["end"]) == (window["start"], window["end"])

    cron = batch_v1.read_namespaced_cron_job("driver-stats-materialize", namespace)
    assert (cron.spec.schedule, cron.spec.time_zone) == ("0 * * * *", "Europe/Dublin")
    jobs = {j.metadata.name: j for j in batch_v1.list_namespaced_job(namespace).items}
    assert backfill["job"] in jobs and "feast materialize 2026-01-01T00:00:00Z 2026-06-01T00:00:00Z" in \
        jobs[backfill["job"]].spec.template.spec.containers[0].command[2]
    for name, job in jobs.items():
        if name.startswith("driver-stats-"):
            assert secret_refs(job.spec.template.spec) == SECRETS, name
    assert secret_refs(cron.spec.job_template.spec.template.spec) == SECRETS
    server = apps_v1.read_namespaced_deployment("driver-stats-features", namespace)
    assert secret_refs(server.spec.template.spec) == SECRETS and server.spec.replicas == 2
    probe = server.spec.template.spec.containers[0].liveness_probe
    assert probe.http_get.path == "/health"
    pdb = policy_v1.read_namespaced_pod_disruption_budget("driver-stats-features", namespace)
    assert pdb.spec.max_unavailable == 1

    # no secret value anywhere the operator writes: ConfigMaps hold ${ENV} references, status names none
    for cm in core_v1.list_namespaced_config_map(namespace).items:
        text = json.dumps(cm.data or {})
        if "feature_store.yaml" in text:
            assert "${FEAST_OFFLINE_STORE_PASSWORD}" in text and "${FEAST_REGISTRY_URL}" in text


def test_a_view_naming_a_missing_store_waits_naming_it(operator, kubectl, custom, namespace, wait_for):
    kubectl.apply(resource("FeatureView", "orphan", feature_view_spec(store="payments")), namespace)
    body = wait_cond(wait_for, custom, "FeatureView", namespace, "orphan", "Ready", "False", "FeatureStoreNotFound")
    assert "FeatureStore payments" in condition(body, "Ready")["message"]
    kubectl.apply(resource("FeatureStore", "payments", {**STORE, "offlineStore": {"type": "file"}}), namespace)
    wait_cond(wait_for, custom, "FeatureView", namespace, "orphan", "Ready", "True", timeout=120)


def test_require_fresh_model_turns_not_ready_while_its_view_is_stale(operator, kubectl, custom, namespace, wait_for):
    model = {"model": {"uri": "s3://models/churn/v3/", "format": "sklearn"}, "runtime": {"preset": "sklearn"},
             "resources": {"cpu": "500m", "memory": "1Gi"}, "replicas": 1, "features": ["fleeting"],
             "featurePolicy": {"requireFresh": True}}
    kubectl.apply(resource("ModelDeployment", "fresh-scorer", model), namespace)
    kubectl.apply(resource("FeatureView", "fleeting", feature_view_spec(freshness={"maxStaleness": "20s"}, suspend=True)),
                  namespace)
    wait_cond(wait_for, custom, "ModelDeployment", namespace, "fresh-scorer", "Ready", "True", timeout=120)
    body = wait_cond(wait_for, custom, "ModelDeployment", namespace, "fresh-scorer", "Ready", "False", "FeaturesStale",
                     timeout=60)
    assert condition(body, "FeaturesFresh")["status"] == "False" and "fleeting" in condition(body, "FeaturesFresh")["message"]
    # a bigger budget makes the view Fresh again, and the model Ready
    kubectl.apply(resource("FeatureView", "fleeting", feature_view_spec(freshness={"maxStaleness": "1h"}, suspend=True)),
                  namespace)
    body = wait_cond(wait_for, custom, "ModelDeployment", namespace, "fresh-scorer", "Ready", "True", timeout=60)
    assert condition(body, "FeaturesFresh")["status"] == "True"
