"""The rendered Feast repository against the real Feast (no cluster): apply, materialize, read back.

Registry: a local file; online store: sqlite; offline store: dask/file over a parquet file written
here. The Feast CLI runs as a subprocess, exactly as in the materialization Job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("feast")

from feast import FeatureStore
from feast.repo_operations import is_valid_name

from mlplatform.api.featureview import FeatureViewSpec
from mlplatform.config import FeastConfig
from mlplatform.render.feast import (
    FEAST_REPO_MOUNT,
    apply_command,
    feast_project_name,
    feast_repo_files,
    feast_view_name,
    materialize_command,
    serve_command,
)

NASTY = 'He said "hi" \\ and \'bye\' """ triple """ \'\'\' \\n\n{{ jinja }} {% raw %} ${HOME} `id` \u00e9\u2603\u2028'
INJECTION = '""" + __import__("os").system("touch PWNED") + """\'); import os; os.system("touch PWNED") #'

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def _feast() -> str:
    exe = _bin_dir() / "feast"
    if exe.exists():
        return str(exe)
    found = shutil.which("feast")
    assert found, "the feast CLI is not installed"
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("FEAST_USAGE", "False")
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _feast_config(tmp: Path, offline: str = "dask") -> FeastConfig:
    return FeastConfig.model_validate({
        "registry": {"registry_type": "file", "path": str(tmp / "registry-{project}.db"), "cache_ttl_seconds": 0},
        "onlineStore": {"type": "sqlite", "path": str(tmp / "online-{namespace}-{name}.db")},
        "offlineStore": {"type": offline},
    })


def _write_repo(repo: Path, files: dict[str, str]) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    for filename, content in files.items():
        (repo / filename).write_text(content)
    return repo


def _online(repo: Path, refs: list[str], rows: list[dict]) -> dict:
    store = FeatureStore(repo_path=str(repo))
    return store.get_online_features(features=refs, entity_rows=rows).to_dict()


# --- case 1: INT64 entity, every dtype, ttl, created timestamp; plain CLI -----------------------

SPEC_1 = {
    "description": NASTY,
    "owner": INJECTION,
    "entities": [{"name": "driver", "joinKey": "driver_id", "valueType": "INT64", "description": NASTY}],
    "features": [
        {"name": "conv_rate", "dtype": "FLOAT32", "description": INJECTION},
        {"name": "acc_rate", "dtype": "FLOAT64"},
        {"name": "trips_today", "dtype": "INT64"},
        {"name": "rank", "dtype": "INT32"},
        {"name": "city", "dtype": "STRING"},
        {"name": "active", "dtype": "BOOL"},
        {"name": "blob", "dtype": "BYTES"},
    ],
    "source": {"path": "PLACEHOLDER", "timestampField": "event_timestamp", "createdTimestampField": "created"},
    "ttl": "1d",
}


def _row1(driver, event, created, conv, acc, trips, rank, city, active, blob):
    return {"driver_id": driver, "event_timestamp": event, "created": created, "conv_rate": conv,
            "acc_rate": acc, "trips_today": trips, "rank": rank, "city": city, "active": active, "blob": blob}


ROWS_1 = [
    _row1(1001, NOW - timedelta(hours=3), NOW - timedelta(hours=3), 0.25, 0.5, 3, 7, "berlin", False, b"old"),
    # latest for 1001: two rows at the same event time, the later `created` wins
    _row1(1001, NOW - timedelta(hours=1), NOW - timedelta(minutes=50), 0.75, 0.125, 12, 2, 'ber"lin', True, b"\x00new"),
    _row1(1001, NOW - timedelta(hours=1), NOW - timedelta(minutes=55), 0.5, 0.0, 99, 99, "stale", False, b"stale"),
    _row1(1002, NOW - timedelta(hours=2), NOW - timedelta(hours=2), 1.5, 2.25, 5, 1, "paris", True, b"p"),
    # in the future: beyond the materialization end (now)
    _row1(1002, NOW + timedelta(hours=2), NOW, 9.0, 9.0, 9, 9, "future", False, b"f"),
    # older than the ttl: never materialized incrementally, and expired for lookups
    _row1(1003, NOW - timedelta(hours=30), NOW - timedelta(hours=30), 4.0, 4.0, 4, 4, "expired", True, b"x"),
]
EXPECTED_1 = {
    1001: {"conv_rate": 0.75, "acc_rate": 0.125, "trips_today": 12, "rank": 2, "city": 'ber"lin', "active": True,
           "blob": b"\x00new"},
    1002: {"conv_rate": 1.5, "acc_rate": 2.25, "trips_today": 5, "rank": 1, "city": "paris", "active": True,
           "blob": b"p"},
    1003: {k: None for k in ("conv_rate", "acc_rate", "trips_today", "rank", "city", "active", "blob")},
}


def _parquet_1(path: Path) -> None:
    df = pd.DataFrame(ROWS_1)
    df = df.astype({"driver_id": "int64", "conv_rate": "float32", "acc_rate": "float64", "trips_today": "int64",
                    "rank": "int32", "active": "bool"})
    df.to_parquet(path, index=False)


@pytest.fixture(scope="module")
def repo1(tmp_path_factory, case2):  # case2 first: its script runs meanwhile
    tmp = tmp_path_factory.mktemp("feast1")
    data = tmp / "driver_stats.parquet"
    _parquet_1(data)
    spec = FeatureViewSpec.model_validate({**SPEC_1, "source": {**SPEC_1["source"], "path": str(data)}})
    files = feast_repo_files("risk", "driver-stats", spec, _feast_config(tmp))
    repo = _write_repo(tmp / "repo", files)
    _run([_feast(), "apply"], repo)
    _run([_feast(), "materialize-incremental", NOW.strftime("%Y-%m-%dT%H:%M:%S")], repo)
    return repo


def test_feature_store_yaml_shape(tmp_path):
    import yaml

    spec = FeatureViewSpec.model_validate({**SPEC_1, "source": {**SPEC_1["source"], "path": "/data/x.parquet"}})
    files = feast_repo_files("risk", "driver-stats", spec, _feast_config(tmp_path))
    assert set(files) == {"feature_store.yaml", "features.py"}
    config = yaml.safe_load(files["feature_store.yaml"])
    assert config == {
        "project": "risk__driver_stats",
        "provider": "local",
        "registry": {"registry_type": "file", "path": str(tmp_path / "registry-risk__driver_stats.db"),
                     "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": str(tmp_path / "online-risk-driver-stats.db")},
        "offline_store": {"type": "dask"},
        "entity_key_serialization_version": 3,
    }
    compile(files["features.py"], "features.py", "exec")


def test_placeholders_filled_recursively_and_other_braces_kept():
    import yaml

    feast = FeastConfig.model_validate({
        "registry": {"path": "s3://reg/{namespace}/{name}.pb", "nested": [{"k": "{project}"}, 3, True]},
        "onlineStore": {"type": "redis", "connection_string": "redis:6379,db=0", "key_ttl_seconds": 10,
                        "literal": "{unknown} {{project}}"},
    })
    spec = FeatureViewSpec.model_validate({**SPEC_1, "source": {**SPEC_1["source"], "path": "/x.parquet"}})
    config = yaml.safe_load(feast_repo_files("team-a", "fv", spec, feast)["feature_store.yaml"])
    assert config["registry"] == {"path": "s3://reg/team-a/fv.pb", "nested": [{"k": "team_a__fv"}, 3, True]}
    assert config["online_store"]["literal"] == "{unknown} {team_a__fv}"
    assert config["online_store"]["key_ttl_seconds"] == 10


def test_online_read_back_latest_values(repo1):
    view = feast_view_name("driver-stats")
    assert view == "driver_stats"
    features = list(EXPECTED_1[1001])
    got = _online(repo1, [f"{view}:{f}" for f in features], [{"driver_id": d} for d in EXPECTED_1])
    assert got["driver_id"] == list(EXPECTED_1)
    for i, driver in enumerate(EXPECTED_1):
        for feature, want in EXPECTED_1[driver].items():
            value = got[feature][i]
            if isinstance(want, float):
                assert value == pytest.approx(want), (driver, feature)
            else:
                assert value == want, (driver, feature, value)


def test_user_strings_round_trip_into_registry(repo1):
    store = FeatureStore(repo_path=str(repo1))
    fv = store.get_feature_view("driver_stats")
    assert fv.description == NASTY
    assert fv.owner == INJECTION
    assert fv.tags == {"mlplatform.dev/namespace": "risk", "mlplatform.dev/name": "driver-stats"}
    assert fv.ttl == timedelta(days=1)
    assert fv.online is True
    assert {f.name: f.description for f in fv.features}["conv_rate"] == INJECTION
    assert store.get_entity("driver").description == NASTY
    assert store.get_entity("driver").join_key == "driver_id"
    assert store.get_data_source("driver_stats_source").created_timestamp_column == "created"
    assert not list(repo1.parent.rglob("PWNED")) and not list(Path.cwd().glob("PWNED"))


# --- case 2: STRING + INT32 entities, no ttl, the exact materialization script -----------------

SPEC_2 = {
    "entities": [
        {"name": "customer", "joinKey": "customer_id", "valueType": "STRING"},
        {"name": "region", "joinKey": "region_id", "valueType": "INT32"},
    ],
    "features": [{"name": "spend", "dtype": "FLOAT64"}, {"name": "last_seen", "dtype": "UNIX_TIMESTAMP"}],
    "source": {"path": "PLACEHOLDER", "timestampField": "ts"},
}


@pytest.fixture(scope="module")
def case2(tmp_path_factory):
    """Starts the exact materialization script in the background (Feast's CLI takes ~10 s to import)."""
    tmp = tmp_path_factory.mktemp("feast2")
    data = tmp / "customers.parquet"
    pd.DataFrame({
        "customer_id": ["c-1", "c-1", "c-2", "c-1"],
        "region_id": pd.array([1, 1, 1, 2], dtype="int32"),
        "ts": [NOW - timedelta(days=10), NOW - timedelta(days=2), NOW - timedelta(days=5), NOW - timedelta(hours=1)],
        "spend": [1.0, 2.5, 7.0, 11.0],
        "last_seen": [SEEN[0], SEEN[1], SEEN[0], SEEN[1]],
    }).to_parquet(data, index=False)
    spec = FeatureViewSpec.model_validate({**SPEC_2, "source": {**SPEC_2["source"], "path": f"file://{data}"}})
    mount = _write_repo(tmp / "mount", feast_repo_files("shop", "customer-spend", spec,
                                                        _feast_config(tmp, offline="file")))
    # a ConfigMap volume: files are symlinks into a hidden ..data directory
    data_dir = mount / "..data"
    data_dir.mkdir()
    for f in list(mount.iterdir()):
        if f.is_file():
            shutil.move(f, data_dir / f.name)
            (mount / f.name).symlink_to(Path("..data") / f.name)
    work = tmp / "work"
    command = materialize_command(repo_dir=str(mount), work_dir=str(work))
    proc = subprocess.Popen(command, cwd=tmp, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        yield command, mount, work, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


SEEN = [NOW - timedelta(days=3), NOW - timedelta(days=1)]


def test_materialize_command_script(case2):
    command, mount, work, proc = case2
    default = materialize_command()
    assert default[:2] == ["/bin/sh", "-c"] and FEAST_REPO_MOUNT in default[2]
    assert command[2] == default[2].replace(FEAST_REPO_MOUNT, str(mount)).replace("/tmp/feast-repo", str(work))
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "Materializing" in output

    view = feast_view_name("customer-spend")
    got = _online(work, [f"{view}:spend", f"{view}:last_seen"],
                  [{"customer_id": "c-1", "region_id": 1}, {"customer_id": "c-2", "region_id": 1},
                   {"customer_id": "c-1", "region_id": 2}, {"customer_id": "c-9", "region_id": 1}])
    assert got["spend"] == [2.5, 7.0, 11.0, None]
    last_seen = [None if v is None else pd.Timestamp(v) for v in got["last_seen"]]
    assert last_seen[:3] == [pd.Timestamp(SEEN[1]), pd.Timestamp(SEEN[0]), pd.Timestamp(SEEN[1])]
    assert last_seen[3] is None

    fv = FeatureStore(repo_path=str(work)).get_feature_view(view)
    assert fv.ttl in (None, timedelta(0))  # absent ttl: forever
    assert fv.description == "" and fv.tags["mlplatform.dev/namespace"] == "shop"


# --- feast serve -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(repo1, tmp_path):
    port = _free_port()
    command = serve_command(port, repo_dir=str(repo1), work_dir=str(tmp_path / "serve"))
    assert f"--host 0.0.0.0 --port {port}" in command[2]
    proc = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        body = json.dumps({"features": ["driver_stats:trips_today", "driver_stats:city"],
                           "entities": {"driver_id": [1001, 1002]}}).encode()
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/get-online-features", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    result = json.load(resp)
                break
            except OSError:
                assert time.monotonic() < deadline, "feast serve did not answer"
                time.sleep(0.5)
        names = result["metadata"]["feature_names"]
        values = {n: r["values"] for n, r in zip(names, result["results"], strict=True)}
        assert values["trips_today"] == [12, 5]
        assert values["city"] == ['ber"lin', "paris"]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_apply_command_only_applies():
    script = apply_command(repo_dir="/m", work_dir="/w")[2]
    assert script.splitlines() == ["set -eu", "rm -rf /w", "mkdir -p /w", "cp -L /m/* /w/", "cd /w", "feast apply"]
    assert apply_command()[2] in materialize_command()[2]


# --- naming ------------------------------------------------------------------------------------


def test_project_names_valid_and_unique():
    pairs = [
        ("risk", "driver-stats"), ("risk-driver", "stats"), ("risk", "driver.stats"), ("risk", "driver--stats"),
        ("risk--driver", "stats"), ("risk", "driver-stats-0123456789"), ("a", "b" * 253), ("a", "b" * 252 + "c"),
        ("n" * 63, "x" * 253), ("x", "y-z"), ("x-y", "z"), ("x", "y.z"), ("x.y", "z"), ("x", "y--z"), ("x--y", "z"),
    ]
    names = [feast_project_name(ns, n) for ns, n in pairs]
    assert len(set(names)) == len(names), names
    for name in names:
        assert is_valid_name(name) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", name), name
        assert len(name) <= 101
    assert feast_project_name("risk", "driver-stats") == "risk__driver_stats"
    assert feast_project_name("risk", "driver-stats") == feast_project_name("risk", "driver-stats")
    assert feast_view_name("driver-stats") == "driver_stats"
    assert feast_view_name("a.b-c") == "a_b_c"
