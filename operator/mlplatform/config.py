"""Operator configuration: a YAML file validated at start; every default is a real public image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from .api.common import DNS_LABEL_PATTERN, QUANTITY_PATTERN, ApiModel, field

FEAST_VERSION = "0.67.0"


class MultiNodeConfig(ApiModel):
    leader_command: list[str] = Field(..., description="Command of a group's leader (it serves); {args} is the "
                                      "shell-quoted server arguments, {nodes} the group size.")
    worker_command: list[str] = Field(..., description="Command of a group's workers; $(LWS_LEADER_ADDRESS) is "
                                      "the leader's address (set by the LeaderWorkerSet controller).")


class ServerMetricsConfig(ApiModel):
    """What a model server exposes to Prometheus: where, and the series each signal is read from. A series is a
    PromQL selector (a name, optionally with label matchers); None: the server has no such metric."""

    port: int | None = field("Port of the metrics endpoint; None: the server's port.", ge=1, le=65535)
    path: str = Field("/metrics", description="Path of the metrics endpoint.", pattern=r"^/")
    queue: str | None = field("Gauge: requests waiting (targets.queueDepth).")
    kv_cache: str | None = field("Gauge: KV cache in use (targets.kvCacheUtilization).")
    kv_cache_scale: float = Field(100.0, description="Factor from the KV-cache gauge to percent (100 for a 0-1 "
                                  "fraction).", gt=0)
    in_flight: str | None = field("Gauge: requests being served (targets.concurrency).")
    requests: str | None = field("Counter: requests answered (targets.requestsPerSecond, the error rate's "
                                 "denominator).")
    errors: str | None = field("Counter: requests answered with a server error (5xx or failure).")
    latency_histogram: str | None = field("Histogram (without _bucket): request latency, for the p99 of "
                                          "rollout.canary.analysis.maxLatencyMs.")
    latency_unit_seconds: float = Field(1.0, description="Seconds per unit of the latency histogram's buckets.",
                                        gt=0)


class RuntimePresetConfig(ApiModel):
    image: str = Field(..., description="Server image.")
    gpu_image: str | None = field("Image used instead when the deployment asks for a GPU.")
    command: list[str] | None = field("Entrypoint; the image's when absent.")
    args: list[str] = Field(default_factory=list, description="Arguments; {name}, {port} and {model_dir} are filled in.")
    port: int = Field(8080, description="HTTP port.", ge=1, le=65535)
    grpc_port: int | None = field("gRPC port, when the server speaks gRPC.", ge=1, le=65535)
    readiness_path: str | None = field("HTTP readiness path; {name} is filled in. None means a TCP probe.")
    startup_timeout_seconds: int | None = field(
        "Default runtime.startupTimeoutSeconds: a startupProbe gives the server this long to load the model. "
        "None: no startupProbe unless the spec asks.", ge=10, le=86400)
    parallelism_args: list[str] | None = field(
        "Server arguments for runtime.parallelism; {tensor} and {pipeline} are filled in. None: the preset "
        "refuses runtime.parallelism.")
    formats: list[str] | None = field("model.format values this preset serves. None: any.")
    multi_node: MultiNodeConfig | None = field(
        "How a replica spans nodes (nodesPerReplica > 1, a LeaderWorkerSet group). None: the preset refuses "
        "nodesPerReplica > 1.")
    metrics: ServerMetricsConfig | None = field(
        "The server's Prometheus metrics. None: not scraped, and no Prometheus target or analysis is possible.")
    liveness_path: str | None = field("HTTP liveness path; None: the readiness path ({name} filled in), or TCP.")
    drain_seconds: int = Field(15, description="preStop sleep: how long a terminating pod keeps serving while "
                               "endpoints and the gateway stop sending it requests.", ge=0, le=3600)
    termination_grace_seconds: int = Field(
        60, description="terminationGracePeriodSeconds: drainSeconds plus the longest request the server finishes "
        "after SIGTERM.", ge=1, le=86400)


def _default_presets() -> dict[str, RuntimePresetConfig]:
    return {
        "triton": RuntimePresetConfig(
            image="nvcr.io/nvidia/tritonserver:25.01-py3",
            command=["tritonserver"],
            args=["--model-repository={model_dir}", "--http-port={port}", "--grpc-port=8001"],
            port=8000, grpc_port=8001, readiness_path="/v2/health/ready",
            # TensorRT plans and Python backends are "custom". Triton's tensor parallelism lives in the model
            # repository (TensorRT-LLM engines), not in server arguments: no parallelismArgs.
            formats=["onnx", "tensorflow", "pytorch", "custom"], startup_timeout_seconds=1800,
            # Triton docs, user_guide/metrics.md: per-model counters on :8002/metrics; no latency histogram by default.
            metrics=ServerMetricsConfig(
                port=8002, queue="nv_inference_pending_request_count",
                requests='{__name__=~"nv_inference_request_success|nv_inference_request_failure"}',
                errors="nv_inference_request_failure"),
            liveness_path="/v2/health/live", drain_seconds=20, termination_grace_seconds=120,
        ),
        "vllm": RuntimePresetConfig(
            image="vllm/vllm-openai:v0.11.0",
            args=["--model={model_dir}", "--served-model-name={name}", "--port={port}"],
            port=8000, readiness_path="/health",
            formats=["huggingface"], startup_timeout_seconds=1800,
            parallelism_args=["--tensor-parallel-size={tensor}", "--pipeline-parallel-size={pipeline}"],
            # vLLM's /metrics (docs: "Production metrics"), plus the FastAPI instrumentator's http_* series.
            metrics=ServerMetricsConfig(
                queue="vllm:num_requests_waiting", kv_cache="vllm:kv_cache_usage_perc", kv_cache_scale=100.0,
                in_flight="vllm:num_requests_running", requests="http_requests_total",
                errors='http_requests_total{status="5xx"}', latency_histogram="vllm:e2e_request_latency_seconds"),
            liveness_path="/health", drain_seconds=30, termination_grace_seconds=300,
            # vLLM across nodes: a Ray cluster per group, the head on the leader (vLLM docs, LWS examples).
            multi_node=MultiNodeConfig(
                leader_command=["/bin/sh", "-c", "ray start --head --port=6379 && exec python3 -m "
                                "vllm.entrypoints.openai.api_server {args} --distributed-executor-backend=ray"],
                worker_command=["/bin/sh", "-c", "exec ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"],
            ),
        ),
        "torchserve": RuntimePresetConfig(
            image="pytorch/torchserve:0.12.0-cpu", gpu_image="pytorch/torchserve:0.12.0-gpu",
            command=["torchserve"],
            args=["--start", "--foreground", "--model-store={model_dir}", "--models=all", "--disable-token-auth"],
            port=8080, grpc_port=7070, readiness_path="/ping",
            formats=["pytorch"], startup_timeout_seconds=600,
            # TorchServe's metrics API (metrics_mode=prometheus) on :8082; its latencies are counters, not histograms.
            metrics=ServerMetricsConfig(port=8082, requests="ts_inference_requests_total", errors="Requests5XX"),
            liveness_path="/ping", drain_seconds=15, termination_grace_seconds=120,
        ),
        "sklearn": RuntimePresetConfig(
            image="kserve/sklearnserver:v0.15.2",
            args=["--model_name={name}", "--model_dir={model_dir}", "--http_port={port}"],
            port=8080, grpc_port=8081, readiness_path="/v1/models/{name}",
            formats=["sklearn"], startup_timeout_seconds=300,
            # KServe's model server: latency histograms on its HTTP port; no request or error counter (serve
            # sklearn with the mlserver preset for an error rate).
            metrics=ServerMetricsConfig(latency_histogram="request_predict_seconds"),
            drain_seconds=10, termination_grace_seconds=60,
        ),
        "xgboost": RuntimePresetConfig(
            image="kserve/xgbserver:v0.15.2",
            args=["--model_name={name}", "--model_dir={model_dir}", "--http_port={port}"],
            port=8080, grpc_port=8081, readiness_path="/v1/models/{name}",
            formats=["xgboost"], startup_timeout_seconds=300,
            # KServe's model server: latency histograms on its HTTP port; no request or error counter (serve
            # xgboost with the mlserver preset for an error rate).
            metrics=ServerMetricsConfig(latency_histogram="request_predict_seconds"),
            drain_seconds=10, termination_grace_seconds=60,
        ),
        "mlserver": RuntimePresetConfig(
            image="seldonio/mlserver:1.7.1",
            command=["mlserver", "start", "{model_dir}"],
            port=8080, grpc_port=8081, readiness_path="/v2/health/ready",
            formats=["sklearn", "xgboost", "huggingface", "custom"], startup_timeout_seconds=600,
            # MLServer docs, user-guide/metrics: :8082/metrics, REST series prefixed rest_server (starlette_exporter).
            metrics=ServerMetricsConfig(
                port=8082, in_flight="rest_server_requests_in_progress", requests="rest_server_requests_total",
                errors='rest_server_requests_total{status_code=~"5.."}',
                latency_histogram="rest_server_request_duration_seconds"),
            liveness_path="/v2/health/live", drain_seconds=10, termination_grace_seconds=60,
        ),
    }


class StorageInitializerConfig(ApiModel):
    image: str = Field("kserve/storage-initializer:v0.15.2", description="Image that downloads the model.")
    cpu: str = Field("100m", description="CPU request of the init container.")
    memory: str = Field("100Mi", description="Memory request of the init container (and of a model-cache fill Job): "
                        "small, since the scheduler reserves max(init, app) per pod (KServe's value).")
    memory_limit: str = Field("1Gi", description="Memory limit of the init container (and of a model-cache fill Job).")


class FeastConfig(ApiModel):
    image: str = Field(f"quay.io/feastdev/feature-server:{FEAST_VERSION}", description="Feast image (CLI and feast serve).")
    port: int = Field(6566, description="Port of feast serve.", ge=1, le=65535)
    registry: dict[str, Any] = Field(
        default_factory=lambda: {"registry_type": "sql", "path": "postgresql+psycopg://feast@feast-registry.feast-system.svc:5432/feast",
                                 "cache_ttl_seconds": 60},
        description="feature_store.yaml `registry` block; {project}, {namespace} and {name} are filled in.",
    )
    online_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "redis", "connection_string": "feast-redis.feast-system.svc:6379"},
        description="feature_store.yaml `online_store` block.",
    )
    offline_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "dask"}, description="feature_store.yaml `offline_store` block."
    )
    entity_key_serialization_version: int = Field(3, description="Feast entity key serialization version.")
    default_schedule: str = Field("0 * * * *", description="Materialization schedule when the spec has none.")
    env_from: list[dict[str, Any]] = Field(
        default_factory=list, description="envFrom of every Feast pod (store credentials)."
    )


class MetricNamesConfig(ApiModel):
    """Names of the custom metrics the HPA reads (engine hpa): the chart's prometheus-adapter rules make them."""

    gpu_utilization: str = Field("DCGM_FI_DEV_GPU_UTIL", description="Per-pod metric for targets.gpuUtilization.")
    requests_per_second: str = Field("http_requests_per_second", description="Per-pod metric for targets.requestsPerSecond.")
    queue_depth: str = Field("mlplatform_queue_depth", description="Per-pod metric for targets.queueDepth.")
    kv_cache_utilization: str = Field("mlplatform_kv_cache_utilization",
                                      description="Per-pod metric for targets.kvCacheUtilization (percent).")
    concurrency: str = Field("mlplatform_concurrency", description="Per-pod metric for targets.concurrency.")


