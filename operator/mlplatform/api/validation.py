"""Validate whole manifests (apiVersion, kind, metadata, spec) into typed resources or problems.

A problem names the field path as users write it (spec.autoscaling.minReplicas), what was found
and what is allowed, so `mlplatform validate` and the API server read alike.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from . import API_VERSION, KINDS, MAX_NAME_LENGTH, NAME_PATTERN
from .batchprediction import DATA_URI_ALLOWED, DATA_URI_PATTERN
from .common import (
    CRON_PATTERN,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    ENV_NAME_PATTERN,
    GPU_MIG_PATTERN,
    INT_OR_PERCENT_PATTERN,
    QUANTITY_PATTERN,
    RuleViolation,
)
from .featureview import IDENTIFIER_PATTERN, SOURCE_PATH_PATTERN
from .modeldeployment import MODEL_URI_ALLOWED, MODEL_URI_PATTERN
from .trainingjob import OUTPUT_URI_PATTERN

PATTERN_HELP = {
    QUANTITY_PATTERN: "a Kubernetes quantity such as 500m, 4, 16Gi",
    DURATION_PATTERN: "a duration such as 30m, 24h, 7d or 1h30m",
    CRON_PATTERN: "a 5-field cron schedule such as '*/30 * * * *', or @hourly/@daily/...",
    DNS_LABEL_PATTERN: "a DNS label: lowercase letters, digits and '-'",
    DNS_SUBDOMAIN_PATTERN: "a DNS subdomain name: lowercase letters, digits, '-' and '.'",
    ENV_NAME_PATTERN: "an environment variable name",
    GPU_MIG_PATTERN: "a MIG profile such as 1g.10gb",
    INT_OR_PERCENT_PATTERN: "a non-negative integer or a percentage such as 25%",
    IDENTIFIER_PATTERN: "an identifier: letters, digits and '_', not starting with a digit",
    SOURCE_PATH_PATTERN: "s3://, gs://, file:// or an absolute path",
    MODEL_URI_PATTERN: MODEL_URI_ALLOWED,
    OUTPUT_URI_PATTERN: "s3://, gs://, oci:// or pvc://<claim>/<path>",
    DATA_URI_PATTERN: DATA_URI_ALLOWED,
    r"^/.*": "an absolute path starting with /",
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "a DNS label: lowercase letters, digits and '-'",
}


_UNION_BRANCHES = ("int", "str")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class Resource:
    """A validated custom resource: its identity and its typed spec."""

    kind: str
    name: str
    namespace: str | None
    spec: Any  # the kind's *Spec model
    metadata: dict[str, Any]


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names (as written in YAML) allowed at loc, for 'unknown field' messages."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        current = _unwrap(current)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        match = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if match is None:
            return None
        current = match.annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / list[X] / Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else args[0]
        elif origin in (list, tuple):
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _describe(error: dict, model: type[BaseModel]) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    found = error.get("input")
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("error"), RuleViolation):
        violation = ctx["error"]
        # Rules are attached to an object; a rule about one field names that field.
        loc = loc + tuple(violation.field.split(".")) if violation.field else loc
        return Problem(_path(loc), violation.message)
    if loc and loc[-1] in _UNION_BRANCHES:
        # An int-or-string value of neither type: pydantic reports one error per branch; say it once.
        return Problem(_path(loc[:-1]), f"found {found!r}; allowed: an integer or a string")
    if kind == "missing":
        return Problem(_path(loc), "required field is missing")
    if kind == "extra_forbidden":
        allowed = _model_fields_at(model, loc[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return Problem(_path(loc), f"unknown field{hint}")
    if kind == "literal_error":
        return Problem(_path(loc), f"found {found!r}; allowed: {ctx.get('expected')}")
    if kind == "string_pattern_mismatch":
        allowed = PATTERN_HELP.get(ctx.get("pattern"), f"a string matching {ctx.get('pattern')}")
        return Problem(_path(loc), f"found {found!r}; allowed: {allowed}")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt"))
        return Problem(_path(loc), f"found {found!r}; allowed: {bound} {limit}")
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        unit = "characters" if kind.startswith("string") else "items"
        bound = f"at least {ctx.get('min_length')}" if kind.endswith("short") else f"at most {ctx.get('max_length')}"
        return Problem(_path(loc), f"found {len(found)} {unit}; allowed: {bound} {unit}")
    if kind == "value_error":
        return Problem(_path(loc), f"found {found!r}; {ctx.get('error', error['msg'])}")
    return Problem(_path(loc), f"{error['msg']} (found {found!r})")


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for problem in problems:
        key = (problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def validate_document(doc: Any) -> tuple[Resource | None, list[Problem]]:
    if not isinstance(doc, dict):
        return None, [Problem("", f"a manifest must be a mapping, found {type(doc).__name__}")]
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"found {doc.get('apiVersion')!r}; allowed: {API_VERSION!r}"))
    kind = doc.get("kind")
    if kind not in KINDS:
        problems.append(Problem("kind", f"found {kind!r}; allowed: {', '.join(KINDS)}"))
        return None, problems
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name")
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name) or len(name) > MAX_NAME_LENGTH:
        problems.append(Problem(
            "metadata.name",
            f"found {name!r}; allowed: a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) "
            f"of at most {MAX_NAME_LENGTH} characters",
        ))
    unknown_top = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    for key in unknown_top:
        problems.append(Problem(key, "unknown field; allowed here: apiVersion, kind, metadata, spec"))
    model = KINDS[kind].model
    try:
        typed = model.model_validate({"spec": doc.get("spec")} if "spec" in doc else {})
    except ValidationError as exc:
        problems += _dedupe([_describe(e, model) for e in exc.errors()])
        return None, problems
    if problems:
        return None, problems
    return Resource(kind, name, metadata.get("namespace"), typed.spec, metadata), []
