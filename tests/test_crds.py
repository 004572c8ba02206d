"""The generated CRDs: structural, described, with the names and columns API.md fixes, and current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.api import KINDS
from mlplatform.crds import crd_for, render_all, stale

ROOT = Path(__file__).resolve().parents[1]


def _walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield from _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural_and_described(kind):
    root = crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        assert "$ref" not in node and "allOf" not in node, path
        assert "additionalProperties" not in node or isinstance(node["additionalProperties"], dict), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node and "anyOf" not in node, path
            assert node.get("type") != "null", path
        is_field = not path.endswith(("[]", "{}"))
        if is_field and path.count(".") >= 1 and path != "$.metadata":
            assert node.get("description"), f"{path} has no description"


def test_names_columns_and_categories_follow_the_contract():
    expected = {
        "FeatureView": ("fv", ["Ready", "Fresh", "Last-Materialized", "Age"]),
        "ModelDeployment": ("md", ["Ready", "Replicas", "GPU", "Model", "Serving-Run", "Age"]),
        "TrainingJob": ("tj", ["Phase", "Workers", "GPU", "Run", "Queue", "Age"]),
    }
    for kind, (short, columns) in expected.items():
        crd = crd_for(KINDS[kind])
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert crd["spec"]["names"]["categories"] == ["ml", "mlplatform"]
        version = crd["spec"]["versions"][0]
        assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["scope"] == "Namespaced"


def test_conditions_are_a_list_map_keyed_by_type():
    for kind in KINDS.values():
        status = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        conditions = status["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_committed_crds_are_current():
    assert stale([ROOT / "crds", ROOT / "charts/mlplatform/crds"]) == []


def test_crds_check_fails_when_a_file_is_stale(tmp_path):
    for name, text in render_all().items():
        (tmp_path / name).write_text(text)
    first = sorted(tmp_path.iterdir())[0]
    first.write_text(first.read_text().replace("shortNames", "shortnames"))
    (tmp_path / "mlplatform.dev_oldkinds.yaml").write_text("{}")
    cli = [sys.executable, "-m", "mlplatform.cli", "crds", "--check", "--output-dir", str(tmp_path)]
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{first}: differs from the models" in result.stderr
    assert "mlplatform.dev_oldkinds.yaml: no longer generated" in result.stderr
    assert subprocess.run(cli[:-2] + ["--output-dir", str(ROOT / "crds")], capture_output=True).returncode == 0


def test_status_defaults_observed_generation_to_zero():
    """A resource the operator has not acted on must read InProgress in kstatus (generation 1, observed 0),
    not Current: the API server defaults an absent status to {observedGeneration: 0} on every read."""
    for kind in KINDS.values():
        root = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        status = root["properties"]["status"]
        assert status["default"] == {}, kind.kind
        assert status["properties"]["observedGeneration"] == {
            **status["properties"]["observedGeneration"], "type": "integer", "default": 0}, kind.kind
        # The only defaults in the schema: the spec carries none (the models' defaults are the operator's).
        defaults = [path for path, node in _walk(root) if "default" in node]
        assert defaults == ["$.status", "$.status.observedGeneration"], (kind.kind, defaults)
