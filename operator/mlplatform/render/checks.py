"""Checks that need the operator configuration (presets), for `mlplatform validate`: the same
refusals the operator reports when it renders."""

from __future__ import annotations

from ..api.validation import Problem, Resource
from ..config import OperatorConfig
from .common import RenderError
from .modeldeployment import _preset
from .serving import preset_problems


def config_problems(resource: Resource, config: OperatorConfig) -> list[Problem]:
    if resource.kind != "ModelDeployment":
        return []
    try:
        preset = _preset(resource.spec, config)
    except RenderError as err:
        return [Problem(err.field, err.message)]
    return [Problem(f, m) for f, m in preset_problems(resource.spec, preset, config)]
