"""Checks that need the operator configuration (presets), for `mlplatform validate`: the same
refusals the operator reports when it renders."""

from __future__ import annotations

from ..api.validation import Problem, Resource
from ..config import OperatorConfig
from .common import Owner, RenderError
from .modeldeployment import _preset, check_signals
from .serving import preset_problems


def config_problems(resource: Resource, config: OperatorConfig, signals: bool = True) -> list[Problem]:
    if resource.kind != "ModelDeployment":
        return []
    try:
        preset = _preset(resource.spec, config)
    except RenderError as err:
        return [Problem(err.field, err.message)]
    problems = [Problem(f, m) for f, m in preset_problems(resource.spec, preset, config)]
    if not signals:
        return problems
    try:
        check_signals(Owner(resource.kind, resource.name, resource.namespace or "default"), resource.spec, config)
    except RenderError as err:
        problems.append(Problem(err.field, err.message))
    return problems