class PrometheusConfig(ApiModel):
    url: str | None = field(
        "The Prometheus the operator (rollout.canary.analysis) and KEDA (engine keda triggers) query, e.g. "
        "http://prometheus.monitoring.svc:9090. None: Prometheus targets under keda and analysis are refused.",
        pattern=r"^https?://")
    pod_monitors: bool = Field(
        False, description="true: each model gets a PodMonitor (monitoring.coreos.com/v1; the Prometheus Operator "
        "must be installed); false: its pods carry prometheus.io/scrape, port and path annotations.")
    dcgm_gpu_utilization: str = Field(
        "DCGM_FI_DEV_GPU_UTIL", description="dcgm-exporter's GPU utilization gauge (percent), labelled with the "
        "namespace and pod the GPU is assigned to.")
    wake_query: str = Field(
        'sum(envoy_cluster_upstream_rq_pending_active{envoy_cluster_name=~"httproute/{namespace}/{route}/rule/.*"})',
        description="PromQL of the demand that exists while no replica runs (requests pending at the gateway for "
        "the model's route): wakes a model at zero (minReplicas 0). {namespace} and {route} are filled in.")
    instance_label: str = Field("app_kubernetes_io_instance", description="Series label of the pod label "
                                "app.kubernetes.io/instance (the model's name), as the scrape configuration maps it.")
    version_label: str = Field("mlplatform_dev_version", description="Series label of the pod label "
                               "mlplatform.dev/version (stable or canary), as the scrape configuration maps it.")
    query_timeout_seconds: float = Field(5.0, description="Timeout of one query of the operator.", gt=0, le=60)


