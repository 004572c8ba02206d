"""Models -> structural CustomResourceDefinitions (the generated files in crds/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .api import CATEGORIES, GROUP, KINDS, MAX_NAME_LENGTH, NAME_PATTERN, VERSION, Kind
from .labels import PART_OF_LABEL

# additionalProperties: false is not allowed in a structural schema; the API server prunes or
# (with kubectl's default strict field validation) refuses unknown fields instead.
_DROPPED_KEYS = {"title", "default", "additionalProperties"}
_LEADING_KEYS = ("type", "description", "required")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs, turn Optional (anyOf [X, null]) into X, drop titles and null defaults."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(branches) == 1:
            return _inline({**branches[0], **rest}, defs)
        node = {**rest, "anyOf": branches}
        if node.get("x-kubernetes-int-or-string"):
            # int-or-string: the anyOf branches may carry only the types (structural rule).
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    out = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        elif key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap; kubectl explain wraps again
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _inline(value, defs)
    if node.get("additionalProperties") not in (None, False):
        out["additionalProperties"] = _inline(node["additionalProperties"], defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    leading = {k: out[k] for k in _LEADING_KEYS if k in out}
    return {**leading, **{k: v for k, v in out.items() if k not in leading}}


def object_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _inline(raw, raw.get("$defs", {}))


def _missing_descriptions(node: Any, path: str = "") -> list[str]:
    missing = []
    if isinstance(node, dict):
        for name, prop in node.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{path}.{name}")
            missing += _missing_descriptions(prop, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            missing += _missing_descriptions(node["items"], f"{path}[]")
    return missing


def _default_observed_generation(status_schema: dict[str, Any]) -> None:
    """A resource the operator has not acted on yet reads status.observedGeneration 0 (defaulted by the API
    server on every read, the create and apply responses included): kstatus (Flux) and Argo CD then see
    generation 1 not yet observed, i.e. InProgress, instead of Current for a resource without status.
    Defaults are not stored, so a manifest and `kubectl diff` never show them."""
    status_schema["default"] = {}
    status_schema["properties"]["observedGeneration"]["default"] = 0


def crd_for(kind: Kind) -> dict[str, Any]:
    spec_and_kind = object_schema(kind.model)
    spec_schema = spec_and_kind["properties"]["spec"]
    status_schema = object_schema(kind.status_model)
    status_schema["description"] = f"Observed state of the {kind.kind}, written by the operator."
    _default_observed_generation(status_schema)
    missing = _missing_descriptions(spec_schema, "spec") + _missing_descriptions(status_schema, "status")
    if missing:
        raise ValueError(f"{kind.kind}: fields without a description: {', '.join(missing)}")
    root = {
        "type": "object",
        "description": spec_and_kind.get("description") or f"{kind.kind} of {GROUP}.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this representation of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.matches('{NAME_PATTERN}') && size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) "
                f"of at most {MAX_NAME_LENGTH} characters, so that child names fit",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}", "labels": {PART_OF_LABEL: "mlplatform"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.printer_columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def file_name(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


def render_all() -> dict[str, str]:
    header = "# Generated by `mlplatform crds` from operator/mlplatform/api. Do not edit.\n"
    return {
        file_name(kind): header + yaml.safe_dump(crd_for(kind), sort_keys=False, width=1000)
        for kind in KINDS.values()
    }


def write(directories: list[Path]) -> list[Path]:
    written = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            path = directory / name
            path.write_text(text)
            written.append(path)
    return written


def stale(directories: list[Path]) -> list[str]:
    """Files that differ from what the models generate (missing, changed, or left over)."""
    problems = []
    expected = render_all()
    for directory in directories:
        for name, text in expected.items():
            path = directory / name
            if not path.exists():
                problems.append(f"{path}: missing")
            elif path.read_text() != text:
                problems.append(f"{path}: differs from the models")
        if directory.exists():
            for path in sorted(directory.glob(f"{GROUP}_*.yaml")):
                if path.name not in expected:
                    problems.append(f"{path}: no longer generated")
    return problems
