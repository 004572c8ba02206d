"""Local throughput of the BatchPrediction scoring entrypoint (operator/mlplatform/workers/batch_score.py) beside
a plain model.predict over the same rows in one process.

    .venv/bin/python e2e/bench_scoring.py [--rows 1000000] [--files 8] [--shards 2]

An sklearn model (HistGradientBoostingClassifier, 6 features) is trained here; ROWS rows are written as FILES
Parquet files. Figures (rows/s, wall clock):
  predict          model.predict over all rows already in memory, one process (the floor: no I/O)
  read+predict     the same after reading the Parquet files with pandas, one process
  entrypoint x1    the entrypoint as one shard: reads, scores in batches, writes part-0.parquet and its marker
  entrypoint xN    N shards as N processes at once (what N pods of a run do), every shard's rows written
Each entrypoint process loads the model itself, as a pod does, with its share of the CPUs (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.ensemble import HistGradientBoostingClassifier

ROOT = Path(__file__).resolve().parents[1]
SCORER = ROOT / "operator" / "mlplatform" / "workers" / "batch_score.py"
FEATURES = [f"f{i}" for i in range(6)]


def make_data(directory: Path, rows: int, files: int) -> None:
    rng = np.random.default_rng(0)
    per_file = rows // files
    for i in range(files):
        n = per_file if i < files - 1 else rows - per_file * (files - 1)
        frame = pd.DataFrame({name: rng.normal(size=n) for name in FEATURES})
        frame.insert(0, "id", np.arange(n, dtype=np.int64) + i * per_file)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / f"part-{i:03d}.parquet")


def train(model_dir: Path) -> HistGradientBoostingClassifier:
    rng = np.random.default_rng(1)
    x = pd.DataFrame({name: rng.normal(size=20000) for name in FEATURES})
    y = (x["f0"] + x["f1"] * x["f2"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=50).fit(x, y)
    joblib.dump(model, model_dir / "model.joblib")
    return model


def run_shards(inputs: Path, output: Path, model_dir: Path, shards: int) -> float:
    env_base = {"SHARD_COUNT": str(shards), "INPUT_URI": str(inputs), "OUTPUT_URI": str(output),
                "MODEL_DIR": str(model_dir), "PRESET": "sklearn", "TERMINATION_LOG": os.devnull,
                "PATH": os.environ["PATH"],
                # each shard's share of the CPUs, as a pod's CPU request gives it (one process: all of them)
                "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // shards))}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(SCORER)], env={**env_base, "SHARD_INDEX": str(i)},
                              stdout=subprocess.DEVNULL) for i in range(shards)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - t0
    assert codes == [0] * shards, codes
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--shards", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=2, help="each figure is the best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        inputs, model_dir = tmp_path / "in", tmp_path / "model"
        inputs.mkdir()
        model_dir.mkdir()
        make_data(inputs, args.rows, args.files)
        model = train(model_dir)

        reads, predicts, singles, shardeds = [], [], [], []
        for attempt in range(args.repeat):
            t0 = time.perf_counter()
            frame = pd.concat([pd.read_parquet(p) for p in sorted(inputs.glob("*.parquet"))], ignore_index=True)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            expected = model.predict(frame[FEATURES])
            predicts.append(time.perf_counter() - t0)
            # a fresh output folder each time: the success markers would make a second run skip every shard
            singles.append(run_shards(inputs, tmp_path / f"out1-{attempt}", model_dir, 1))
            shardeds.append(run_shards(inputs, tmp_path / f"outN-{attempt}", model_dir, args.shards))
        read, predict, single, sharded = min(reads), min(predicts), min(singles), min(shardeds)
        scored = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "outN-0").glob("part-*.parquet"))])
        assert len(scored) == args.rows
        by_id = scored.sort_values("id")["prediction"].to_numpy()
        assert (by_id == expected).all(), "the entrypoint's predictions differ from model.predict"

        rows = args.rows
        print(f"{rows} rows, {args.files} Parquet files, {len(FEATURES)} features, HistGradientBoostingClassifier; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; best of {args.repeat}")
        print(f"{'what':<22}{'seconds':>10}{'rows/s':>14}")
        for what, seconds in (("predict (in memory)", predict), ("read+predict", read + predict),
                              ("entrypoint, 1 shard", single), (f"entrypoint, {args.shards} shards", sharded)):
            print(f"{what:<22}{seconds:>10.2f}{rows / seconds:>14,.0f}")
        print("entrypoint outputs == model.predict: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