class DefaultsConfig(ApiModel):
    training_ttl_seconds_after_finished: int = Field(604800, description="ttlSecondsAfterFinished when the spec has none.", ge=0)
    materialization_ttl_seconds_after_finished: int = Field(86400, description="TTL of finished materialization Jobs.", ge=0)
    scale_down_stabilization_seconds: int = Field(300, description="HPA scale-down stabilization when the spec has none.", ge=0)
    keda_polling_interval_seconds: int = Field(15, description="engine keda: how often KEDA reads the triggers "
                                               "(its pollingInterval; also how soon a model at zero wakes).", ge=1)
    canary_progress_deadline_seconds: int = Field(
        600, description="A canary Deployment not Ready within this many seconds (its progressDeadlineSeconds) "
                         "is aborted.", ge=1)
    model_cache_previous_claims: int = Field(
        1, description="model.cache: claims of earlier model URIs a ModelDeployment keeps once a rollout to a new "
                       "one completed (for a rollback without a new download); older ones are released (deleted by "
                       "the garbage collector when no other ModelDeployment uses them).", ge=0)
    cluster_domain: str = Field("cluster.local", description="Cluster DNS domain used in URLs.")
    gpu_shared_memory: str = Field("16Gi", description="/dev/shm size of GPU pods whose spec sets no "
                                   "resources.sharedMemory; \"0\" gives them none.",
                                   pattern=QUANTITY_PATTERN)


