"""Score one shard of a BatchPrediction run: the entrypoint of the worker pods of the sklearn, xgboost, mlserver
and vllm presets.

Shipped as a ConfigMap mounted into the preset's own image (like a FeatureView's Feast repo), so it imports
only what those images have: the standard library, and pandas/pyarrow/scikit-learn/xgboost/joblib (Parquet
presets), or the vllm CLI (vllm). It never imports mlplatform.

Environment (set by the operator; custom images get the same): SHARD_INDEX, SHARD_COUNT, INPUT_URI (a Parquet
file or a prefix; JSONL for vllm), OUTPUT_URI (the run's folder), MODEL_DIR, PRESET; optional MODEL_FORMAT,
SERVED_MODEL_NAME (vllm), BATCH_ROWS (rows per batch), TERMINATION_LOG (default /dev/termination-log).

Shard i of n: with several input files, files i, i+n, i+2n, ... in name order; with a single file, its rows
[i*rows/n, (i+1)*rows/n). It writes OUTPUT_URI/part-<i>.parquet (the input columns and `prediction`), then the
marker part-<i>.done holding {"rows": N}; a shard whose marker exists is not scored again (a restarted pod or
run resumes). It reports {"shard": i, "rows": N, "resumed": bool} as its termination message, which the
operator adds up into status.rowsScored.

Exit codes: 0 done; 3 the shard cannot be scored as configured (no model file, an unreadable input): retrying
cannot help, so the Job's podFailurePolicy fails the shard at once; anything else is retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

EXIT_NOT_RETRYABLE = 3
PREDICTION_COLUMN = "prediction"
DEFAULT_BATCH_ROWS = 262144  # per predict call: smaller batches cost models with per-call overhead (HGB: 1.6x at 65536)
SKLEARN_FILES = ("model.joblib", "model.pkl", "model.pickle")
XGBOOST_FILES = ("model.bst", "model.json", "model.ubj")


class NotRetryable(Exception):
    """The shard cannot be scored as configured: exit EXIT_NOT_RETRYABLE."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    files: list[str]                       # input files of this shard
    row_range: tuple[int, int] | None = None  # [start, stop) of the single input file


# ----------------------------------------------------------------------------- storage (pyarrow.fs)


def filesystem(uri: str):
    """(pyarrow filesystem, path) for s3://, gs://, file:// or a local path (a mounted claim)."""
    from pyarrow import fs

    if "://" in uri:
        return fs.FileSystem.from_uri(uri)
    return fs.LocalFileSystem(), os.path.abspath(uri)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def list_inputs(uri: str, suffixes: tuple[str, ...]) -> tuple[object, list[str]]:
    """The input files in name order: the file itself, or every file under the prefix with one of the suffixes."""
    from pyarrow import fs as pafs

    filesystem_, path = filesystem(uri)
    info = filesystem_.get_file_info(path)
    if info.type == pafs.FileType.File:
        return filesystem_, [path]
    if info.type != pafs.FileType.Directory:
        raise NotRetryable(f"INPUT_URI {uri}: no such file or folder")
    found = filesystem_.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(f.path for f in found if f.type == pafs.FileType.File and f.path.endswith(suffixes)
                   and not os.path.basename(f.path).startswith(("_", ".")))
    return filesystem_, files


def assign(files: list[str], index: int, count: int, rows_of_single: int | None = None) -> Shard:
    """Which files (or which rows of the one file) shard `index` of `count` scores: deterministic."""
    if len(files) == 1 and rows_of_single is not None:
        start, stop = index * rows_of_single // count, (index + 1) * rows_of_single // count
        return Shard(index, count, files, (start, stop))
    return Shard(index, count, files[index::count])


# ----------------------------------------------------------------------------- models


