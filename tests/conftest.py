"""Shared helpers and fixtures of the unit tests (tests/).

Two tiers. `make test-unit` runs every test here except those marked `tools`: pure functions and the
reconcilers against a fake Kube, no Go, no network, no binary beyond the venv. A test is marked `tools`
(by pytest_collection_modifyitems below, never by hand) when it runs a real program: one built from a Go
module (helm, promtool, kubectl), a Go module's files (CRD schemas), or feast. That is, it asks for one of
TOOL_FIXTURES, calls one of TOOL_HELPERS, or is in one of TOOL_MODULES. `make test`
builds those programs first (`make tools`) and runs both tiers.

Fixtures (test modules never import fixtures: each import would be another fixture of its own):
  example        a loader of examples/<name>
  helm           (session) [command], env of the helm that charts/build-helm.sh builds (or MLPLATFORM_HELM)
  promtool       (session) path of the promtool built by e2e/controlplane/build.py (a tool)
  kubectl_tool   (session) path of the kubectl built with the local control plane
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BUILD_HELM = REPO / "charts" / "build-helm.sh"
# lws_schema (tests/test_llm_serving.py) reads the LeaderWorkerSet CRD from the Go module cache (`go mod download`).
TOOL_FIXTURES = frozenset({"helm", "promtool", "kubectl_tool", "lws_schema"})
# Helpers a test calls directly: kustomize runs `kubectl kustomize` (tests/test_argocd_health.py);
# validate_httproute reads the Gateway API CRD, fetched from its Go module (tests/gateway_schema.py); likewise
# validate_scaled_object, KEDA's ScaledObject CRD (tests/keda_schema.py).
TOOL_HELPERS = frozenset({"kustomize", "validate_httproute", "validate_scaled_object"})
# Modules that run a real program of their own: the Feast repos the operator renders, applied, materialized and
# served by the real feast (its import alone costs ~6 s of CPU, its tests ~1 min).
TOOL_MODULES = frozenset({"test_feast_repo.py"})


def _deselects_tools(config) -> bool:
    return (config.option.markexpr or "").split() == ["not", "tools"]


def pytest_ignore_collect(collection_path, config):
    """With -m "not tools" (make test-unit), the tool modules are not even imported."""
    if collection_path.name in TOOL_MODULES and _deselects_tools(config):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        if not Path(str(item.fspath)).resolve().is_relative_to(tests_dir):
            continue
        function = getattr(item, "function", None)
        calls = set(function.__code__.co_names) if function is not None else set()
        if TOOL_FIXTURES & set(item.fixturenames) or TOOL_HELPERS & calls or item.path.name in TOOL_MODULES:
            item.add_marker(pytest.mark.tools)


def _build_module():
    sys.path.insert(0, str(REPO / "e2e" / "controlplane"))
    import build  # e2e/controlplane/build.py

    return build


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> tuple[list[str], dict]:
    """The helm command: MLPLATFORM_HELM, else the one charts/build-helm.sh builds (and caches)."""
    path = os.environ.get("MLPLATFORM_HELM")
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.fail(f"MLPLATFORM_HELM={path} is not an executable file")
    else:
        try:
            out = subprocess.run(["bash", str(BUILD_HELM)], capture_output=True, text=True, timeout=1500)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{BUILD_HELM} did not build helm within 25 minutes")
        if out.returncode != 0:
            pytest.fail(f"helm is needed to test the chart and {BUILD_HELM.relative_to(REPO)} could not build it "
                        f"(exit {out.returncode}); install Go, or set MLPLATFORM_HELM to a helm binary.\n"
                        f"{out.stderr[-4000:]}")
        path = out.stdout.strip().splitlines()[-1]
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    version = subprocess.run([path, "version", "--short"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("v3."), version
    return [path], env


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool `make tools` builds (`cluster.py build --with-tools`); built here when missing or stale."""
    build = _build_module()
    path = build.binary_path("promtool")
    if not path.is_file() or build.missing(with_tools=True):
        build.build(with_tools=True)
    assert path.is_file(), f"{path} was not built"
    return str(path)


@pytest.fixture(scope="session")
def kubectl_tool() -> str:
    """The kubectl built with the local control plane (`make tools`); built here when missing or stale."""
    build = _build_module()
    path = build.binary_path("kubectl")
    if not path.is_file() or build.missing():
        build.build()
    assert path.is_file(), f"{path} was not built"
    return str(path)

def load_example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def all_example_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                docs.append((f"{path.name}#{i + 1}", doc))
    return docs


def set_path(doc: dict, dotted: str, value) -> dict:
    """Return a copy of doc with dotted (a.b.0.c) set to value; value DELETE removes the key."""
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return doc


DELETE = object()


@pytest.fixture
def example():
    return load_example
