"""The v1alpha1 API: one module per kind, shared blocks in common, and the kinds' CRD facts here."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from .batchprediction import BatchPrediction, BatchPredictionStatus
from .common import API_VERSION, GROUP, VERSION, ApiModel, CommonStatus
from .featurestore import FeatureStore, FeatureStoreStatus
from .featureview import FeatureView, FeatureViewStatus
from .modeldeployment import ModelDeployment, ModelDeploymentStatus
from .trainingjob import TrainingJob, TrainingJobStatus

# Names derive child names (<name>-materialize for a CronJob, <name>-<run> for a Job, <name> for a
# Service), so they must be DNS-1035 labels short enough to leave room for those suffixes.
MAX_NAME_LENGTH = 40
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CATEGORIES = ["ml", "mlplatform"]


def _condition(type_: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].status'


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_name: str
    model: type[ApiModel]
    status_model: type[CommonStatus]
    printer_columns: list[dict] = dc_field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind(
            "FeatureStore", "featurestores", "fs", FeatureStore, FeatureStoreStatus,
            [
                {"name": "Ready", "type": "string", "jsonPath": _condition("Ready")},
                {"name": "Offline", "type": "string", "jsonPath": ".spec.offlineStore.type"},
                {"name": "Online", "type": "string", "jsonPath": ".spec.onlineStore.type"},
                {"name": "Registry", "type": "string", "jsonPath": ".spec.registry.type"},
                AGE,
            ],
        ),
        Kind(
            "FeatureView", "featureviews", "fv", FeatureView, FeatureViewStatus,
            [
                {"name": "Ready", "type": "string", "jsonPath": _condition("Ready")},
                {"name": "Fresh", "type": "string", "jsonPath": _condition("Fresh")},
                {"name": "Last-Materialized", "type": "date", "jsonPath": ".status.lastMaterializedAt"},
                AGE,
            ],
        ),
        Kind(
            "ModelDeployment", "modeldeployments", "md", ModelDeployment, ModelDeploymentStatus,
            [
                {"name": "Ready", "type": "string", "jsonPath": _condition("Ready")},
                {"name": "Replicas", "type": "string", "jsonPath": ".status.replicaSummary",
                 "description": "ready/desired replicas"},
                {"name": "GPU", "type": "integer", "jsonPath": ".spec.resources.gpu.count"},
                {"name": "Model", "type": "string", "jsonPath": ".status.modelUri"},
                {"name": "Serving-Run", "type": "integer", "jsonPath": ".status.lineage.run",
                 "description": "the TrainingJob run whose artifact the stable Deployment serves"},
                AGE,
            ],
        ),
        Kind(
            "TrainingJob", "trainingjobs", "tj", TrainingJob, TrainingJobStatus,
            [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Workers", "type": "integer", "jsonPath": ".spec.workers"},
                {"name": "GPU", "type": "integer", "jsonPath": ".spec.resources.gpu.count"},
                {"name": "Run", "type": "integer", "jsonPath": ".status.run"},
                {"name": "Queue", "type": "string", "jsonPath": ".spec.queueName",
                 "description": "Kueue LocalQueue the runs wait in"},
                AGE,
            ],
        ),
        Kind(
            "BatchPrediction", "batchpredictions", "bp", BatchPrediction, BatchPredictionStatus,
            [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Shards", "type": "string", "jsonPath": ".status.shardSummary",
                 "description": "succeeded/total shards of the current run"},
                {"name": "Rows", "type": "integer", "jsonPath": ".status.rowsScored"},
                {"name": "Model", "type": "string", "jsonPath": ".status.modelUri"},
                AGE,
            ],
        ),
    )
}

__all__ = [
    "API_VERSION", "CATEGORIES", "GROUP", "KINDS", "Kind", "MAX_NAME_LENGTH", "NAME_PATTERN", "VERSION",
    "BatchPrediction", "FeatureStore", "FeatureView", "ModelDeployment", "TrainingJob",
    "BatchPredictionStatus", "FeatureStoreStatus", "FeatureViewStatus", "ModelDeploymentStatus", "TrainingJobStatus",
]
