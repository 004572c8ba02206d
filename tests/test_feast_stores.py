"""A team FeatureStore on a real PostgreSQL (offline store and SQL registry) and a real Redis (online store).

Every step runs exactly what the pods run, from the repo the operator renders: the connectivity check
(check_stores.py, the FeatureStore's Job), `materialize_command` (the on-change Job and the CronJob),
`backfill_command` (the backfill Job) and `serve_command` (the feature server), with the secrets given as the
env vars the pods get from secretKeyRef. The servers are Debian's, started by the session fixtures
(postgres_server, redis_server in tests/conftest.py, from e2e/stores.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("feast")

import psycopg
from feast import FeatureStore

from mlplatform.api.featurestore import FeatureStoreSpec
from mlplatform.api.featureview import FeatureViewSpec
from mlplatform.config import FeastConfig
from mlplatform.labels import BACKFILL_WINDOW_ANNOTATION
from mlplatform.render.feast import (
    FEAST_REPO_MOUNT,
    FEAST_WORK_DIR,
    backfill_command,
    feast_repo_files,
    materialize_command,
    push_source_name,
    serve_command,
)
from mlplatform.render.feast_check import config_problems
from mlplatform.render.feast_stores import OFFLINE_PASSWORD_ENV, ONLINE_PASSWORD_ENV, REGISTRY_URL_ENV
from mlplatform.render.featurestore import check_command, store_repo_files
from mlplatform.status.featureview import FeatureViewObserved, feature_view_report

NOW = datetime.now(timezone.utc).replace(microsecond=0)
T0 = NOW - timedelta(days=10)  # the seeded history starts here: hourly events over 10 days
TABLE = "driver_events"
FEAST = FeastConfig()


def _secret_env(pg, redis, **override) -> dict[str, str]:
    """What the pods get from secretKeyRef, plus the venv's bin on PATH (feast, python)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FEAST_USAGE": "False",
           "PYTHONUNBUFFERED": "1",
           OFFLINE_PASSWORD_ENV: pg_password(pg), ONLINE_PASSWORD_ENV: redis_password(),
           REGISTRY_URL_ENV: pg.sqlalchemy_url()}
    env.update(override)
    return env


def pg_password(pg) -> str:
    return pg.dsn.split(":")[2].split("@")[0]


def redis_password() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
    import stores

    return stores.REDIS_PASSWORD


def store_spec(pg, redis) -> FeatureStoreSpec:
    postgres = {"host": "127.0.0.1", "port": pg.port, "database": "features", "user": "feast", "sslMode": "disable",
                "passwordSecretRef": {"name": "pg-feast", "key": "password"}}
    return FeatureStoreSpec.model_validate({
        "offlineStore": {"type": "postgres", "postgres": postgres},
        "onlineStore": {"type": "redis", "redis": {"connectionString": redis.connection_string,
                                                   "passwordSecretRef": {"name": "redis", "key": "password"}}},
        "registry": {"type": "sql", "urlSecretRef": {"name": "feast-registry", "key": "url"}, "cacheTtlSeconds": 0},
    })


def view_spec(**source) -> FeatureViewSpec:
    return FeatureViewSpec.model_validate({
        "entities": [{"name": "driver", "joinKey": "driver_id", "valueType": "INT64"}],
        "features": [{"name": "conv_rate", "dtype": "FLOAT32"}, {"name": "trips", "dtype": "INT64"}],
        "source": {"postgres": {"table": TABLE}, "timestampField": "event_timestamp", "createdTimestampField": "created",
                   **source},
        "ttl": "30d",
        "freshness": {"maxStaleness": "1h"},
    })


def event_value(driver: int, hour: int) -> tuple[float, int]:
    """The seeded (conv_rate, trips) of driver at T0 + hour: distinct per row, so a wrong row is seen."""
    return round(driver + hour / 1000, 3), driver * 10_000 + hour


# driver 1: hourly over the 10 days; driver 2: only in the first 5 days; driver 3: one row in the future
DRIVER_HOURS = {1: range(0, 240), 2: range(0, 120), 3: [240 + 48]}


