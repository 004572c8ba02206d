"""PromQL of a ModelDeployment's signals, rendered from its preset's metric names (the operator configuration):
the autoscaling triggers (one query per target, the model's total, divided per replica by the autoscaler) and the
canary analysis (the canary's error rate and p99 latency). Pure string building."""

from __future__ import annotations

import re

from ..config import OperatorConfig, ServerMetricsConfig
from .common import RenderError

VERSION_STABLE, VERSION_CANARY = "stable", "canary"
RATE_WINDOW = "1m"
# Targets whose query comes from the preset's metrics: target field -> (ServerMetricsConfig field, what it is).
PRESET_SIGNALS = {
    "queue_depth": ("queue", "queue gauge"),
    "kv_cache_utilization": ("kv_cache", "KV-cache gauge"),
    "concurrency": ("in_flight", "in-flight requests gauge"),
    "requests_per_second": ("requests", "request counter"),
}
CAMEL = {"queue_depth": "queueDepth", "kv_cache_utilization": "kvCacheUtilization", "concurrency": "concurrency",
         "requests_per_second": "requestsPerSecond", "gpu_utilization": "gpuUtilization"}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def with_matchers(selector: str, matchers: dict[str, str]) -> str:
    """`name`, `name{a="b"}` or `{__name__=~"..."}` with the equality matchers added."""
    extra = ",".join(f"{k}={_quote(v)}" for k, v in matchers.items())
    if not extra:
        return selector
    if selector.endswith("}"):
        head, _, inner = selector[:-1].partition("{")
        inner = inner.strip()
        return f"{head}{{{inner + ',' if inner else ''}{extra}}}"
    return f"{selector}{{{extra}}}"


def model_matchers(config: OperatorConfig, namespace: str, name: str, version: str | None = None) -> dict[str, str]:
    prom = config.prometheus
    out = {"namespace": namespace, prom.instance_label: name}
    if version:
        out[prom.version_label] = version
    return out


def _server_metrics(config: OperatorConfig, preset: str) -> ServerMetricsConfig | None:
    runtime = config.preset(preset)
    return runtime.metrics if runtime else None


def _need(metrics: ServerMetricsConfig | None, attr: str, preset: str, field_path: str, what: str) -> str:
    value = getattr(metrics, attr) if metrics else None
    if not value:
        raise RenderError(field_path, f"preset {preset!r} has no {what} in the operator configuration "
                                      f"(runtimes.{preset}.metrics.{re.sub(r'_([a-z])', lambda m: m[1].upper(), attr)})")
    return value


def target_query(config: OperatorConfig, preset: str, target: str, namespace: str, name: str) -> str:
    """The model's total of a target's signal over all its pods (stable and canary): the autoscaler divides it
    by the per-replica target (KEDA's AverageValue, like the HPA's)."""
    field_path = f"spec.autoscaling.targets.{CAMEL[target]}"
    if target == "gpu_utilization":
        # dcgm-exporter labels each GPU with the pod it is assigned to: a pod's utilization is its GPUs' average.
        pods = f"{re.escape(name)}-[a-z0-9]+(-[a-z0-9]+)?"
        series = f'{config.prometheus.dcgm_gpu_utilization}{{namespace={_quote(namespace)},pod=~{_quote(pods)}}}'
        return f"sum(avg by (pod) ({series}))"
    attr, what = PRESET_SIGNALS[target]
    selector = with_matchers(_need(_server_metrics(config, preset), attr, preset, field_path, what),
                             model_matchers(config, namespace, name))
    if target == "requests_per_second":
        return f"sum(rate({selector}[{RATE_WINDOW}]))"
    if target == "kv_cache_utilization":
        return f"sum({selector}) * {_server_metrics(config, preset).kv_cache_scale:g}"
    return f"sum({selector})"


def wake_query(config: OperatorConfig, namespace: str, route: str) -> str:
    """The demand that exists while no replica runs (minReplicas 0): requests pending at the gateway."""
    return config.prometheus.wake_query.replace("{namespace}", namespace).replace("{route}", route)


def error_rate_query(config: OperatorConfig, preset: str, namespace: str, name: str, window_seconds: int) -> str:
    """The canary's fraction of server errors over the window; no requests: no data (0/0)."""
    metrics = _server_metrics(config, preset)
    field_path = "spec.rollout.canary.analysis.maxErrorRate"
    matchers = model_matchers(config, namespace, name, VERSION_CANARY)
    errors = with_matchers(_need(metrics, "errors", preset, field_path, "error counter"), matchers)
    requests = with_matchers(_need(metrics, "requests", preset, field_path, "request counter"), matchers)
    window = f"{window_seconds}s"
    return f"sum(rate({errors}[{window}])) / sum(rate({requests}[{window}]))"


def latency_p99_ms_query(config: OperatorConfig, preset: str, namespace: str, name: str, window_seconds: int) -> str:
    """The canary's p99 latency over the window, in milliseconds."""
    metrics = _server_metrics(config, preset)
    histogram = _need(metrics, "latency_histogram", preset, "spec.rollout.canary.analysis.maxLatencyMs",
                      "latency histogram")
    name_part, brace, rest = histogram.partition("{")
    buckets = with_matchers(f"{name_part}_bucket{brace}{rest}", model_matchers(config, namespace, name, VERSION_CANARY))
    scale = metrics.latency_unit_seconds * 1000
    return f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{window_seconds}s]))) * {scale:g}"
