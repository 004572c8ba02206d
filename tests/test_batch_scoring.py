"""The BatchPrediction scoring entrypoint (workers/batch_score.py), run for real on local Parquet shards with an
sklearn and an xgboost model trained here: outputs match the model's own predict(), a killed run resumes without
scoring again what it wrote, row counts add up; and the vllm command line against vllm's documented flags."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost
from sklearn.linear_model import LogisticRegression

from mlplatform.workers import batch_score

FEATURES = ["amount", "age_days", "velocity"]


def dataset(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in FEATURES})
    frame.insert(0, "merchant_id", np.arange(rows, dtype=np.int64) + seed * 1_000_000)
    return frame


def labels(frame: pd.DataFrame) -> np.ndarray:
    return (frame["amount"] + 0.5 * frame["velocity"] > 0).astype(int).to_numpy()


@pytest.fixture(scope="module")
def sklearn_model_dir(tmp_path_factory) -> Path:
    train = dataset(500, seed=99)
    model = LogisticRegression().fit(train[FEATURES], labels(train))  # fitted on a frame: it keeps its feature names
    directory = tmp_path_factory.mktemp("sklearn-model")
    joblib.dump(model, directory / "model.joblib")
    return directory


@pytest.fixture(scope="module")
def xgboost_model_dir(tmp_path_factory) -> Path:
    train = dataset(500, seed=98)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3},
                            xgboost.DMatrix(train[FEATURES], label=labels(train)), num_boost_round=5)
    directory = tmp_path_factory.mktemp("xgboost-model")
    booster.save_model(directory / "model.json")
    return directory


def write_inputs(directory: Path, sizes: list[int]) -> pd.DataFrame:
    """One Parquet file per size (small row groups, so row ranges cross them); their concatenation."""
    directory.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, size in enumerate(sizes):
        frame = dataset(size, seed=i)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / f"day-{i:02d}.parquet",
                       row_group_size=37)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def read_parts(output: Path, shards: int) -> pd.DataFrame:
    return pd.concat([pq.read_table(output / f"part-{i}.parquet").to_pandas() for i in range(shards)],
                     ignore_index=True)


def score_all(input_uri: Path, output: Path, model_dir: Path, shards: int, fmt: str | None = None) -> list[int]:
    return [batch_score.score_parquet_shard(str(input_uri), str(output), str(model_dir), i, shards, fmt,
                                            batch_rows=50)[0] for i in range(shards)]


def test_sklearn_scores_match_the_models_predict_over_files_assigned_to_shards(tmp_path, sklearn_model_dir):
    everything = write_inputs(tmp_path / "in", [120, 80, 0, 45, 210])
    rows = score_all(tmp_path / "in", tmp_path / "out", sklearn_model_dir, shards=3)
    assert sum(rows) == len(everything) == 455
    # files k go to shard k mod 3, in name order
    assert rows == [120 + 45, 80 + 210, 0]
    scored = read_parts(tmp_path / "out", 3).sort_values("merchant_id").reset_index(drop=True)
    expected = joblib.load(sklearn_model_dir / "model.joblib").predict(
        everything.sort_values("merchant_id")[FEATURES])
    assert list(scored.columns) == ["merchant_id", *FEATURES, "prediction"]
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), expected)
    for i, n in enumerate(rows):
        assert json.loads((tmp_path / "out" / f"part-{i}.done").read_text()) == {"rows": n}


def test_xgboost_scores_match_the_boosters_predict_on_row_ranges_of_one_file(tmp_path, xgboost_model_dir):
    everything = write_inputs(tmp_path / "in", [1001])
    single = tmp_path / "in" / "day-00.parquet"
    rows = score_all(single, tmp_path / "out", xgboost_model_dir, shards=4, fmt="xgboost")
    assert rows == [250, 250, 250, 251] and sum(rows) == 1001
    scored = read_parts(tmp_path / "out", 4)
    assert scored["merchant_id"].tolist() == everything["merchant_id"].tolist()  # ranges in order, no overlap
    booster = xgboost.Booster()
    booster.load_model(xgboost_model_dir / "model.json")
    np.testing.assert_allclose(scored["prediction"].to_numpy(),
                               booster.predict(xgboost.DMatrix(everything[FEATURES])), rtol=1e-6)


def test_a_killed_run_resumes_without_scoring_written_shards_again(tmp_path, sklearn_model_dir, monkeypatch):
    write_inputs(tmp_path / "in", [30, 40, 50, 60])
    out = tmp_path / "out"
    first = [batch_score.score_parquet_shard(str(tmp_path / "in"), str(out), str(sklearn_model_dir), i, 4)
             for i in (0, 1)]
    assert first == [(30, False), (40, False)]
    # shard 2 dies after writing its part but before its marker: it is scored again; 0 and 1 are not
    (out / "part-2.parquet").write_bytes(b"half a file")
    scored: list[int] = []
    predict = batch_score.predict
    monkeypatch.setattr(batch_score, "predict", lambda model, frame: scored.append(len(frame)) or predict(model, frame))
    again = [batch_score.score_parquet_shard(str(tmp_path / "in"), str(out), str(sklearn_model_dir), i, 4)
             for i in range(4)]
    assert again == [(30, True), (40, True), (50, False), (60, False)]
    assert sum(scored) == 50 + 60
    assert sum(n for n, _ in again) == 180 == len(read_parts(out, 4))


def run_worker(env: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """The entrypoint as the pod runs it: its own file, by path, with the shard's environment only."""
    log = tmp_path / f"termination-{env['SHARD_INDEX']}"
    script = Path(batch_score.__file__)
    result = subprocess.run([sys.executable, str(script)], env={**env, "TERMINATION_LOG": str(log),
                                                                 "PATH": os.environ["PATH"]},
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    return result, log


def test_the_file_runs_alone_and_reports_rows_as_its_termination_message(tmp_path, sklearn_model_dir):
    write_inputs(tmp_path / "in", [10, 20])
    env = {"SHARD_COUNT": "2", "INPUT_URI": str(tmp_path / "in"), "OUTPUT_URI": f"file://{tmp_path}/out/run-1/",
           "MODEL_DIR": str(sklearn_model_dir), "PRESET": "sklearn"}
    messages = []
    for index in (0, 1):
        result, log = run_worker({**env, "SHARD_INDEX": str(index)}, tmp_path)
        assert result.returncode == 0, result.stderr
        messages.append(json.loads(log.read_text()))
    assert messages == [{"shard": 0, "rows": 10, "resumed": False}, {"shard": 1, "rows": 20, "resumed": False}]
    result, log = run_worker({**env, "SHARD_INDEX": "1"}, tmp_path)
    assert json.loads(log.read_text()) == {"shard": 1, "rows": 20, "resumed": True}


def test_a_missing_model_is_not_retryable(tmp_path):
    write_inputs(tmp_path / "in", [5])
    (tmp_path / "empty-model").mkdir()
    result, log = run_worker({"SHARD_INDEX": "0", "SHARD_COUNT": "1", "INPUT_URI": str(tmp_path / "in"),
                              "OUTPUT_URI": str(tmp_path / "out"), "MODEL_DIR": str(tmp_path / "empty-model")}, tmp_path)
    assert result.returncode == batch_score.EXIT_NOT_RETRYABLE
    assert "model.joblib" in result.stderr and not log.exists()
    result, _ = run_worker({"SHARD_INDEX": "0", "SHARD_COUNT": "1", "INPUT_URI": str(tmp_path / "nothing-here"),
                            "OUTPUT_URI": str(tmp_path / "out"), "MODEL_DIR": str(tmp_path / "empty-model")}, tmp_path)
    assert result.returncode == batch_score.EXIT_NOT_RETRYABLE and "no such file or folder" in result.stderr


def test_mlserver_model_settings_name_the_model_file(tmp_path, sklearn_model_dir):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "fraud.joblib").write_bytes((sklearn_model_dir / "model.joblib").read_bytes())
    (tmp_path / "model" / "model-settings.json").write_text(json.dumps(
        {"name": "fraud", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./fraud.joblib"}}))
    frame = dataset(7)
    model = batch_score.load_model(str(tmp_path / "model"))
    np.testing.assert_array_equal(batch_score.predict(model, frame),
                                  joblib.load(sklearn_model_dir / "model.joblib").predict(frame[FEATURES]))


# vllm run-batch's arguments as documented (docs.vllm.ai, "vllm run-batch", v0.11): the batch ones, and the engine
# arguments it takes like `vllm serve` (--model, --served-model-name).
def documented_run_batch_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm run-batch", allow_abbrev=False, exit_on_error=False)
    parser.add_argument("-i", "--input-file", required=True)
    parser.add_argument("-o", "--output-file", required=True)
    parser.add_argument("--output-tmp-dir")
    parser.add_argument("--response-role")
    parser.add_argument("--enable-metrics", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--port", type=int)
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", nargs="+")
    return parser


def test_the_vllm_command_is_run_batch_with_its_documented_flags():
    command = batch_score.vllm_command("/tmp/in.jsonl", "/tmp/out.jsonl", "/mnt/models", "support-llm")
    assert command[:2] == ["vllm", "run-batch"]
    args = documented_run_batch_parser().parse_args(command[2:])
    assert (args.input_file, args.output_file, args.model, args.served_model_name) == (
        "/tmp/in.jsonl", "/tmp/out.jsonl", "/mnt/models", ["support-llm"])


def test_vllm_shards_split_the_jsonl_requests_and_count_the_results(tmp_path):
    requests = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": "support-llm", "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(7)]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    seen: list[list[str]] = []

    def fake_vllm(command, check):  # answers each request as vllm run-batch writes results: one line per request
        seen.append(command)
        args = documented_run_batch_parser().parse_args(command[2:])
        lines = Path(args.input_file).read_text().splitlines()
        Path(args.output_file).write_text("".join(
            json.dumps({"custom_id": json.loads(line)["custom_id"], "response": {"status_code": 200}}) + "\n"
            for line in lines))

    results = [batch_score.score_jsonl_shard(str(tmp_path / "batch.jsonl"), str(tmp_path / "out"), "/mnt/models",
                                             i, 3, "support-llm", run=fake_vllm) for i in range(3)]
    assert [n for n, _ in results] == [2, 2, 3]
    ids = [json.loads(line)["custom_id"] for i in range(3)
           for line in (tmp_path / "out" / f"part-{i}.jsonl").read_text().splitlines()]
    assert ids == [r["custom_id"] for r in requests]
    assert all(shlex.join(c).startswith("vllm run-batch -i ") for c in seen)
    again = batch_score.score_jsonl_shard(str(tmp_path / "batch.jsonl"), str(tmp_path / "out"), "/mnt/models", 1, 3,
                                          run=fake_vllm)
    assert again == (2, True) and len(seen) == 3


def test_assignment_is_deterministic_and_covers_every_file_once():
    files = [f"f{i}" for i in range(10)]
    shards = [batch_score.assign(files, i, 4).files for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(files)
    assert shards[1] == ["f1", "f5", "f9"]
    ranges = [batch_score.assign(["one"], i, 3, rows_of_single=10).row_range for i in range(3)]
    assert ranges == [(0, 3), (3, 6), (6, 10)]
