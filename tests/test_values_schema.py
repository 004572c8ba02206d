"""charts/mlplatform/values.schema.json: the chart's defaults pass, bad values are refused naming the key,
and the schema covers exactly the keys of values.yaml (so it cannot fall behind the chart silently).

Checked with the `jsonschema` package (installed with kubernetes-validate, a test extra) and with the real
helm that tests/test_install_manifests.py builds, which applies the schema on lint/template/install.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlplatform.config import OperatorConfig
from tests.test_install_manifests import helm_run, render, render_error

CHART = Path(__file__).resolve().parents[1] / "charts" / "mlplatform"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Not in values.yaml on purpose: a parent chart's globals reach this chart when it is a dependency.
SCHEMA_ONLY = {"global"}
# Described by the schema beyond values.yaml: the operator configuration's keys (values.yaml: config: {})
# and optional fields of the Kubernetes structures values.yaml shows filled in.
SCHEMA_BEYOND_VALUES = {f"config.{key}" for key in SCHEMA["properties"]["config"]["properties"]} | {
    "podSecurityContext.seccompProfile.localhostProfile", "securityContext.seccompProfile.localhostProfile",
    "securityContext.capabilities.add"}


def problems(values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return sorted(f"/{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
                  for error in validator.iter_errors(values))


def with_value(path: str, value) -> dict:
    values = json.loads(json.dumps(VALUES))
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


def test_schema_is_draft_07():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_default_values_validate():
    assert problems(VALUES) == []


@pytest.mark.parametrize("path, value, message", [
    ("metrics.port", "http", "/metrics/port: 'http' is not of type 'integer'"),
    ("health.port", 70000, "/health/port: 70000 is greater than the maximum of 65535"),
    ("replicaCount", -1, "/replicaCount: -1 is less than the minimum of 0"),
    ("image.pullPolicy", "Sometimes", "/image/pullPolicy: 'Sometimes' is not one of"),
    ("watchNamespace", "Team_A", "/watchNamespace: 'Team_A' does not match"),
    ("leaderElection.enabled", "yes", "/leaderElection/enabled: 'yes' is not of type 'boolean'"),
    ("podDisruptionBudget.unhealthyPodEvictionPolicy", "Never", "/podDisruptionBudget/unhealthyPodEvictionPolicy"),
    ("podDisruptionBudget.minAvailable", "half", "/podDisruptionBudget/minAvailable: 'half' is not valid"),
    ("metrics.serviceMonitor.interval", "30 seconds", "/metrics/serviceMonitor/interval: '30 seconds' does not match"),
    ("rbac.aggregateClusterRoles", "true", "/rbac/aggregateClusterRoles: 'true' is not of type 'boolean'"),
    ("replicas", 3, "/: Additional properties are not allowed ('replicas' was unexpected)"),
    ("leaderElection.leaseDurationSeconds", 30, "('leaseDurationSeconds' was unexpected)"),
    ("config.gpuType", {"h100": {}}, "/config: Additional properties are not allowed ('gpuType' was unexpected)"),
])
def test_bad_values_are_refused_naming_the_key(path, value, message):
    found = problems(with_value(path, value))
    assert len(found) == 1 and message in found[0], found


def test_good_values_of_every_shape_validate():
    for path, value in [("podDisruptionBudget.minAvailable", 1), ("podDisruptionBudget.minAvailable", "50%"),
                        ("podDisruptionBudget.maxUnavailable", None), ("watchNamespace", "team-a"),
                        ("podAntiAffinity", "hard"), ("replicaCount", 1),
                        ("tolerations", [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]),
                        ("resources", {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}),
                        ("config", {"gpuTypes": {"nvidia-h100-80gb": {"pool": "h100"}}}),
                        ("global", {"imageRegistry": "registry.internal"})]:
        assert problems(with_value(path, value)) == [], (path, value)


def _keys(values: dict, schema: dict, path: str = "") -> tuple[list[str], list[str]]:
    """(keys of values.yaml the schema does not name, keys the schema names that values.yaml lacks)."""
    missing, extra = [], []
    properties = schema.get("properties") or {}
    for key, value in values.items():
        where = f"{path}.{key}".lstrip(".")
        if key in properties:
            if isinstance(value, dict):
                sub_missing, sub_extra = _keys(value, properties[key], where)
                missing, extra = missing + sub_missing, extra + sub_extra
        elif not isinstance(schema.get("additionalProperties"), dict):  # a map's entries are not keys
            missing.append(where)
    if properties:  # objects the schema describes key by key
        extra += [f"{path}.{key}".lstrip(".") for key in properties if key not in values and key not in SCHEMA_ONLY]
    return missing, extra


def test_every_key_of_values_yaml_is_in_the_schema_and_no_other():
    missing, extra = _keys(VALUES, SCHEMA)
    assert not missing, f"values.yaml keys missing from values.schema.json: {missing}"
    extra = sorted(set(extra) - SCHEMA_BEYOND_VALUES)
    assert not extra, f"values.schema.json names keys that values.yaml does not have: {extra}"


def test_every_schema_object_of_ours_refuses_unknown_keys():
    """Typos fail at install; Kubernetes objects passed through (securityContext, affinity...) stay open."""
    open_objects = {"global", "resources", "podSecurityContext", "securityContext", "affinity",
                    "config.runtimes", "config.storageInitializer", "config.feast", "config.gpuTypes",
                    "config.metrics", "config.prometheus", "config.defaults"}

    def walk(node: dict, path: str):
        if node.get("type") == "object" and path not in open_objects:
            assert "additionalProperties" in node, f"{path or '/'}: say whether unknown keys are allowed"
        for key, child in (node.get("properties") or {}).items():
            yield from walk(child, f"{path}.{key}".lstrip("."))
        yield path

    assert list(walk(SCHEMA, ""))


def test_config_keys_are_the_operator_configuration():
    """The operator validates config in full at start; the schema names its top-level keys."""
    expected = {info.alias or name for name, info in OperatorConfig.model_fields.items()}
    assert set(SCHEMA["properties"]["config"]["properties"]) == expected


# ---------------------------------------------------------------- with the real helm


def test_helm_accepts_the_defaults_under_the_schema(helm):
    helm_run(helm, "lint", "--strict", str(CHART))
    assert render(helm, "--set", "podDisruptionBudget.minAvailable=1", "--set", "watchNamespace=team-a")


@pytest.mark.parametrize("values, message", [
    (["--set", "replicaCount=two"], "replicaCount: found two"),  # the template's check, same key
    (["--set", "metrics.port=http"], "at '/metrics/port': got string, want integer"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
    (["--set", "leaderElection.enable=false"], "at '/leaderElection': additional properties 'enable' not allowed"),
], ids=["replicaCount", "metrics-port", "pull-policy", "unknown-key", "unknown-nested-key"])
def test_helm_refuses_bad_values_naming_the_key(helm, values, message):
    assert message in render_error(helm, *values)
