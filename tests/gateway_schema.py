"""The HTTPRoute schema of the Gateway API standard CRD (v1), for validating what the operator renders."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jsonschema
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "controlplane"))

import gateway_api


def _strict(node):
    """Unknown fields are refused (the API server's strict field validation), as kubernetes-validate does."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def httproute_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(gateway_api.crd_file("httproutes").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def validate_httproute(obj: dict) -> None:
    errors = sorted(httproute_validator().iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
