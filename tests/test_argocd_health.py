"""The Argo CD health checks and actions of integrations/argocd/, run in a real Lua 5.1 (lupa.lua51).

Argo CD runs them with gopher-lua (Lua 5.1) and, for scripts configured in argocd-cm, opens only the base,
table, package and a safe os library (argo-cd util/lua/lua.go): the sandbox here removes string, math,
io, debug and coroutine, and the strings' metatable, so a script that works here works there.

The fixtures are custom resources recorded from the local control plane by e2e/record_cr_states.py.
What Argo CD must say about each is written out in EXPECTED, by hand; a recorded state without a row,
or a row without a fixture, fails.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lupa import lua51

from mlplatform.api import KINDS as API_KINDS

REPO = Path(__file__).resolve().parents[1]
ARGOCD = REPO / "integrations" / "argocd"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cr_states"
# The kinds whose states are recorded from a live cluster (tests/fixtures/cr_states); BatchPrediction's states are
# built from its status functions in tests/test_batchprediction.py.
KINDS = ("FeatureView", "ModelDeployment", "TrainingJob")


def generator():
    spec = importlib.util.spec_from_file_location("argocd_generate", ARGOCD / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = generator()


# ------------------------------------------------------------------ the Lua sandbox


def argocd_lua() -> lua51.LuaRuntime:
    """A fresh Lua 5.1 state per script run, with what Argo CD opens for argocd-cm scripts."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)
    lua.execute("""
        debug.setmetatable("", nil)   -- gopher-lua without the string library: no ("x"):find either
        local safe_os = {time = os.time, date = os.date}
        string, math, io, debug, coroutine = nil, nil, nil, nil, nil
        os = safe_os
    """)
    return lua


def run_script(script: str, obj: dict):
    lua = argocd_lua()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return lua.execute(script)


