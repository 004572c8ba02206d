"""ModelDeployment: serve a model, autoscaled, on CPU or GPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    ApiModel,
    CommonStatus,
    ContainerBlock,
    FeatureRefs,
    IntOrPercent,
    Quantity,
    Resources,
    Rule,
    Scheduling,
    field,
    required,
)

MODEL_URI_PATTERN = r"^((s3|gs|hf|oci)://.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"
MODEL_URI_ALLOWED = "s3://, gs://, hf://, oci:// or pvc://<claim>/<path>"

ModelFormat = Literal["sklearn", "xgboost", "pytorch", "onnx", "tensorflow", "huggingface", "custom"]
RuntimePreset = Literal["triton", "vllm", "torchserve", "sklearn", "xgboost", "mlserver", "custom"]


class MetricBound(ApiModel):
    name: str = required("Metric name, a key of the run's status.runs[].metrics (e.g. auc, loss).",
                         pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=63)
    min: float | None = field("The run qualifies only when the metric is at least this.")
    max: float | None = field("The run qualifies only when the metric is at most this.")
    rules = (
        Rule(
            "has(self.min) || has(self.max)",
            "a promotion metric needs min or max",
            None,
            lambda b: b.min is not None or b.max is not None,
        ),
    )


class Promotion(ApiModel):
    metrics: list[MetricBound] = required(
        "Bounds every deployed run must meet; a run with no metrics recorded fails every bound.",
        min_length=1, max_length=16)
class ModelCache(ApiModel):
    size: Quantity = required("Size of the cache claim, e.g. 200Gi: the whole model must fit.")
    storage_class_name: str | None = field(
        "StorageClass of the claim (ReadWriteMany); the cluster default when absent.", max_length=253)


class Model(ApiModel):
    uri: str | None = field(
        f"Where the model lives: {MODEL_URI_ALLOWED}. One of uri or fromTrainingJob.",
        pattern=MODEL_URI_PATTERN,
    )
    from_training_job: str | None = field(
        "A TrainingJob in this namespace: its status.artifactUri is deployed once a run succeeded, "
        "and each newer successful run is rolled out. One of uri or fromTrainingJob.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    format: ModelFormat | None = field("Serialization format of the model, for the runtime.")
    promotion: Promotion | None = field(
        "Only with fromTrainingJob: the newest successful run whose metrics meet every bound is deployed; "
        "newer runs that miss one are skipped (ModelResolved says which run and which metric).")
    cache: ModelCache | None = field(
        "A shared model cache instead of one download per pod: a PersistentVolumeClaim per (namespace, model URI), "
        "named model-cache-<hash of the URI>, filled once by a Job with the storage initializer; replicas mount "
        "it read-only and download nothing. Deployments of the same URI share it; it is deleted (garbage "
        "collected) with the last ModelDeployment that uses it. Not for pvc:// or oci:// models.")
    rules = (
        Rule(
            "has(self.uri) != has(self.fromTrainingJob)",
            "set exactly one of model.uri or model.fromTrainingJob",
            None,
            lambda m: (m.uri is None) != (m.from_training_job is None),
        ),
        Rule(
            "!has(self.promotion) || has(self.fromTrainingJob)",
            "model.promotion needs model.fromTrainingJob (a fixed model.uri has no runs to choose from)",
            "promotion",
            lambda m: m.promotion is None or m.from_training_job is not None,
        ),
        Rule(
            "!has(self.cache) || !has(self.uri) || !(self.uri.startsWith('pvc://') || self.uri.startsWith('oci://'))",
            "model.cache is for downloaded models: a pvc:// or oci:// model is mounted as it is",
            "cache",
            lambda m: m.cache is None or m.uri is None or not m.uri.startswith(("pvc://", "oci://")),
        ),
    )


class Parallelism(ApiModel):
    tensor: int | None = field("Tensor-parallel size: GPUs one layer is split over (default 1).", ge=1, le=512)
    pipeline: int | None = field("Pipeline-parallel size: stages the layers are split into (default 1).", ge=1, le=512)


class Runtime(ContainerBlock):
    preset: RuntimePreset = required("Model server: triton vllm torchserve sklearn xgboost mlserver, or custom (image required).")
    image: str | None = field("Overrides the preset's image; required for custom.", min_length=1)
    port: int | None = field("Container port the server listens on; default from the preset.", ge=1, le=65535)
    protocol: Literal["http", "grpc"] | None = field("http or grpc; default http.")
    readiness_path: str | None = field("HTTP readiness probe path; default from the preset.", pattern=r"^/.*")
    parallelism: Parallelism | None = field(
        "Tensor and pipeline parallelism, passed to the server as the preset's arguments (the operator "
        "configuration declares them; a preset without them refuses this field). tensor*pipeline must equal "
        "resources.gpu.count*nodesPerReplica."
    )
    startup_timeout_seconds: int | None = field(
        "How long the server may take to load the model before Kubernetes restarts it: a startupProbe on the "
        "readiness endpoint. Default from the preset (large for vllm and triton).", ge=10, le=86400
    )
    rules = (
        Rule(
            "self.preset != 'custom' || has(self.image)",
            "runtime.image is required when runtime.preset is custom",
            "image",
            lambda r: r.preset != "custom" or r.image is not None,
        ),
    )


class AutoscalingTargets(ApiModel):
    cpu_utilization: int | None = field("Average CPU utilization, percent of the request.", ge=1, le=100)
    memory_utilization: int | None = field("Average memory utilization, percent of the request.", ge=1, le=100)
    gpu_utilization: int | None = field(
        "Average GPU utilization per pod, percent: a per-pod custom metric (DCGM via a metrics adapter).", ge=1, le=100
    )
    requests_per_second: int | None = field("Requests per second per pod: a per-pod custom metric.", ge=1)
    queue_depth: int | None = field(
        "Requests waiting per replica (the preset's queue metric, e.g. vllm:num_requests_waiting), from Prometheus.",
        ge=1)
    kv_cache_utilization: int | None = field(
        "Percent of the KV cache in use per replica (the preset's KV-cache metric; vllm), from Prometheus.",
        ge=1, le=100)
    concurrency: int | None = field("In-flight requests per replica (the preset's metric), from Prometheus.", ge=1)


# Targets read from Prometheus (the rest are the kubelet's resource metrics).
PROMETHEUS_TARGETS = ("gpu_utilization", "requests_per_second", "queue_depth", "kv_cache_utilization", "concurrency")
DEFAULT_IDLE_SECONDS = 300


class Autoscaling(ApiModel):
    engine: Literal["hpa", "keda"] | None = field(
        "hpa (default): a HorizontalPodAutoscaler, Prometheus targets through prometheus-adapter. keda: a KEDA "
        "ScaledObject (KEDA creates and owns the HPA) with Prometheus triggers; required for minReplicas 0.")
    min_replicas: int = required(
        "Lower bound of the replicas; 0 (engine keda only): scaled to zero after idleSeconds without demand.", ge=0)
    max_replicas: int = required("Upper bound of the replicas.", ge=1)
    idle_seconds: int | None = field(
        "With minReplicas 0: no demand for this long -> 0 replicas (KEDA's cooldownPeriod; default 300).",
        ge=0, le=86400)
    targets: AutoscalingTargets = required(
        "Metrics to scale on; at least one.", json_schema_extra={"minProperties": 1}
    )
    scale_down_stabilization_seconds: int | None = field(
        "How long the HPA waits before scaling down (default 300).", ge=0, le=3600
    )
    rules = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
            "minReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
        ),
        Rule(
            "self.minReplicas >= 1 || (has(self.engine) && self.engine == 'keda')",
            "autoscaling.minReplicas 0 (scale to zero) needs autoscaling.engine: keda",
            "minReplicas",
            lambda a: a.min_replicas >= 1 or a.engine == "keda",
        ),
        Rule(
            None,  # the schema's minProperties: 1 on targets; CEL has no size() of an object
            "autoscaling.targets needs at least one of cpuUtilization, memoryUtilization, gpuUtilization, "
            "requestsPerSecond, queueDepth, kvCacheUtilization, concurrency",
            "targets",
            lambda a: bool(a.targets.model_dump(exclude_none=True)),
        ),
    )


class Analysis(ApiModel):
    max_error_rate: float | None = field("Highest fraction of 5xx responses of the canary (0-1), e.g. 0.01.",
                                         ge=0, le=1)
    max_latency_ms: int | None = field("Highest p99 latency of the canary, in milliseconds.", ge=1)
    interval_seconds: int | None = field("Seconds between checks, and the window each check reads (default 30).",
                                         ge=5, le=3600)
    failure_limit: int | None = field("Failed checks (over a bound, or no data) at which the rollout is aborted "
                                      "with reason AnalysisFailed (default 1).", ge=1, le=100)
    rules = (
        Rule(
            "has(self.maxErrorRate) || has(self.maxLatencyMs)",
            "rollout.canary.analysis needs maxErrorRate or maxLatencyMs",
            None,
            lambda a: a.max_error_rate is not None or a.max_latency_ms is not None,
        ),
    )


class Canary(ApiModel):
    steps: list[int] = required(
        "Percent of traffic sent to the canary at each step, increasing, before 100 (e.g. [10, 50]).",
        min_length=1, max_length=10, json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 99}})
    step_seconds: int | None = field("How long each step holds once the canary is Ready (default 300).", ge=0, le=86400)
    pause: bool | None = field("true holds the canary at its current step: a manual gate committed in git.")
    mirror_percent: int | None = field(
        "Needs gateway: before step 1, this percent of requests is mirrored to the canary (HTTPRoute "
        "RequestMirror filter; its responses are discarded) for mirrorSeconds.", ge=1, le=100)
    mirror_seconds: int | None = field("How long the mirroring lasts before step 1 (default 300).", ge=1, le=86400)
    analysis: Analysis | None = field(
        "Judge the canary from Prometheus at every step: its 5xx rate and p99 latency against these bounds "
        "(needs prometheus.url in the operator configuration); failureLimit failed checks abort the rollout.")
    rules = (
        Rule(
            "!has(self.mirrorSeconds) || has(self.mirrorPercent)",
            "rollout.canary.mirrorSeconds needs rollout.canary.mirrorPercent",
            "mirrorSeconds",
            lambda c: c.mirror_seconds is None or c.mirror_percent is not None,
        ),
        Rule(
            "self.steps.all(s, s >= 1 && s <= 99)",
            "rollout.canary.steps must each be between 1 and 99 (100 is the promotion itself)",
            "steps",
            lambda c: all(1 <= s <= 99 for s in c.steps),
        ),
        Rule(
            "self.steps.isSorted() && self.steps.all(s, self.steps.exists_one(t, t == s))",
            "rollout.canary.steps must be strictly increasing",
            "steps",
            lambda c: all(a < b for a, b in zip(c.steps, c.steps[1:], strict=False)),
        ),
    )


class Rollout(ApiModel):
    max_surge: IntOrPercent | None = field("Extra pods during a rollout: a count or a percentage (default 25%).")
    max_unavailable: IntOrPercent | None = field("Pods that may be unavailable during a rollout (default 0).")
    canary: Canary | None = field(
        "A changed model, image, args, env or resources goes out as a canary Deployment <name>-canary: traffic "
        "follows the steps (HTTPRoute weights with gateway, else the replica ratio behind the shared Service); "
        "a canary not Ready within the progress deadline is aborted. The first deployment is never a canary.")


class ParentRef(ApiModel):
    name: str = required("Name of the Gateway.", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                         max_length=253)
    namespace: str | None = field("Namespace of the Gateway (default: this resource's).",
                                  pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    section_name: str | None = field("A listener of the Gateway.", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                     max_length=253)


class Gateway(ApiModel):
    parent_refs: list[ParentRef] = required("Gateways the HTTPRoute attaches to.", min_length=1, max_length=32)
    hostnames: list[str] | None = field(
        "Host names the route answers for.", max_length=16,
        json_schema_extra={"items": {"type": "string", "maxLength": 253,
                                     "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}})
    path: str | None = field("Path prefix routed to the model server (default /).", pattern=r"^/", max_length=1024)


class DisruptionBudget(ApiModel):
    min_available: IntOrPercent | None = field("Pods that must stay up during voluntary disruptions.")
    max_unavailable: IntOrPercent | None = field("Pods that may be down during voluntary disruptions.")
    rules = (
        Rule(
            "has(self.minAvailable) != has(self.maxUnavailable)",
            "set exactly one of disruptionBudget.minAvailable or disruptionBudget.maxUnavailable",
            None,
            lambda d: (d.min_available is None) != (d.max_unavailable is None),
        ),
    )


class FeaturePolicy(ApiModel):
    require_fresh: bool | None = field(
        "true: not Ready while a FeatureView in features is not Fresh (reason FeaturesStale). false (default): "
        "the FeaturesFresh condition and a Warning Event say so, Ready is unchanged.")


class ModelDeploymentSpec(ApiModel):
    model: Model = required("The model to serve.")
    runtime: Runtime = required("The model server.")
    resources: Resources | None = field("Per replica: cpu, memory, gpu.")
    scheduling: Scheduling | None = field("Node selection, tolerations and priority.")
    service_account_name: str | None = field("ServiceAccount of the pods (for model storage credentials).", max_length=253)
    replicas: int | None = field("Fixed number of replicas, used when autoscaling is absent (default 1).", ge=0)
    autoscaling: Autoscaling | None = field(
        "Autoscaler bounds and targets (an HPA, or a KEDA ScaledObject with engine keda); it then owns the replica "
        "count.")
    rollout: Rollout | None = field("Rolling update limits, and an optional canary.")
    gateway: Gateway | None = field(
        "Expose the model server through the Gateway API: an HTTPRoute named like the resource, to its Service.")
    features: FeatureRefs | None = field(
        "FeatureViews in this namespace read at inference time: each must be Ready before this is Ready; "
        "its serving URL is passed as FEATURES_<NAME>_URL."
    )
    feature_policy: FeaturePolicy | None = field("How the FeatureViews in features must be kept: requireFresh.")
    disruption_budget: DisruptionBudget | None = field(
        "PodDisruptionBudget of the replicas (pods; with nodesPerReplica > 1, replicas, i.e. whole groups: one "
        "evicted pod restarts its group, so the budget allows as many pod evictions as groups may be down).")
    suspend: bool | None = field("Scale to zero and keep everything else; phase Suspended.")
    nodes_per_replica: int | None = field(
        "Pods (one per GPU node) of one replica, default 1; more than 1: each replica is one LeaderWorkerSet "
        "group (a leader and nodesPerReplica-1 workers), for models larger than one node. Needs resources.gpu "
        "and a preset with multi-node support.", ge=1, le=64
    )
    rules = (
        Rule(
            "!has(self.runtime.parallelism) || (has(self.resources) && has(self.resources.gpu) && "
            "(has(self.runtime.parallelism.tensor) ? self.runtime.parallelism.tensor : 1) * "
            "(has(self.runtime.parallelism.pipeline) ? self.runtime.parallelism.pipeline : 1) == "
            "self.resources.gpu.count * (has(self.nodesPerReplica) ? self.nodesPerReplica : 1))",
            "runtime.parallelism: tensor*pipeline must equal resources.gpu.count*nodesPerReplica "
            "(the GPUs of one replica), and resources.gpu must be set",
            "runtime.parallelism",
            lambda s: s.runtime.parallelism is None or (
                s.resources is not None and s.resources.gpu is not None
                and (s.runtime.parallelism.tensor or 1) * (s.runtime.parallelism.pipeline or 1)
                == s.resources.gpu.count * (s.nodes_per_replica or 1)),
        ),
        Rule(
            "!has(self.nodesPerReplica) || self.nodesPerReplica == 1 || (has(self.resources) && has(self.resources.gpu))",
            "nodesPerReplica > 1 needs resources.gpu (each pod of a replica is one GPU node's worth)",
            "nodesPerReplica",
            lambda s: (s.nodes_per_replica or 1) == 1 or (s.resources is not None and s.resources.gpu is not None),
        ),
        Rule(
            "!has(self.nodesPerReplica) || self.nodesPerReplica == 1 || !has(self.rollout) || !has(self.rollout.canary)",
            "rollout.canary is not supported with nodesPerReplica > 1 (a multi-node replica is a LeaderWorkerSet "
            "group, rolled out by the LeaderWorkerSet): remove rollout.canary or set nodesPerReplica to 1",
            "rollout.canary",
            lambda s: (s.nodes_per_replica or 1) == 1 or s.rollout is None or s.rollout.canary is None,
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.canary) || !has(self.rollout.canary.mirrorPercent) || "
            "has(self.gateway)",
            "rollout.canary.mirrorPercent needs spec.gateway (requests are mirrored by the HTTPRoute)",
            "rollout.canary.mirrorPercent",
            lambda s: s.rollout is None or s.rollout.canary is None or s.rollout.canary.mirror_percent is None
            or s.gateway is not None,
        ),
        Rule(
            "!has(self.autoscaling) || !has(self.autoscaling.targets.gpuUtilization) || "
            "(has(self.resources) && has(self.resources.gpu))",
            "autoscaling.targets.gpuUtilization needs resources.gpu",
            "autoscaling.targets.gpuUtilization",
            lambda s: s.autoscaling is None
            or s.autoscaling.targets.gpu_utilization is None
            or (s.resources is not None and s.resources.gpu is not None),
        ),
    )


class AnalysisStatus(ApiModel):
    failed_checks: int | None = field("Checks of this canary that failed (over a bound, or no data).")
    checks: int | None = field("Checks of this canary so far.")
    last_check_time: str | None = field("When the last check ran.", json_schema_extra={"format": "date-time"})
    last_passed: bool | None = field("Whether the last check passed.")
    last_result: str | None = field("What the last check found: each metric, its value and its bound.")


class RolloutStatus(ApiModel):
    phase: Literal["Progressing", "Paused", "Promoting", "Promoted", "Aborted"] | None = field(
        "Progressing, Paused (rollout.canary.pause), Promoting (after the last step: the stable Deployment rolls to "
        "the new template while the canary keeps its share), Promoted (the canary's template is now stable) or "
        "Aborted.")
    step: int | None = field("Current canary step, from 1.")
    canary_weight: int | None = field("Percent of traffic the canary gets now: a step's weight once the canary has "
                                      "the Ready replicas it needs (until then the previous step's, or 0).")
    stable_model_uri: str | None = field("Model served by the stable Deployment.")
    canary_model_uri: str | None = field("Model served by the canary Deployment.")
    message: str | None = field("What the rollout is doing, or why it was aborted.")
    reason: str | None = field("Why it was aborted: ProgressDeadlineExceeded, AnalysisFailed (a metric over its "
                               "bound failureLimit times), or SpecReverted (the spec went back to the stable template).")
    stable_hash: str | None = field("Hash of the stable pod template.")
    canary_hash: str | None = field("Hash of the canary pod template.")
    step_start_time: str | None = field("When the current step began holding: the first reconcile that routed its weight "
                                        "(the canary's Ready capacity there); microsecond precision.",
                                        json_schema_extra={"format": "date-time"})
    start_time: str | None = field("When this canary started.", json_schema_extra={"format": "date-time"})
    analysis: AnalysisStatus | None = field("rollout.canary.analysis: the checks of this canary so far.")
    mirror_start_time: str | None = field("When mirroring to the canary began (rollout.canary.mirrorPercent).",
                                          json_schema_extra={"format": "date-time"})
    mirror_end_time: str | None = field("When mirroring to the canary ended and step 1 began.",
                                        json_schema_extra={"format": "date-time"})


class LineageFeature(ApiModel):
    name: str = required("FeatureView name.")
    schema_hash: str | None = field("Its status.schemaHash when the run started.")
    materialized_until: str | None = field("Its status.materializedUntil (watermark) when the run started.",
                                           json_schema_extra={"format": "date-time"})


class RunLineage(ApiModel):
    training_job: str | None = field("The TrainingJob (model.fromTrainingJob).")
    run: int | None = field("The run whose artifact is served.")
    artifact_uri: str | None = field("The model served: the run's artifact, or model.uri.")
    image: str | None = field("The training image the run ran (digest when its pod reported one).")
    features: list[LineageFeature] | None = field("The FeatureViews the run read, as they were when it started.")


class Lineage(RunLineage):
    canary: RunLineage | None = field("While a canary runs: the same for the model the canary serves.")


class ModelDeploymentStatus(CommonStatus):
    model_uri: str | None = field("The resolved model URI being served.")
    training_job_run: int | None = field("With fromTrainingJob: the run whose artifact is served.")
    replicas: int | None = field("Pods of the Deployment.")
    ready_replicas: int | None = field("Ready pods of the Deployment.")
    desired_replicas: int | None = field("Replicas wanted: spec.replicas, or the HPA's current decision.")
    replica_summary: str | None = field("ready/desired, for kubectl get.")
    url: str | None = field("In-cluster URL of the model server.")
    rollout: RolloutStatus | None = field("The canary: present while one runs and after it ends.")
    lineage: Lineage | None = field("What the stable Deployment serves and what it was made from (TrainingJob, run, "
                                    "artifact, the FeatureViews' schema hashes and watermarks); canary: the same "
                                    "for the canary's model while one runs.")


class ModelDeployment(ApiModel):
    """A model server on CPU or GPU nodes: a Deployment (autoscaled by an HPA when autoscaling is set), a
    Service and a PodDisruptionBudget, with the model fetched into /mnt/models at start."""

    spec: ModelDeploymentSpec = Field(..., description="Desired state of the ModelDeployment.")