def load_model(model_dir: str, fmt: str | None = None):
    """The model in MODEL_DIR as the KServe servers find it: model.joblib/.pkl/.pickle (sklearn, joblib) or
    model.bst/.json/.ubj (xgboost Booster); mlserver's model-settings.json may name the file (parameters.uri)."""
    names = []
    settings = os.path.join(model_dir, "model-settings.json")
    if os.path.exists(settings):
        with open(settings) as f:
            uri = ((json.load(f).get("parameters") or {}).get("uri") or "").removeprefix("./")
        if uri:
            names.append(uri)
    if fmt != "xgboost":
        names += SKLEARN_FILES
    if fmt != "sklearn":
        names += XGBOOST_FILES
    for name in names:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            continue
        if path.endswith(XGBOOST_FILES):
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(path)
            return booster
        import joblib

        return joblib.load(path)
    raise NotRetryable(f"MODEL_DIR {model_dir}: none of {', '.join(names)} found")


def predict(model, frame):
    """model.predict over the frame's feature columns: the names the model was fitted with when it kept them,
    else every column."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = getattr(model, "feature_names", None)
    features = frame[list(names)] if names is not None else frame
    if type(model).__name__ == "Booster":
        import xgboost

        return model.predict(xgboost.DMatrix(features))
    return model.predict(features)


# ----------------------------------------------------------------------------- one shard


def marker_path(output: str, index: int) -> str:
    return _join(output, f"part-{index}.done")


def part_path(output: str, index: int, suffix: str = "parquet") -> str:
    return _join(output, f"part-{index}.{suffix}")


def already_done(out_fs, output: str, index: int) -> int | None:
    """Rows of a shard whose marker exists, else None."""
    from pyarrow import fs as pafs

    path = marker_path(output, index)
    if out_fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with out_fs.open_input_stream(path) as f:
        return int(json.loads(f.read().decode())["rows"])


def write_marker(out_fs, output: str, index: int, rows: int) -> None:
    with out_fs.open_output_stream(marker_path(output, index)) as f:
        f.write(json.dumps({"rows": rows}).encode())


def _batches(in_fs, shard: Shard, batch_rows: int):
    import pyarrow.parquet as pq

    for path in shard.files:
        with in_fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            if shard.row_range is None:
                yield from parquet.iter_batches(batch_size=batch_rows)
                continue
            start, stop = shard.row_range
            offset = 0
            for group in range(parquet.num_row_groups):
                rows = parquet.metadata.row_group(group).num_rows
                lo, hi = max(start, offset), min(stop, offset + rows)
                if lo < hi:
                    table = parquet.read_row_group(group).slice(lo - offset, hi - lo)
                    yield from table.to_batches(max_chunksize=batch_rows)
                offset += rows


def score_parquet_shard(input_uri: str, output_uri: str, model_dir: str, index: int, count: int,
                        fmt: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS) -> tuple[int, bool]:
    """Score shard `index` of `count`; (rows, resumed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_fs, output = filesystem(output_uri)
    done = already_done(out_fs, output, index)
    if done is not None:
        return done, True
    in_fs, files = list_inputs(input_uri, (".parquet", ".pq"))
    single_rows = None
    if len(files) == 1:
        with in_fs.open_input_file(files[0]) as f:
            single_rows = pq.ParquetFile(f).metadata.num_rows
    shard = assign(files, index, count, single_rows)
    model = load_model(model_dir, fmt)
    out_fs.create_dir(output, recursive=True)
    rows, writer = 0, None
    try:
        for batch in _batches(in_fs, shard, batch_rows):
            frame = batch.to_pandas()
            table = pa.Table.from_batches([batch]).append_column(PREDICTION_COLUMN, pa.array(predict(model, frame)))
            if writer is None:
                writer = pq.ParquetWriter(out_fs.open_output_stream(part_path(output, index)), table.schema)
            writer.write_table(table)
            rows += batch.num_rows
        if writer is None:  # an empty shard still leaves its (empty) part, so that every index has one
            pq.write_table(pa.table({PREDICTION_COLUMN: pa.array([], pa.float64())}),
                           out_fs.open_output_stream(part_path(output, index)))
    finally:
        if writer is not None:
            writer.close()
    write_marker(out_fs, output, index, rows)
    return rows, False


def vllm_command(input_file: str, output_file: str, model_dir: str, served_model_name: str | None) -> list[str]:
    """`vllm run-batch` as documented: -i/--input-file and -o/--output-file (local paths or http(s) URLs), and the
    engine's --model (plus --served-model-name, so the requests' "model" field may name the deployment)."""
    command = ["vllm", "run-batch", "-i", input_file, "-o", output_file, "--model", model_dir]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    return command


def _jsonl_lines(in_fs, shard: Shard) -> list[bytes]:
    lines: list[bytes] = []
    for path in shard.files:
        with in_fs.open_input_stream(path) as f:
            lines += [line for line in f.read().splitlines(keepends=True) if line.strip()]
    return lines


def score_jsonl_shard(input_uri: str, output_uri: str, model_dir: str, index: int, count: int,
                      served_model_name: str | None = None, run=subprocess.run) -> tuple[int, bool]:
    """vllm: the shard's requests into one local JSONL, `vllm run-batch` over it, its results to part-<i>.jsonl."""
    out_fs, output = filesystem(output_uri)
    done = already_done(out_fs, output, index)
    if done is not None:
        return done, True
    in_fs, files = list_inputs(input_uri, (".jsonl", ".json"))
    if len(files) == 1:
        every = _jsonl_lines(in_fs, Shard(index, count, files))
        shard_lines = every[index * len(every) // count:(index + 1) * len(every) // count]
    else:
        shard_lines = _jsonl_lines(in_fs, assign(files, index, count))
    with tempfile.TemporaryDirectory() as tmp:
        local_in, local_out = os.path.join(tmp, "input.jsonl"), os.path.join(tmp, "output.jsonl")
        with open(local_in, "wb") as f:
            f.writelines(shard_lines)
        if shard_lines:
            run(vllm_command(local_in, local_out, model_dir, served_model_name), check=True)
        else:
            open(local_out, "wb").close()
        with open(local_out, "rb") as f:
            results = f.read()
    out_fs.create_dir(output, recursive=True)
    with out_fs.open_output_stream(part_path(output, index, "jsonl")) as f:
        f.write(results)
    rows = sum(1 for line in results.splitlines() if line.strip())
    write_marker(out_fs, output, index, rows)
    return rows, False


def report(path: str, index: int, rows: int, resumed: bool) -> str:
    message = json.dumps({"shard": index, "rows": rows, "resumed": resumed})
    try:
        with open(path, "w") as f:
            f.write(message)
    except OSError as err:  # outside a pod there may be no termination log: the message still goes to stdout
        print(f"could not write the termination message to {path}: {err}", file=sys.stderr)
    return message


def main(env=os.environ) -> int:
    try:
        index, count = int(env["SHARD_INDEX"]), int(env["SHARD_COUNT"])
        preset = env.get("PRESET", "sklearn")
        if preset == "vllm":
            rows, resumed = score_jsonl_shard(env["INPUT_URI"], env["OUTPUT_URI"], env["MODEL_DIR"], index, count,
                                              env.get("SERVED_MODEL_NAME"))
        else:
            rows, resumed = score_parquet_shard(env["INPUT_URI"], env["OUTPUT_URI"], env["MODEL_DIR"], index, count,
                                                env.get("MODEL_FORMAT") or None,
                                                int(env.get("BATCH_ROWS") or DEFAULT_BATCH_ROWS))
    except KeyError as err:
        print(f"batch scoring: environment variable {err.args[0]} is not set", file=sys.stderr)
        return EXIT_NOT_RETRYABLE
    except NotRetryable as err:
        print(f"batch scoring: {err}", file=sys.stderr)
        return EXIT_NOT_RETRYABLE
    print(report(env.get("TERMINATION_LOG", "/dev/termination-log"), index, rows, resumed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