def to_python(value, like=None):
    """A Lua table as JSON-like Python; an empty table takes the shape of `like` (what Argo CD's
    cleanReturnedObj does: Lua cannot tell an empty array from an empty map)."""
    if lua51.lua_type(value) != "table":
        return value
    keys = list(value.keys())
    if not keys:
        return [] if isinstance(like, list) else {}
    if all(isinstance(k, (int, float)) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        items = [value[i] for i in range(1, len(keys) + 1)]
        return [to_python(v, like[i] if isinstance(like, list) and i < len(like) else None) for i, v in enumerate(items)]
    return {k: to_python(v, like.get(k) if isinstance(like, dict) else None) for k, v in value.items()}


def health(obj: dict) -> dict:
    return to_python(run_script((ARGOCD / "health.lua").read_text(), obj))


def discovery(obj: dict) -> dict:
    return to_python(run_script((ARGOCD / "actions" / "discovery.lua").read_text(), obj))


def action(name: str, obj: dict) -> dict:
    return to_python(run_script((ARGOCD / "actions" / name / "action.lua").read_text(), obj), obj)


def test_the_sandbox_is_argo_cds():
    assert run_script("return string == nil and math == nil and io == nil and getmetatable('') == nil", {})
    with pytest.raises(lua51.LuaError):
        run_script("return ('x'):upper()", {})
    assert run_script("return _VERSION", {}) == "Lua 5.1"


# ------------------------------------------------------------------ health: fixture -> expected


@dataclass(frozen=True)
class Message:
    """The message Argo CD shows: that condition's message, or a text it contains."""

    condition: str | None = None
    contains: str | None = None


READY, STALLED, FRESH = Message("Ready"), Message("Stalled"), Message("Fresh")
UNOBSERVED = Message(contains="Waiting for the operator to observe the")
GENERATION_AHEAD = Message(contains="Waiting for the operator to observe generation 2 (status is of generation 1)")

# fixture -> (Argo CD health, message). Our Ready (status/reason) is in the fixture; see README's table.
EXPECTED: dict[str, tuple[str, Message]] = {
    "modeldeployment-created": ("Progressing", UNOBSERVED),           # status {observedGeneration: 0}, the CRD default
    "modeldeployment-progressing": ("Progressing", READY),            # RollingOut 0/2
    "modeldeployment-ready": ("Healthy", READY),
    "modeldeployment-degraded": ("Degraded", READY),                  # phase Degraded: 2 old ready, new crash-looping
    "modeldeployment-crashloop": ("Degraded", READY),                 # will not heal by waiting
    "modeldeployment-image-pull": ("Degraded", READY),
    "modeldeployment-unschedulable": ("Degraded", READY),
    "modeldeployment-stalled-invalid-spec": ("Degraded", STALLED),    # unknown GPU type
    "modeldeployment-stalled-training-failed": ("Degraded", STALLED),
    "modeldeployment-waiting-for-training-job": ("Progressing", READY),
    "modeldeployment-waiting-for-features": ("Progressing", READY),
    "modeldeployment-suspended": ("Suspended", READY),                # Ready True, reason Suspended
    "modeldeployment-spec-edited": ("Progressing", GENERATION_AHEAD),  # status still says Ready True of gen 1
    "trainingjob-created": ("Progressing", UNOBSERVED),
    "trainingjob-pending": ("Progressing", READY),                    # WorkersStarting
    "trainingjob-running": ("Progressing", READY),
    "trainingjob-succeeded": ("Healthy", READY),
    "trainingjob-failed": ("Degraded", STALLED),
    "trainingjob-suspended": ("Suspended", READY),                    # Ready True, reason Suspended
    "trainingjob-stalled-invalid-spec": ("Degraded", STALLED),
    "trainingjob-stalled-kueue-not-installed": ("Degraded", STALLED),
    "trainingjob-image-pull": ("Degraded", READY),
    "trainingjob-unschedulable": ("Degraded", READY),
    "trainingjob-spec-edited": ("Progressing", GENERATION_AHEAD),
    "featureview-created": ("Progressing", UNOBSERVED),
    "featureview-materializing": ("Progressing", READY),
    "featureview-ready": ("Healthy", READY),
    "featureview-failed": ("Degraded", STALLED),                      # Stalled MaterializationFailed: says what clears it
    "featureview-stale": ("Degraded", FRESH),                         # Ready True, but older than maxStaleness
    "featureview-suspended": ("Suspended", READY),
    "featureview-suspended-stale": ("Suspended", FRESH),              # stale because materialization is suspended
    "featureview-crashloop": ("Degraded", READY),
    "featureview-spec-edited": ("Progressing", GENERATION_AHEAD),
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def condition(body: dict, type_: str) -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def test_every_recorded_state_has_an_expected_health_and_back():
    recorded = {p.stem for p in FIXTURES.glob("*.json")}
    assert recorded == set(EXPECTED), f"unexpected: {sorted(recorded - set(EXPECTED))}; " \
                                      f"not recorded: {sorted(set(EXPECTED) - recorded)}"
    for kind in KINDS:  # each kind's states reach every Argo CD health
        statuses = {status for name, (status, _) in EXPECTED.items() if name.startswith(kind.lower() + "-")}
        assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}, kind


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_each_recorded_state(name):
    body = fixture(name)
    status, message = EXPECTED[name]
    result = health(body)
    assert set(result) == {"status", "message"}
    assert result["status"] == status, f"{name}: {result}"
    if message.condition:
        expected = condition(body, message.condition)["message"]
        assert expected and result["message"] == expected
    else:
        assert message.contains in result["message"]


def recorded_columns(body: dict) -> tuple[str, str, str]:
    """README's columns phase (its first word), our Ready ("True Reason") and Stalled, from a fixture; – when absent."""
    status = body.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready, stalled = conditions.get("Ready"), conditions.get("Stalled")
    return (status.get("phase", "–"), f"{ready['status']} {ready['reason']}" if ready else "–",
            stalled["status"] if stalled else "–")


def test_the_readme_table_is_this_table():
    rows, columns = {}, {}
    for line in (ARGOCD / "README.md").read_text().splitlines():
        if line.startswith("| `") and line.split("`")[1].split("-")[0] in {k.lower() for k in KINDS}:
            name = line.split("`")[1]
            cells = [cell.strip() for cell in line.strip(" |").split("|")]
            rows[name] = cells[-1]
            columns[name] = (cells[1].split()[0], cells[2], cells[3])
    assert rows == {name: status for name, (status, _) in EXPECTED.items()}
    assert columns == {name: recorded_columns(fixture(name)) for name in EXPECTED}


def test_the_health_script_is_the_same_for_each_kind_and_reads_only_its_input():
    body = fixture("modeldeployment-ready")
    before = copy.deepcopy(body)
    assert health(body) == health(body)
    assert body == before


# The recorded `created` states carry status {observedGeneration: 0}, the CRDs' default. A resource served by
# CRDs without that default (an older mlplatform release) has no status at all until the operator writes one.
@pytest.mark.parametrize("name", ["modeldeployment-created", "trainingjob-created", "featureview-created"])
def test_a_resource_without_any_status_is_progressing(name):
    body = fixture(name)
    assert body["status"] == {"observedGeneration": 0}
    del body["status"]
    result = health(body)
    assert result["status"] == "Progressing"
    assert UNOBSERVED.contains in result["message"]


# ------------------------------------------------------------------ actions


@pytest.mark.parametrize("kind", KINDS)
def test_suspend_then_resume_round_trip(kind):
    ready = {"FeatureView": "featureview-ready", "ModelDeployment": "modeldeployment-ready",
             "TrainingJob": "trainingjob-succeeded"}[kind]
    body = fixture(ready)
    assert "suspend" not in body["spec"]
    actions = discovery(body)
    assert actions["suspend"]["disabled"] is False and actions["resume"]["disabled"] is True
    assert actions["suspend"]["displayName"] == "Suspend" and actions["resume"]["iconClass"]

    suspended = action("suspend", body)
    assert suspended["spec"]["suspend"] is True
    assert {**suspended, "spec": {k: v for k, v in suspended["spec"].items() if k != "suspend"}} == body
    actions = discovery(suspended)
    assert actions["suspend"]["disabled"] is True and actions["resume"]["disabled"] is False

    resumed = action("resume", suspended)
    assert resumed["spec"]["suspend"] is False
    assert {**resumed, "spec": {k: v for k, v in resumed["spec"].items() if k != "suspend"}} == body
    actions = discovery(resumed)
    assert actions["suspend"]["disabled"] is False and actions["resume"]["disabled"] is True


@pytest.mark.parametrize("name", ["modeldeployment-suspended", "trainingjob-suspended", "featureview-suspended"])
def test_a_suspended_resource_offers_resume_only(name):
    actions = discovery(fixture(name))
    assert actions["suspend"]["disabled"] is True and actions["resume"]["disabled"] is False
    assert action("resume", fixture(name))["spec"]["suspend"] is False


# ------------------------------------------------------------------ the shipped argocd-cm


def test_the_configmap_carries_exactly_the_lua_files():
    text = (ARGOCD / "component" / "argocd-cm.yaml").read_text()
    assert text == GENERATE.configmap(), "stale: run `python integrations/argocd/generate.py`"
    cm = yaml.safe_load(text)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"  # Argo CD watches only those
    health_lua = (ARGOCD / "health.lua").read_text()
    expected_actions = {
        "discovery.lua": (ARGOCD / "actions" / "discovery.lua").read_text(),
        "definitions": [{"name": name, "action.lua": (ARGOCD / "actions" / name / "action.lua").read_text()}
                        for name in ("suspend", "resume")],
    }
    keys = set()
    assert GENERATE.KINDS == tuple(API_KINDS), "integrations/argocd/generate.py: one health key per kind of the API"
    for kind in GENERATE.KINDS:
        keys |= {f"resource.customizations.health.mlplatform.dev_{kind}",
                 f"resource.customizations.actions.mlplatform.dev_{kind}"}
        assert cm["data"][f"resource.customizations.health.mlplatform.dev_{kind}"] == health_lua
        assert yaml.safe_load(cm["data"][f"resource.customizations.actions.mlplatform.dev_{kind}"]) == expected_actions
    assert set(cm["data"]) == keys


def test_the_helm_values_carry_the_same_keys():
    text = (ARGOCD / "helm-values.yaml").read_text()
    assert text == GENERATE.helm_values(), "stale: run `python integrations/argocd/generate.py`"
    cm = yaml.safe_load((ARGOCD / "component" / "argocd-cm.yaml").read_text())
    assert yaml.safe_load(text)["configs"]["cm"] == cm["data"]


def test_generate_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    assert GENERATE.main(["--check"]) == 0
    copy_dir = tmp_path / "argocd"
    shutil.copytree(ARGOCD, copy_dir)
    (copy_dir / "health.lua").write_text((ARGOCD / "health.lua").read_text() + "-- edited\n")
    monkeypatch.setattr(GENERATE, "HERE", copy_dir)
    assert GENERATE.main(["--check"]) == 1


def kubectl() -> str:
    sys.path.insert(0, str(REPO / "e2e" / "controlplane"))
    import build  # e2e/controlplane/build.py: the kubectl `make test` builds

    built = build.binary_path("kubectl")
    found = str(built) if built.exists() else shutil.which("kubectl")
    assert found, f"no kubectl: `make cluster-build` builds {built}"
    return found


def kustomize(directory: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_installs_the_configmap():
    built = kustomize(ARGOCD)
    assert built == [yaml.safe_load((ARGOCD / "component" / "argocd-cm.yaml").read_text())]


def test_the_component_patches_an_existing_argocd_cm(tmp_path):
    shutil.copytree(ARGOCD, tmp_path / "argocd")
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd", "labels": {"app.kubernetes.io/part-of": "argocd"}},
        "data": {"url": "https://argocd.example.com", "resource.customizations.health.apps_Foo": "hs = {}"}}))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["cm.yaml"], "components": ["argocd/component"]}))
    [cm] = kustomize(tmp_path)
    ours = yaml.safe_load((ARGOCD / "component" / "argocd-cm.yaml").read_text())["data"]
    assert cm["data"] == {**ours, "url": "https://argocd.example.com", "resource.customizations.health.apps_Foo": "hs = {}"}
