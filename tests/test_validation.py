"""Bad input is refused by the models (the CLI) naming the field, and the CRD carries the same rule."""

from __future__ import annotations

import json

import pytest

from mlplatform.api import KINDS
from mlplatform.api.validation import validate_document
from mlplatform.crds import crd_for

from .conftest import DELETE, all_example_documents, load_example, set_path

MD = "modeldeployment-gpu-vllm.yaml"
MD_CPU = "modeldeployment-sklearn-cpu.yaml"
TJ = "trainingjob-distributed-gpu.yaml"
FV = "featureview-driver-stats.yaml"

# (example, field to set, value, path the problem must name, text the problem must contain,
#  what the CRD must carry for the API server to refuse it too)
CASES = [
    (MD_CPU, "spec.replicas", -1, "spec.replicas", ">= 0", ("spec.replicas", "minimum", 0)),
    (MD, "spec.autoscaling.minReplicas", 9, "spec.autoscaling.minReplicas", "<= autoscaling.maxReplicas",
     ("spec.autoscaling", "cel", "self.minReplicas <= self.maxReplicas")),
    (MD, "spec.autoscaling.minReplicas", -1, "spec.autoscaling.minReplicas", ">= 0", ("spec.autoscaling.minReplicas", "minimum", 0)),
    (MD, "spec.autoscaling.minReplicas", 0, "spec.autoscaling.minReplicas", "needs autoscaling.engine: keda",
     ("spec.autoscaling", "cel", "self.engine == 'keda'")),
    (MD, "spec.autoscaling.targets", {}, "spec.autoscaling.targets", "at least one",
     ("spec.autoscaling.targets", "minProperties", 1)),
    (MD, "spec.model.fromTrainingJob", "fraud-train", "spec.model", "exactly one of model.uri or model.fromTrainingJob",
     ("spec.model", "cel", "has(self.uri) != has(self.fromTrainingJob)")),
    (MD, "spec.model.uri", DELETE, "spec.model", "exactly one of model.uri or model.fromTrainingJob",
     ("spec.model", "cel", "has(self.uri) != has(self.fromTrainingJob)")),
    (MD, "spec.model.uri", "http://models/x", "spec.model.uri", "s3://", ("spec.model.uri", "pattern", "s3|gs|hf|oci")),
    (MD, "spec.model.uri", "pvc://Bad_Claim/x", "spec.model.uri", "pvc://", ("spec.model.uri", "pattern", "pvc://")),
    (MD, "spec.resources.cpu", "4 cores", "spec.resources.cpu", "quantity", ("spec.resources.cpu", "pattern", "KMGTPE")),
    (MD, "spec.resources.memory", "-64Gi", "spec.resources.memory", "quantity", ("spec.resources.memory", "pattern", "KMGTPE")),
    (MD, "spec.resources.memory", -5, "spec.resources.memory", "quantity", ("spec.resources.memory", "minimum", 0)),
    (MD, "spec.resources.gpu.count", 0, "spec.resources.gpu.count", ">= 1", ("spec.resources.gpu.count", "minimum", 1)),
    (MD, "spec.resources.gpu.mig", "big", "spec.resources.gpu.mig", "MIG profile", ("spec.resources.gpu.mig", "pattern", "gb")),
    (MD, "spec.runtime.preset", "tensorrt", "spec.runtime.preset", "'vllm'", ("spec.runtime.preset", "enum", "vllm")),
    (MD, "spec.runtime.protocol", "tcp", "spec.runtime.protocol", "'grpc'", ("spec.runtime.protocol", "enum", "grpc")),
    (MD, "spec.runtime.preset", "custom", "spec.runtime.image", "required when runtime.preset is custom",
     ("spec.runtime", "cel", "self.preset != 'custom' || has(self.image)")),
    (MD, "spec.model.format", "pickle", "spec.model.format", "'onnx'", ("spec.model.format", "enum", "onnx")),
    (MD, "spec.runtime", DELETE, "spec.runtime", "required field is missing", ("spec", "required", "runtime")),
    (MD, "spec.autoscaling.targets.cpuUtilization", 150, "spec.autoscaling.targets.cpuUtilization", "<= 100",
     ("spec.autoscaling.targets.cpuUtilization", "maximum", 100)),
    (MD, "spec.rollout.maxSurge", "lots", "spec.rollout.maxSurge", "percentage", ("spec.rollout.maxSurge", "pattern", "%")),
    (MD, "spec.replicaCount", 3, "spec.replicaCount", "unknown field", None),
    (MD, "spec.features", ["Driver_Stats"], "spec.features[0]", "DNS label", ("spec.features.items", "pattern", "a-z0-9")),
    (MD_CPU, "spec.resources.gpu", None, None, None, None),  # explicit null is the same as absent
    (MD_CPU, "spec.disruptionBudget.maxUnavailable", 1, "spec.disruptionBudget", "exactly one",
     ("spec.disruptionBudget", "cel", "has(self.minAvailable) != has(self.maxUnavailable)")),
    (MD, "spec.resources.gpu", DELETE, "spec.autoscaling.targets.gpuUtilization", "needs resources.gpu",
     ("spec", "cel", "gpuUtilization")),
    (MD, "spec.runtime.env.0.valueFrom", {"fieldRef": {"fieldPath": "metadata.name"}}, "spec.runtime.env[0].valueFrom.fieldRef",
     "unknown field", None),
    (MD, "spec.model.promotion", {"metrics": [{"name": "auc", "min": 0.9}]}, "spec.model.promotion",
     "needs model.fromTrainingJob", ("spec.model", "cel", "!has(self.promotion) || has(self.fromTrainingJob)")),
    (MD, "spec.model.promotion", {"metrics": []}, "spec.model.promotion.metrics", "at least 1",
     ("spec.model.promotion.metrics", "minItems", 1)),
    (MD, "spec.model.promotion", {"metrics": [{"name": "auc"}]}, "spec.model.promotion.metrics[0]", "needs min or max",
     ("spec.model.promotion.metrics.items", "cel", "has(self.min) || has(self.max)")),
    (MD, "spec.rollout.canary", {"steps": [50, 10]}, "spec.rollout.canary.steps", "strictly increasing",
     ("spec.rollout.canary", "cel", "isSorted")),
    (MD, "spec.rollout.canary", {"steps": [10, 100]}, "spec.rollout.canary.steps", "between 1 and 99",
     ("spec.rollout.canary.steps.items", "maximum", 99)),
    (MD, "spec.rollout.canary", {"steps": [10], "stepSeconds": -1}, "spec.rollout.canary.stepSeconds", ">= 0",
     ("spec.rollout.canary.stepSeconds", "minimum", 0)),
    (MD, "spec.gateway", {"parentRefs": []}, "spec.gateway.parentRefs", "at least 1",
     ("spec.gateway.parentRefs", "minItems", 1)),
    (MD, "spec.gateway", {"parentRefs": [{"name": "inference"}], "path": "api"}, "spec.gateway.path", "matching ^/",
     ("spec.gateway.path", "pattern", "^/")),
    (TJ, "spec.workers", 0, "spec.workers", ">= 1", ("spec.workers", "minimum", 1)),
    (TJ, "spec.backoffLimit", -1, "spec.backoffLimit", ">= 0", ("spec.backoffLimit", "minimum", 0)),
    (TJ, "spec.image", DELETE, "spec.image", "required field is missing", ("spec", "required", "image")),
    (TJ, "spec.distribution.framework", "horovod", "spec.distribution.framework", "'pytorch'",
     ("spec.distribution.framework", "enum", "pytorch")),
    (TJ, "spec.output.uri", "ftp://x", "spec.output.uri", "s3://", ("spec.output.uri", "pattern", "s3|gs|oci")),
    (TJ, "spec.checkpoint.mountPath", "relative", "spec.checkpoint.mountPath", "absolute path",
     ("spec.checkpoint.mountPath", "pattern", "^/")),
    (TJ, "spec.queueName", "Team A", "spec.queueName", "DNS label", ("spec.queueName", "pattern", "a-z0-9")),
    (TJ, "spec.failurePolicy", {"nonRetryableExitCodes": [0]}, "spec.failurePolicy.nonRetryableExitCodes[0]", ">= 1",
     ("spec.failurePolicy.nonRetryableExitCodes.items", "minimum", 1)),
    (TJ, "spec.failurePolicy", {"maxRestarts": 101}, "spec.failurePolicy.maxRestarts", "<= 100",
     ("spec.failurePolicy.maxRestarts", "maximum", 100)),
    (TJ, "spec.failurePolicy", {"nonRetryableExitCodes": [3, 3]}, "spec.failurePolicy.nonRetryableExitCodes",
     "each code once", ("spec.failurePolicy.nonRetryableExitCodes", "x-kubernetes-list-type", "set")),
    ("trainingjob-cpu.yaml", "spec.envFrom.0", {"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}, "spec.envFrom[0]",
     "exactly one of secretRef or configMapRef", ("spec.envFrom.items", "cel", "has(self.secretRef) != has(self.configMapRef)")),
    (FV, "spec.entities", [], "spec.entities", "found 0 items; allowed: at least 1 items", ("spec.entities", "minItems", 1)),
    (FV, "spec.features", [], "spec.features", "at least 1", ("spec.features", "minItems", 1)),
    (FV, "spec.entities.0.valueType", "UUID", "spec.entities[0].valueType", "'INT64'",
     ("spec.entities.items.valueType", "enum", "INT64")),
    (FV, "spec.features.0.dtype", "DECIMAL", "spec.features[0].dtype", "'FLOAT32'", ("spec.features.items.dtype", "enum", "FLOAT32")),
    (FV, "spec.features.0.name", "conv-rate", "spec.features[0].name", "identifier", ("spec.features.items.name", "pattern", "A-Za-z_")),
    (FV, "spec.ttl", "1 day", "spec.ttl", "duration", ("spec.ttl", "pattern", "s|m|h|d")),
    (FV, "spec.freshness.maxStaleness", "soon", "spec.freshness.maxStaleness", "duration",
     ("spec.freshness.maxStaleness", "pattern", "s|m|h|d")),
    (FV, "spec.materialization.schedule", "every 30 minutes", "spec.materialization.schedule", "cron",
     ("spec.materialization.schedule", "pattern", "@(yearly")),
    (FV, "spec.materialization.schedule", "*/30 * * *", "spec.materialization.schedule", "cron",
     ("spec.materialization.schedule", "pattern", "@(yearly")),
    (FV, "spec.source.path", "relative/file.parquet", "spec.source.path", "absolute path", ("spec.source.path", "pattern", "s3|gs|file")),
    (FV, "spec.source.timestampField", DELETE, "spec.source.timestampField", "required field is missing",
     ("spec.source", "required", "timestampField")),
    (FV, "spec.online", False, "spec.serving", "requires spec.online", ("spec", "cel", "self.online")),
    (FV, "spec.features.0.name", "driver_id", "spec.features", "joinKey", ("spec", "cel", "e.joinKey == f.name")),
    (FV, "spec.entities", [{"name": "a", "joinKey": "k", "valueType": "INT64"}, {"name": "b", "joinKey": "k", "valueType": "STRING"}],
     "spec.entities", "distinct joinKeys", ("spec", "cel", "exists_one")),
    (FV, "spec.features.0.name", "event_timestamp", "spec.features", "timestampField", ("spec", "cel", "self.source.timestampField")),
    (FV, "metadata.name", "Driver_Stats", "metadata.name", "DNS-1035", ("", "cel", "self.metadata.name.matches")),
    (FV, "metadata.name", "a" * 41, "metadata.name", "at most 40", ("", "cel", "size(self.metadata.name) <= 40")),
]


def _schema_node(crd: dict, dotted: str) -> dict:
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in filter(None, dotted.split(".")):
        node = node["items"] if part == "items" else node["properties"][part]
    return node


def _ids(case):
    return f"{case[0].split('-')[0]}:{case[1]}={case[2]!r}"[:80]


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_is_refused_naming_the_field(case):
    example, dotted, value, path, text, crd_rule = case
    doc = set_path(load_example(example), dotted, value)
    resource, problems = validate_document(doc)
    if path is None:
        assert problems == [] and resource is not None
        return
    assert resource is None
    lines = [str(p) for p in problems]
    assert any(line.startswith(f"{path}:") and text in line for line in lines), lines
    if crd_rule is None:
        return  # unknown fields: refused by the API server's strict field validation, not by a rule
    node_path, kind, expected = crd_rule
    node = _schema_node(crd_for(KINDS[doc["kind"]]), node_path)
    if kind == "cel":
        rules = [v["rule"] for v in node.get("x-kubernetes-validations", [])]
        assert any(expected in r for r in rules), rules
    elif kind == "required":
        assert expected in node["required"]
    elif kind == "pattern":
        assert expected in node["pattern"]
    elif kind == "enum":
        assert expected in node["enum"]
    else:
        assert node[kind] == expected, json.dumps(node)[:300]


@pytest.mark.parametrize("source,doc", all_example_documents(), ids=[s for s, _ in all_example_documents()])
def test_examples_are_valid(source, doc):
    resource, problems = validate_document(doc)
    assert problems == [], problems
    assert resource.name == doc["metadata"]["name"]


def test_wrong_kind_and_api_version_are_named():
    _, problems = validate_document({"apiVersion": "mlplatform.dev/v1", "kind": "Model", "metadata": {"name": "x"}})
    text = " | ".join(map(str, problems))
    assert "apiVersion: found 'mlplatform.dev/v1'" in text
    assert "kind: found 'Model'; allowed: FeatureView, ModelDeployment, TrainingJob" in text


def test_cel_rule_messages_match_the_cli_messages():
    """The API server reports the CEL rule's message: the same words the CLI prints."""
    doc = set_path(load_example(MD), "spec.autoscaling.minReplicas", 9)
    _, problems = validate_document(doc)
    crd = crd_for(KINDS["ModelDeployment"])
    messages = [v["message"] for v in _schema_node(crd, "spec.autoscaling")["x-kubernetes-validations"]]
    assert problems[0].message in messages