class OperatorConfig(ApiModel):
    runtimes: dict[str, RuntimePresetConfig] = Field(default_factory=_default_presets, description="Runtime presets by name.")
    storage_initializer: StorageInitializerConfig = Field(default_factory=StorageInitializerConfig, description="Model fetcher.")
    feast: FeastConfig = Field(default_factory=FeastConfig, description="Feast image and stores.")
    gpu_types: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "nvidia-h100-80gb": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "nvidia-h200-141gb": {"nvidia.com/gpu.product": "NVIDIA-H200"},
            "nvidia-a100-80gb": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "nvidia-a100-40gb": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
            "nvidia-l40s": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
            "nvidia-l4": {"nvidia.com/gpu.product": "NVIDIA-L4"},
            "nvidia-a10g": {"nvidia.com/gpu.product": "NVIDIA-A10G"},
            "nvidia-t4": {"nvidia.com/gpu.product": "Tesla-T4"},
        },
        description="GPU type name (resources.gpu.type) -> node labels its pods select.",
    )
    metrics: MetricNamesConfig = Field(default_factory=MetricNamesConfig, description="Custom metric names.")
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig,
                                         description="The Prometheus that scrapes model pods, and how.")
    pod_annotation_prefixes: list[str] = Field(
        default_factory=list,
        description="Annotations of a custom resource whose key starts with one of these prefixes are copied to "
                    "its pods (e.g. sidecar.istio.io/); none by default.",
    )
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig, description="Defaults for unset spec fields.")

    def preset(self, name: str) -> RuntimePresetConfig | None:
        return self.runtimes.get(name)


class ConfigError(ValueError):
    pass


def load_config(path: str | Path | None) -> OperatorConfig:
    if path is None:
        return OperatorConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        config = OperatorConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: " + ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from exc
    bad = [name for name in config.gpu_types if not re.match(DNS_LABEL_PATTERN, name)]
    if bad:
        raise ConfigError(f"{path}: gpuTypes: names must be DNS labels: {', '.join(bad)}")
    return config
