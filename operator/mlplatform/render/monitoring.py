"""How Prometheus finds a model's pods: the prometheus.io annotations on its pods (the convention of the
Prometheus Helm chart's kubernetes-pods job), or a PodMonitor child when the operator configuration says the
Prometheus Operator is installed (prometheus.podMonitors). Which one is a configuration switch, not a discovery:
`mlplatform render` shows exactly what the operator applies."""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec
from ..config import RuntimePresetConfig, ServerMetricsConfig
from ..labels import INSTANCE_LABEL, NAME_LABEL, VERSION_LABEL
from .common import Owner

PODMONITOR_API_VERSION = "monitoring.coreos.com/v1"
PODMONITOR_KIND = "PodMonitor"
METRICS_PORT_NAME = "metrics"


def server_metrics(spec: ModelDeploymentSpec, preset: RuntimePresetConfig) -> ServerMetricsConfig | None:
    """The preset's metrics endpoint; a custom server declares none (it can be scraped by the user's own config)."""
    return None if spec.runtime.preset == "custom" else preset.metrics


def scrape_annotations(metrics: ServerMetricsConfig, server_port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics.port or server_port),
            "prometheus.io/path": metrics.path}


def pod_monitor(owner: Owner, metadata: dict[str, Any], metrics: ServerMetricsConfig,
                server_port: tuple[str, int]) -> dict[str, Any]:
    """Every pod of the model (stable and canary), its version and name copied onto the series."""
    port_name = METRICS_PORT_NAME if metrics.port and metrics.port != server_port[1] else server_port[0]
    return {
        "apiVersion": PODMONITOR_API_VERSION, "kind": PODMONITOR_KIND, "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {NAME_LABEL: owner.kind.lower(), INSTANCE_LABEL: owner.name}},
            "podTargetLabels": [INSTANCE_LABEL, VERSION_LABEL],
            "podMetricsEndpoints": [{"port": port_name, "path": metrics.path}],
        },
    }
