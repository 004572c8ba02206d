"""BatchPrediction: score a dataset with the model a ModelDeployment would serve, sharded over an Indexed Job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    CRON_PATTERN,
    ApiModel,
    CommonStatus,
    ContainerBlock,
    Resources,
    Rule,
    Scheduling,
    field,
    required,
)
from .modeldeployment import MODEL_URI_PATTERN, ModelFormat, Promotion

# Where a dataset is read and scores are written: object stores the pods reach with their credentials, or a
# PersistentVolumeClaim mounted into every worker.
DATA_URI_PATTERN = r"^((s3|gs)://.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"
DATA_URI_ALLOWED = "s3://, gs:// or pvc://<claim>/<path>"
# What starts no run when edited: how runs are held and when the next one is due.
FIELDS_THAT_DO_NOT_START_A_RUN = ("suspend", "schedule")
BATCH_RUN_HISTORY_LIMIT = 10
MAX_SHARDS = 10000

BatchPreset = Literal["sklearn", "xgboost", "mlserver", "vllm", "custom"]
LLM_PRESETS = ("vllm",)
# The model formats each preset's scorer reads (custom: whatever the image does).
BATCH_PRESET_FORMATS = {"sklearn": ("sklearn",), "xgboost": ("xgboost",), "mlserver": ("sklearn", "xgboost"),
                        "vllm": ("huggingface",)}


def _one_source(m) -> bool:
    return sum(x is not None for x in (m.uri, m.from_training_job, m.from_model_deployment)) == 1


class BatchModel(ApiModel):
    """As a ModelDeployment's model (uri, or fromTrainingJob with promotion), or what a ModelDeployment serves."""

    uri: str | None = field(
        "Where the model lives: s3://, gs://, hf://, oci:// or pvc://<claim>/<path>. One of uri, fromTrainingJob "
        "or fromModelDeployment.", pattern=MODEL_URI_PATTERN)
    from_training_job: str | None = field(
        "A TrainingJob in this namespace: the artifact of its latest succeeded run (with promotion: the newest "
        "succeeded run meeting every bound), resolved when a run starts and pinned for that run.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    from_model_deployment: str | None = field(
        "A ModelDeployment in this namespace: the model it serves (status.modelUri) when a run starts, pinned for "
        "that run, so that batch and online scores come from the same artifact.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    format: ModelFormat | None = field("Serialization format of the model: the preset's scorer must read it.")
    promotion: Promotion | None = field(
        "Only with fromTrainingJob: the newest succeeded run whose metrics meet every bound is used (as on a "
        "ModelDeployment).")
    rules = (
        Rule(
            "[has(self.uri), has(self.fromTrainingJob), has(self.fromModelDeployment)].filter(x, x).size() == 1",
            "set exactly one of model.uri, model.fromTrainingJob or model.fromModelDeployment",
            None,
            _one_source,
        ),
        Rule(
            "!has(self.promotion) || has(self.fromTrainingJob)",
            "model.promotion needs model.fromTrainingJob (a fixed model.uri or a ModelDeployment's model has no "
            "runs to choose from)",
            "promotion",
            lambda m: m.promotion is None or m.from_training_job is not None,
        ),
    )


class BatchRuntime(ContainerBlock):
    preset: BatchPreset = required(
        "What scores: sklearn, xgboost, mlserver (our scoring entrypoint in the preset's image: Parquet in, Parquet "
        "out), vllm (vllm run-batch: OpenAI batch JSONL in and out), or custom (image required; it gets SHARD_INDEX, "
        "SHARD_COUNT, INPUT_URI, OUTPUT_URI and MODEL_DIR).")
    image: str | None = field("Overrides the preset's image; required for custom.", min_length=1)
    rules = (
        Rule(
            "self.preset != 'custom' || has(self.image)",
            "runtime.image is required when runtime.preset is custom",
            "image",
            lambda r: r.preset != "custom" or r.image is not None,
        ),
    )


class BatchInput(ApiModel):
    uri: str = required(
        f"The dataset: {DATA_URI_ALLOWED}; a Parquet file or a prefix of Parquet files (OpenAI batch JSONL for the "
        "vllm preset). Files are assigned to shards in name order, file k to shard k mod shards; a single Parquet "
        "file is split into row ranges instead.", pattern=DATA_URI_PATTERN)


class BatchOutput(ApiModel):
    uri: str = required(
        f"Where runs write: {DATA_URI_ALLOWED}. Run n writes <uri>/run-<n>/part-<i>.parquet (part-<i>.jsonl for "
        "vllm) and a success marker part-<i>.done per shard; a restarted shard whose marker exists is not scored "
        "again.", pattern=DATA_URI_PATTERN)


def _is_jsonl(uri: str) -> bool:
    return uri.endswith((".jsonl", ".json"))


class BatchPredictionSpec(ApiModel):
    model: BatchModel = required("The model to score with." + " Editing it starts a new run.")
    runtime: BatchRuntime = required("The scorer." + " Editing it starts a new run.")
    input: BatchInput = required("The dataset to score. Editing it starts a new run.")
    output: BatchOutput = required("Where the scores go. Editing it starts a new run.")
    shards: int | None = field(
        "Pieces the dataset is cut into: the Indexed Job's completions, one pod per shard, retried alone "
        "(default 1). Editing it starts a new run.", ge=1, le=MAX_SHARDS)
    parallelism: int | None = field(
        "Shards scored at once: the Job's parallelism, at most shards (default: shards). Editing it starts a new "
        "run.", ge=1, le=MAX_SHARDS)
    backoff_limit_per_index: int | None = field(
        "Retries of one shard before the run fails naming it (the Job's backoffLimitPerIndex; maxFailedIndexes is "
        "0, so one shard out of retries fails the run). A pod disrupted by preemption or eviction is retried "
        "without counting. Default: 2. Editing it starts a new run.", ge=0, le=20)
    resources: Resources | None = field("Per worker: cpu, memory, gpu. Editing it starts a new run.")
    scheduling: Scheduling | None = field("Node selection, tolerations and priority. Editing it starts a new run.")
    service_account_name: str | None = field(
        "ServiceAccount of the workers (storage credentials). Editing it starts a new run.", max_length=253)
    schedule: str | None = field(
        "Recurring runs: a cron schedule, run by a CronJob <name>-scheduled whose Jobs the operator numbers as runs "
        "(trigger schedule). Creating the resource or editing what a run computes starts a run at once as well. "
        "Editing it starts no run.", pattern=CRON_PATTERN)
    suspend: bool | None = field(
        "Hold the current run's pods and the schedule; phase Suspended. Editing it starts no run: false resumes "
        "the same run.")
    rules = (
        Rule(
            "!has(self.parallelism) || self.parallelism <= (has(self.shards) ? self.shards : 1)",
            "parallelism must be <= shards (a shard is one pod: more pods than shards would have nothing to do)",
            "parallelism",
            lambda s: s.parallelism is None or s.parallelism <= (s.shards or 1),
        ),
        Rule(
            "self.runtime.preset != 'vllm' || !self.input.uri.endsWith('.parquet')",
            "input.uri must be OpenAI batch JSONL for the vllm preset (vllm run-batch reads it), not Parquet",
            "input.uri",
            lambda s: s.runtime.preset not in LLM_PRESETS or not s.input.uri.endswith(".parquet"),
        ),
        Rule(
            "!(self.runtime.preset in ['sklearn', 'xgboost', 'mlserver']) || "
            "!(self.input.uri.endsWith('.jsonl') || self.input.uri.endsWith('.json'))",
            "input.uri must be Parquet for the sklearn, xgboost and mlserver scorers; JSONL is for LLM presets (vllm)",
            "input.uri",
            lambda s: s.runtime.preset not in ("sklearn", "xgboost", "mlserver") or not _is_jsonl(s.input.uri),
        ),
        Rule(
            "!has(self.model.format) || self.runtime.preset == 'custom' || "
            "(self.runtime.preset == 'sklearn' && self.model.format == 'sklearn') || "
            "(self.runtime.preset == 'xgboost' && self.model.format == 'xgboost') || "
            "(self.runtime.preset == 'mlserver' && self.model.format in ['sklearn', 'xgboost']) || "
            "(self.runtime.preset == 'vllm' && self.model.format == 'huggingface')",
            "model.format must be one the preset's scorer reads: sklearn: sklearn; xgboost: xgboost; mlserver: "
            "sklearn or xgboost; vllm: huggingface",
            "model.format",
            lambda s: s.model.format is None or s.runtime.preset == "custom"
            or s.model.format in BATCH_PRESET_FORMATS[s.runtime.preset],
        ),
    )


class ShardCounts(ApiModel):
    total: int | None = field("Shards of the current run.")
    succeeded: int | None = field("Shards scored (the Job's completedIndexes).")
    failed: int | None = field("Shards out of retries (the Job's failedIndexes).")


class Lineage(ApiModel):
    training_job: str | None = field("The TrainingJob whose run made the model.")
    run: int | None = field("That TrainingJob's run.")
    artifact_uri: str | None = field("The model URI scored with.")
    model_deployment: str | None = field("With fromModelDeployment: the ModelDeployment whose model was pinned.")


class BatchRunRecord(ApiModel):
    run: int = required("Run number.")
    job: str | None = field("Name of the run's Job.")
    trigger: Literal["spec", "schedule"] | None = field("What started it: a spec change (or the creation), or the schedule.")
    generation: int | None = field("metadata.generation the run was started for.")
    phase: str | None = field("Pending Running Succeeded Failed Superseded.")
    reason: str | None = field("Why the run is where it is.")
    message: str | None = field("Detail of the reason.")
    model_uri: str | None = field("The model pinned for the run.")
    lineage: Lineage | None = field("Where the pinned model came from.")
    output_uri: str | None = field("Where the run writes: <output.uri>/run-<n>/.")
    shards: ShardCounts | None = field("Shard counts of the run.")
    rows_scored: int | None = field("Rows scored by the run's shards (their termination messages).")
    start_time: str | None = field("When the run started.", json_schema_extra={"format": "date-time"})
    completion_time: str | None = field("When the run finished.", json_schema_extra={"format": "date-time"})


class BatchPredictionStatus(CommonStatus):
    run: int | None = field("Current run number.")
    run_spec_hash: str | None = field("Hash of the spec fields whose edit starts a new run.")
    runs: list[BatchRunRecord] | None = field(f"The last {BATCH_RUN_HISTORY_LIMIT} runs.")
    shards: ShardCounts | None = field("Shards of the current run.")
    shard_summary: str | None = field("succeeded/total shards of the current run, for kubectl get.")
    rows_scored: int | None = field("Rows scored by the current run so far.")
    model_uri: str | None = field("The model the current run scores with (pinned at its start).")
    lineage: Lineage | None = field("Where the current run's model came from (as on a ModelDeployment).")
    output_uri: str | None = field("Where the current run writes: <output.uri>/run-<n>/.")
    start_time: str | None = field("When the current run started.", json_schema_extra={"format": "date-time"})
    completion_time: str | None = field("When the current run finished.", json_schema_extra={"format": "date-time"})


class BatchPrediction(ApiModel):
    """Score a dataset with a model resolved as a ModelDeployment resolves it: each run is an Indexed Job whose
    worker i scores shard i into <output>/run-<n>/part-<i>.parquet, resumable, with progress in status."""

    spec: BatchPredictionSpec = Field(..., description="Desired state of the BatchPrediction.")
