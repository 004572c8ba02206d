"""docs/api.md: generated from the models, complete, and current (CI runs `mlplatform docs --check`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform import docs
from mlplatform.api import KINDS
from mlplatform.api.common import ApiModel

ROOT = Path(__file__).resolve().parents[1]


def mlplatform(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlplatform.cli", *args], capture_output=True, text=True, cwd=ROOT)


def _section(text: str, kind: str) -> str:
    start = text.index(f"\n## {kind}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def _rows(section: str) -> dict[str, list[str]]:
    """Field path -> its table cells (type, default, description, validation)."""
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = re.split(r"(?<!\\)\| ", match.group(2) + " ")
    return rows


def _models(model: type[ApiModel], seen: set) -> set:
    seen.add(model)
    for info in model.model_fields.values():
        inner, _ = docs._unwrap(info.annotation)
        if docs._is_model(inner) and inner not in seen:
            _models(inner, seen)
    return seen


TEXT = docs.render()


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_of_every_model_is_documented_with_its_description(kind):
    rows = _rows(_section(TEXT, kind))
    model, status = KINDS[kind].model, KINDS[kind].status_model
    expected = [p.lstrip(".") for p in docs.model_fields(model, "")] + docs.model_fields(status, "status")
    assert expected and not [p for p in expected if p not in rows], "fields missing from docs/api.md"
    for path in expected:
        assert rows[path][2].strip(), f"{path}: no description"
    # and nothing else: every row is a field of the models (or a list item carrying a rule)
    assert not [p for p in rows if p not in expected and not p.endswith("[]") and p not in ("spec", "status")]


def test_the_walk_covers_every_model_class():
    """The models reached from the kinds are all the ApiModels of the api package (none left out)."""
    import importlib
    import pkgutil

    import mlplatform.api as api
    from mlplatform.api import common

    reached = set()
    for kind in KINDS.values():
        _models(kind.model, reached)
        _models(kind.status_model, reached)
    modules = [importlib.import_module(f"mlplatform.api.{m.name}") for m in pkgutil.iter_modules(api.__path__)]
    defined = {obj for module in modules for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, ApiModel) and obj is not ApiModel}
    # base classes, documented through the models that inherit them
    assert defined - reached <= {common.CommonStatus, common.ContainerBlock}


def test_types_defaults_and_validation_are_the_models():
    md = _rows(_section(TEXT, "ModelDeployment"))
    assert md["spec.runtime.preset"][0].strip() == "string"
    assert "**required**" in md["spec.runtime.preset"][3]
    assert "`triton`" in md["spec.runtime.preset"][3] and "`custom`" in md["spec.runtime.preset"][3]
    assert md["spec.autoscaling.scaleDownStabilizationSeconds"][1].strip() == "300"
    assert ">= 0" in md["spec.autoscaling.scaleDownStabilizationSeconds"][3]
    assert "<= 3600" in md["spec.autoscaling.scaleDownStabilizationSeconds"][3]
    assert md["spec.rollout.maxSurge"][0].strip() == "integer or string"
    assert md["spec.scheduling.nodeSelector"][0].strip() == "map[string]string"
    # CEL rules and the rules without CEL, with the messages the CLI and the API server print
    autoscaling = md["spec.autoscaling"][3]
    assert "autoscaling.minReplicas must be <= autoscaling.maxReplicas" in autoscaling
    assert "CEL `self.minReplicas <= self.maxReplicas`" in autoscaling
    assert "autoscaling.targets needs at least one of" in autoscaling
    assert "set exactly one of model.uri or model.fromTrainingJob" in md["spec.model"][3]
    assert "set value or valueFrom, not both" in md["spec.runtime.env[]"][3]
    assert "pattern `^((s3\\|gs\\|hf\\|oci)://" in md["spec.model.uri"][3], "pipes escaped in table cells"
    fv = _rows(_section(TEXT, "FeatureView"))
    assert "at least 1 item;" in fv["spec.entities"][3] and "list keyed by name" in fv["spec.entities"][3]
    assert "entities must have distinct joinKeys" in fv["spec"][3]
    tj = _rows(_section(TEXT, "TrainingJob"))
    assert tj["status.runs[].startTime"][0].strip() == "string (date-time)"
    assert "DNS-1035 label" in _section(TEXT, "TrainingJob")


MAX_DEFAULT_LENGTH = 48  # "from the preset (large for vllm and triton)", "spec.backoffLimit if workers > 1, else 0"


def _default_cells(page: str) -> dict[str, str]:
    return {f"{kind} {path}": cells[1].strip() for kind in KINDS for path, cells in _rows(_section(page, kind)).items()}


@pytest.mark.parametrize("page", ["generated", "committed"])
def test_every_default_cell_is_a_short_value_not_prose(page):
    """Default holds a value; what it means goes in Description (a default read out of a description must
    stop where the value does)."""
    text = TEXT if page == "generated" else (ROOT / "docs" / "api.md").read_text()
    defaults = _default_cells(text)
    assert defaults["TrainingJob spec.backoffLimit"] == "0"
    assert defaults["TrainingJob spec.failurePolicy.restartOnPreemption"] == "true"
    assert defaults["TrainingJob spec.failurePolicy.maxRestarts"] == "spec.backoffLimit if workers > 1, else 0"
    prose = {field: default for field, default in defaults.items()
             if len(default) > MAX_DEFAULT_LENGTH or re.search(r"[.:;]\s|[.:;]$", default)}
    assert not prose, "Default cells holding prose; state the default as a short value in the description"


def test_a_default_is_read_up_to_the_end_of_its_clause():
    for description, default in [
        ("Pod retries (the Job's backoffLimit; default 0). Distributed runs: 0.", "0"),
        ("Restarts. Default: spec.backoffLimit if workers > 1, else 0. Unlike backoffLimit, more.",
         "spec.backoffLimit if workers > 1, else 0"),
        ("Default true: a disruption restarts the run.", "true"),
        ("Processes per worker pod; default gpu.count, else 1.", "gpu.count, else 1"),
        ("A port (default 29500).", "29500"),
        ("No default here; the default of another field.", ""),
    ]:
        assert docs._default_of({"description": description}, None) == default, description


def test_every_rule_message_of_the_models_is_in_the_page():
    messages = set()
    for model in set().union(*(_models(k.model, set()) | _models(k.status_model, set()) for k in KINDS.values())):
        messages |= {rule.message for rule in getattr(model, "rules", ())}
    assert messages and not [m for m in messages if m not in TEXT]


def test_placeholders_are_not_taken_for_html():
    md = _rows(_section(TEXT, "ModelDeployment"))
    assert "pvc://&lt;claim>/&lt;path>" in md["spec.model.uri"][2]


def test_committed_docs_are_current():
    result = mlplatform("docs", "--check")
    assert result.returncode == 0, result.stderr + "\nrun `make docs` and commit docs/api.md"
    assert (ROOT / "docs" / "api.md").read_text() == TEXT


def test_check_detects_a_stale_or_missing_page(tmp_path):
    page = tmp_path / "api.md"
    assert mlplatform("docs", "--check", "--output", str(page)).returncode == 1
    written = mlplatform("docs", "--output", str(page))
    assert written.returncode == 0 and page.read_text() == TEXT
    assert mlplatform("docs", "--check", "--output", str(page)).returncode == 0
    page.write_text(TEXT.replace("Upper bound of the replicas.", "Upper bound."))
    stale = mlplatform("docs", "--check", "--output", str(page))
    assert stale.returncode == 1
    assert f"{page}: differs from the models" in stale.stderr and "run `mlplatform docs`" in stale.stderr


# ---------------------------------------------------------------- docs/operations.md stays true to the code

OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
_REASON_ARG = {"Cond": 2, "PodProblem": 0, "RunState": 1}  # positional index of the reason


def _literal_reasons() -> dict[str, str]:
    """Every condition reason written as a literal in the status code and the reconcilers -> where."""
    import ast

    from mlplatform.status.pods import BAD_WAITING_REASONS

    found = {reason: "status/pods.py BAD_WAITING_REASONS" for reason in BAD_WAITING_REASONS}
    package = ROOT / "operator" / "mlplatform"
    for path in sorted([*(package / "status").glob("*.py"), *(package / "controllers").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            values = [k.value for k in node.keywords if k.arg == "reason"]
            if name in _REASON_ARG and len(node.args) > _REASON_ARG[name]:
                values.append(node.args[_REASON_ARG[name]])
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[value.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
                elif isinstance(value, ast.IfExp):  # "Degraded" if ... else "Progressing"
                    for branch in (value.body, value.orelse):
                        if isinstance(branch, ast.Constant) and isinstance(branch.value, str):
                            found[branch.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_operations_guide_explains_every_condition_reason_the_operator_writes():
    reasons = _literal_reasons()
    assert {"InvalidSpec", "CrashLoopBackOff", "KueueNotInstalled", "MaterializationFailed", "Stale"} <= set(reasons)
    missing = {reason: where for reason, where in reasons.items() if f"`{reason}`" not in OPERATIONS}
    assert not missing, f"reasons missing from docs/operations.md (troubleshooting): {missing}"


def test_operations_guide_names_every_metric_the_operator_exports():
    from mlplatform.metrics import Metrics

    metrics = Metrics()
    names = set()
    for collector in list(metrics.registry._collector_to_names):  # every registered collector
        for family in collector.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert "mlplatform_leader" in names and "mlplatform_reconcile_total" in names
    missing = sorted(name for name in names if f"`{name}`" not in OPERATIONS)
    assert not missing, f"metrics missing from docs/operations.md: {missing}"


def test_operations_guide_links_resolve():
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", OPERATIONS):
        assert (ROOT / "docs" / target).resolve().exists(), f"docs/operations.md links to a missing {target}"
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", OPERATIONS, flags=re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", OPERATIONS):
        assert anchor in anchors, f"docs/operations.md: no heading for #{anchor}"


def test_readme_links_stay_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)", readme):
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"README.md links outside the repository: {target}"
        assert path.exists(), f"README.md links to a missing {target}"
    assert "](docs/api.md)" in readme and "](docs/operations.md)" in readme
