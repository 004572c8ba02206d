"""The e2e fixtures live in one plugin, e2e/conftest.py, and no module of e2e/ imports one (an imported
fixture is a definition of its own in the importing module, with its own instance: six session operators
once ran at once that way). Checked on the source, without running the e2e tests."""

from __future__ import annotations

import ast
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def fixtures_defined(source: str) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and any(_is_fixture(d) for d in node.decorator_list)}


def imported_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def imported_fixtures(sources: dict[str, str], plugin: str) -> dict[str, set[str]]:
    shared = fixtures_defined(plugin)
    return {name: found for name, source in sources.items() if (found := imported_names(source) & shared)}


def e2e_sources() -> dict[str, str]:
    return {str(p.relative_to(E2E)): p.read_text() for p in sorted(E2E.rglob("*.py")) if p.name != "conftest.py"}


def test_the_plugin_defines_the_shared_fixtures():
    assert {"kubeconfig", "namespace", "operator", "crds", "kubectl", "kueue", "lws_controller"} <= fixtures_defined(
        (E2E / "conftest.py").read_text())


def test_no_e2e_module_imports_a_fixture():
    assert imported_fixtures(e2e_sources(), (E2E / "conftest.py").read_text()) == {}


def test_only_the_plugin_defines_session_fixtures():
    """Modules may keep fixtures of their own (module or function scope); shared ones are in conftest.py."""
    shared = fixtures_defined((E2E / "conftest.py").read_text())
    assert {name: both for name, source in e2e_sources().items() if (both := fixtures_defined(source) & shared)} == {}


def test_the_check_catches_an_imported_fixture():
    sources = {"test_x.py": "from harness import Operator, condition\nfrom lws import lws_controller\n"}
    plugin = "import pytest\n@pytest.fixture(scope='session')\ndef lws_controller():\n    pass\n"
    assert imported_fixtures(sources, plugin) == {"test_x.py": {"lws_controller"}}