@pytest.fixture(scope="module")
def seeded(postgres_server):
    rows = [(driver, T0 + timedelta(hours=h), T0 + timedelta(hours=h), *event_value(driver, h))
            for driver, hours in DRIVER_HOURS.items() for h in hours]
    with psycopg.connect(postgres_server.dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (driver_id bigint, event_timestamp timestamptz, created timestamptz, "
                     "conv_rate real, trips bigint)")
        with conn.cursor().copy(f"COPY {TABLE} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return rows


def write_mount(directory: Path, files: dict[str, str]) -> Path:
    """The ConfigMap volume as the kubelet lays it out: the files are symlinks into a hidden ..data directory."""
    data = directory / "..data"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_text(content)
        (directory / name).symlink_to(Path("..data") / name)
    return directory


def run_pod_command(command: list[str], mount: Path, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A rendered container command with the mount and work dir of this machine in place of the pod's."""
    script = command[2].replace(FEAST_REPO_MOUNT, str(mount)).replace(FEAST_WORK_DIR, str(work))
    return subprocess.run([command[0], command[1], script], cwd=work.parent, env=env, capture_output=True, text=True,
                          timeout=300)


def online(work: Path, env: dict[str, str], view: str, drivers: list[int]) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        for k in (OFFLINE_PASSWORD_ENV, ONLINE_PASSWORD_ENV, REGISTRY_URL_ENV):
            mp.setenv(k, env[k])
        store = FeatureStore(repo_path=str(work))
        return store.get_online_features(features=[f"{view}:conv_rate", f"{view}:trips"],
                                         entity_rows=[{"driver_id": d} for d in drivers]).to_dict()


# --- the FeatureStore's connectivity check ------------------------------------------------------


def test_rendered_store_config_is_accepted_by_feast_and_has_no_secret(postgres_server, redis_server, tmp_path):
    files = store_repo_files("risk", "default", store_spec(postgres_server, redis_server), _config())
    text = files["feature_store.yaml"]
    assert pg_password(postgres_server) not in text and redis_password() not in text
    assert "${" + OFFLINE_PASSWORD_ENV + "}" in text and "${" + REGISTRY_URL_ENV + "}" in text
    assert config_problems(text, _secret_env(postgres_server, redis_server)) == []
    broken = yaml.safe_load(text)
    broken["online_store"]["redis_type"] = "memcached"
    problems = config_problems(yaml.safe_dump(broken), {})
    assert len(problems) == 1 and problems[0].startswith("onlineStore: Feast refuses it"), problems


def _config():
    from mlplatform.config import OperatorConfig

    return OperatorConfig()


@pytest.mark.parametrize("broken, named", [
    (None, None),
    ({ONLINE_PASSWORD_ENV: "wrong"}, "onlineStore (redis): unreachable"),
    ({OFFLINE_PASSWORD_ENV: "wrong"}, "offlineStore (postgres): unreachable"),
])
def test_check_job_command_against_the_real_stores(postgres_server, redis_server, tmp_path, broken, named):
    mount = write_mount(tmp_path / "mount",
                        store_repo_files("risk", "default", store_spec(postgres_server, redis_server), _config()))
    env = _secret_env(postgres_server, redis_server, **(broken or {}))
    result = run_pod_command(check_command(), mount, tmp_path / "work", env)
    if named is None:
        assert result.returncode == 0, result.stderr
        assert "every store answered" in result.stdout
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert named in result.stderr, result.stderr
        assert "wrong" not in result.stderr  # the message that reaches status never quotes a secret value


# --- materialization, online and historical reads ----------------------------------------------


@pytest.fixture(scope="module")
def materialized(postgres_server, redis_server, seeded, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fs-live")
    files = feast_repo_files("risk", "driver-live", view_spec(push=True), FEAST, store_spec(postgres_server, redis_server))
    mount = write_mount(tmp / "mount", files)
    env = _secret_env(postgres_server, redis_server)
    started = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_pod_command(materialize_command(), mount, tmp / "work", env)
    finished = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"mount": mount, "work": tmp / "work", "env": env, "started": started, "finished": finished}


def test_materialized_online_values_are_the_latest_per_entity(materialized):
    got = online(materialized["work"], materialized["env"], "driver_live", [1, 2, 3, 4])
    assert got["conv_rate"][0] == pytest.approx(event_value(1, 239)[0])
    assert got["trips"][:2] == [event_value(1, 239)[1], event_value(2, 119)[1]]
    assert got["trips"][2:] == [None, None]  # driver 3's only row is in the future; driver 4 has none


def test_point_in_time_historical_read_has_no_leakage(materialized):
    # each entity row asks "as of" a time between two events: the value must be the one at or before it
    asks = [(1, 10.5), (1, 100.0), (2, 119.9), (2, 150.0), (1, -1.0)]
    entity_df = pd.DataFrame({"driver_id": [d for d, _ in asks],
                              "event_timestamp": [T0 + timedelta(hours=h) for _, h in asks]})
    with pytest.MonkeyPatch.context() as mp:
        for k in (OFFLINE_PASSWORD_ENV, ONLINE_PASSWORD_ENV, REGISTRY_URL_ENV):
            mp.setenv(k, materialized["env"][k])
        store = FeatureStore(repo_path=str(materialized["work"]))
        df = store.get_historical_features(entity_df=entity_df,
                                           features=["driver_live:trips", "driver_live:conv_rate"]).to_df()
    def naive_utc(value) -> pd.Timestamp:  # Feast's Postgres store returns naive UTC times
        ts = pd.Timestamp(value)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts

    by_key = {(int(r.driver_id), naive_utc(r.event_timestamp)): r for r in df.itertuples()}
    assert len(by_key) == len(asks)
    for driver, hour in asks:
        row = by_key[(driver, naive_utc(T0 + timedelta(hours=hour)))]
        at_or_before = max((h for h in DRIVER_HOURS[driver] if h <= hour), default=None)
        if at_or_before is None:
            assert pd.isna(row.trips), (driver, hour)
        else:
            assert int(row.trips) == event_value(driver, at_or_before)[1], (driver, hour)


def test_push_through_feast_serve_is_read_back_online(materialized, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
    import stores

    port = stores.free_port()
    command = serve_command(port)
    script = command[2].replace(FEAST_REPO_MOUNT, str(materialized["mount"])).replace(FEAST_WORK_DIR, str(tmp_path / "s"))
    script = script.replace("--host 0.0.0.0", "--host 127.0.0.1")  # loopback only on a shared machine
    proc = subprocess.Popen([command[0], command[1], script], cwd=tmp_path, env=materialized["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        pushed_at = datetime.now(timezone.utc).isoformat()
        _post(port, "/push", {"push_source_name": push_source_name("driver-live"), "to": "online",
                              "df": {"driver_id": [4], "event_timestamp": [pushed_at], "created": [pushed_at],
                                     "conv_rate": [0.5], "trips": [4242]}})
        got = _post(port, "/get-online-features", {"features": ["driver_live:trips"], "entities": {"driver_id": [4, 1]}})
        values = {n: r["values"] for n, r in zip(got["metadata"]["feature_names"], got["results"], strict=True)}
        assert values["trips"] == [4242, event_value(1, 239)[1]]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
    return json.loads(text) if text else {}


def test_backfill_window_loads_exactly_that_range(postgres_server, redis_server, seeded, tmp_path):
    start, end = T0 + timedelta(hours=50), T0 + timedelta(hours=60, minutes=30)
    files = feast_repo_files("risk", "driver-backfill", view_spec(), FEAST, store_spec(postgres_server, redis_server))
    mount = write_mount(tmp_path / "mount", files)
    env = _secret_env(postgres_server, redis_server)
    result = run_pod_command(backfill_command(start.isoformat(), end.isoformat()), mount, tmp_path / "work", env)
    assert result.returncode == 0, result.stdout + result.stderr
    got = online(tmp_path / "work", env, "driver_backfill", [1, 2, 3])
    # the latest row inside the window, not the later ones
    assert got["trips"] == [event_value(1, 60)[1], event_value(2, 60)[1], None]


def test_freshness_from_the_real_watermark(materialized):
    """The status rules fed with the Job as Kubernetes reports it: materializedUntil never claims more than
    Feast recorded, and Fresh turns False maxStaleness after it."""
    with pytest.MonkeyPatch.context() as mp:
        for k in (OFFLINE_PASSWORD_ENV, ONLINE_PASSWORD_ENV, REGISTRY_URL_ENV):
            mp.setenv(k, materialized["env"][k])
        fv = FeatureStore(repo_path=str(materialized["work"])).get_feature_view("driver_live")
    real_end = max(end for _, end in fv.materialization_intervals)
    job = {"metadata": {"name": "driver-live-materialize-x", "annotations": {}},
           "status": {"startTime": materialized["started"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "completionTime": materialized["finished"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    backfill_job = {"metadata": {"name": "driver-live-backfill-y", "annotations": {BACKFILL_WINDOW_ANNOTATION: "w"}},
                    "status": {"startTime": "2020-01-01T00:00:00Z", "conditions": [{"type": "Complete", "status": "True"}]}}
    obs = FeatureViewObserved(online=True, suspended=False, spec_hash="h", max_staleness_seconds=3600,
                              materialization_jobs=[job, backfill_job], server=None, server_desired=1, server_url="u",
                              schema_hash="s")
    fresh_report = feature_view_report({}, obs, real_end + timedelta(minutes=59))
    until = datetime.strptime(fresh_report.status["materializedUntil"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert until <= real_end.astimezone(timezone.utc) <= until + timedelta(seconds=120)
    assert {c.type: c.status for c in fresh_report.conditions}["Fresh"] is True
    stale = feature_view_report({}, obs, materialized["finished"] + timedelta(hours=1, seconds=2))
    assert {c.type: c.reason for c in stale.conditions}["Fresh"] == "Stale"


# --- every store type the operator renders, judged by Feast's own config classes --------------------

# The stores tested for real have their extras in the test dependencies (feast[postgres,redis]); the other
# extras (gcp, snowflake, aws, spark) do not resolve beside this project's pins. Without its driver, Feast cannot
# load a type's config class: the check then refuses the store naming it (the Feast image has every driver).
DRIVERS = {"bigquery": "google.cloud.bigquery", "snowflake": "snowflake.connector", "redshift": "boto3",
           "dynamodb": "boto3", "spark": "pyspark"}


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _store_cases():
    from .test_featurestore import STORE_CASES

    return STORE_CASES


@pytest.mark.parametrize("which,key", _store_cases(), ids=[f"{w}-{k}" for w, k in _store_cases()])
def test_every_rendered_store_type_is_judged_by_feasts_config_classes(which, key):
    from .test_featurestore import store_with

    spec, _, _ = store_with(which, key)
    text = store_repo_files("risk", "default", spec, _config())["feature_store.yaml"]
    env = {OFFLINE_PASSWORD_ENV: "pw", ONLINE_PASSWORD_ENV: "pw", REGISTRY_URL_ENV: "postgresql+psycopg://u:p@h/db"}
    problems = config_problems(text, env)
    driver = DRIVERS.get(key)
    if driver is not None and not _importable(driver):
        field = {"offline": "offlineStore", "online": "onlineStore"}[which]
        assert len(problems) == 1 and problems[0].startswith(f"{field}: Feast refuses it: Could not import"), problems
    else:
        assert problems == []
    broken = yaml.safe_load(text)
    block = broken[{"offline": "offline_store", "online": "online_store", "registry": "registry"}[which]]
    if which == "registry":
        block["cache_ttl_seconds"] = "soon"  # a wrong type: the check names the store
    else:
        block["no_such_setting"] = 1  # Feast's store config models forbid unknown keys: the check names the store
    field = {"offline": "offlineStore", "online": "onlineStore", "registry": "registry"}[which]
    assert any(p.startswith(f"{field}: Feast refuses it") for p in config_problems(yaml.safe_dump(broken), env))
