"""Record the custom resources' bodies in every state the operator produces, as fixtures for the Argo CD
health checks (tests/test_argocd_health.py runs integrations/argocd/*.lua against them).

    MLPLATFORM_CLUSTER_DIR=.run/cluster-x .venv/bin/python e2e/record_cr_states.py [--only md-ready ...] [--keep]

Against the local control plane (started or reused like `make cluster`; E2E_KUBECONFIG=/path for another
cluster with kwok nodes and stages), with the operator run as a subprocess with the e2e configuration (it
copies the mlplatform.dev/kwok-* annotations to pods, which drive the kwok stages: crash loop, image pull
error, failing or slow pods). Each kind is driven through its states in namespace `cr-states`; each body
seen in the wanted state is written to tests/fixtures/cr_states/<kind>-<state>.json with metadata trimmed
of uid, resourceVersion, creationTimestamp, managedFields and kubectl's last-applied copy. What Argo CD
should say about each fixture is the test's table, not derived here. Run by hand: it takes a few minutes.

Stops no operator but its own: make sure no other operator (e.g. `make dev`) watches the same cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

from harness import (  # noqa: E402 - e2e/ is on sys.path only after the line above
    E2E_OPERATOR_CONFIG,
    GROUP,
    PLURALS,
    Kubectl,
    Operator,
    feature_view_spec,
    resource,
)

OUT = ROOT / "tests" / "fixtures" / "cr_states"
NAMESPACE = "cr-states"
LOG = ROOT / ".run" / "record-cr-states-operator.log"
SLOW = "600s"  # long enough for a transient state (starting, running, materializing) to be recorded

CPU_MODEL = {
    "model": {"uri": "s3://models/churn/v3/", "format": "sklearn"},
    "runtime": {"preset": "sklearn"},
    "resources": {"cpu": "500m", "memory": "1Gi"},
    "replicas": 2,
}
TRAINING = {"image": "python:3.12", "command": ["python", "train.py"], "resources": {"cpu": "2", "memory": "4Gi"},
            "output": {"uri": "s3://models/churn"}}
RARE = "0 0 1 1 *"  # a schedule that does not fire while recording: freshness runs out undisturbed


# ------------------------------------------------------------------ predicates on a body


def cond(body: dict, type_: str) -> dict:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def observed(body: dict) -> bool:
    return (body.get("status") or {}).get("observedGeneration") == body["metadata"].get("generation")


def is_cond(type_: str, status: str, reason: str | None = None) -> Callable[[dict], bool]:
    def check(body: dict) -> bool:
        c = cond(body, type_)
        return observed(body) and c.get("status") == status and (reason is None or c.get("reason") == reason)
    return check


def in_phase(phase: str, also: Callable[[dict], bool] | None = None) -> Callable[[dict], bool]:
    return lambda body: observed(body) and (body.get("status") or {}).get("phase") == phase and (also is None or also(body))


def both(*checks: Callable[[dict], bool]) -> Callable[[dict], bool]:
    return lambda body: all(check(body) for check in checks)


# ------------------------------------------------------------------ recipes


@dataclass
class Step:
    until: Callable[[dict], bool]
    record: str | None = None            # fixture state name
    then: Callable[[Kubectl], None] | None = None  # what to do once recorded (e.g. edit the resource)
    timeout: float = 180


@dataclass
class Recipe:
    kind: str
    name: str
    spec: dict
    annotations: dict | None = None
    steps: list[Step] = field(default_factory=list)
    delete_when_done: bool = False      # resources whose pods keep churning
    step: int = 0
    started: float = 0.0

    def manifest(self, **spec_changes) -> dict:
        return resource(self.kind, self.name, {**self.spec, **spec_changes}, self.annotations)


def reapply(recipe: Recipe, annotations: dict | None = None, **spec_changes) -> Callable[[Kubectl], None]:
    def act(kubectl: Kubectl) -> None:
        if annotations is not None:
            recipe.annotations = {**(recipe.annotations or {}), **annotations}
        recipe.spec = {**recipe.spec, **spec_changes}
        kubectl.apply(recipe.manifest(), NAMESPACE)
    return act


MD, TJ, FV = "ModelDeployment", "TrainingJob", "FeatureView"

# Applied before the operator runs (recorded as `created`), edited after it stopped (`spec-edited`).
CHURN = Recipe(MD, "churn", CPU_MODEL, steps=[Step(is_cond("Ready", "True"), "ready")])
TRAIN = Recipe(TJ, "train", TRAINING, steps=[Step(in_phase("Succeeded"), "succeeded")])
DRIVERS = Recipe(FV, "drivers", feature_view_spec(),
                 steps=[Step(both(is_cond("Ready", "True"), is_cond("Fresh", "True")), "ready")])
UNOBSERVED = [CHURN, TRAIN, DRIVERS]
ROLLING = Recipe(MD, "rolling", CPU_MODEL)
ROLLING.steps = [Step(is_cond("Ready", "True"), then=reapply(ROLLING, {"mlplatform.dev/kwok-crashloop": "true"})),
                 Step(in_phase("Degraded"), "degraded")]
FV_SUSPENDED = Recipe(FV, "paused", feature_view_spec(suspend=True, freshness={"maxStaleness": "20s"},
                                                 materialization={"schedule": RARE}),
                      steps=[Step(both(is_cond("Ready", "True"), is_cond("Fresh", "True")), "suspended"),
                             Step(is_cond("Fresh", "False", "Stale"), "suspended-stale", timeout=90)])

RECIPES: list[Recipe] = UNOBSERVED + [
    ROLLING,
    Recipe(MD, "starting", CPU_MODEL, {"mlplatform.dev/kwok-start-after": SLOW},
           steps=[Step(in_phase("Progressing", is_cond("Ready", "False", "RollingOut")), "progressing")]),
    Recipe(MD, "crashes", {**CPU_MODEL, "replicas": 1}, {"mlplatform.dev/kwok-crashloop": "true"},
           steps=[Step(is_cond("Ready", "False", "CrashLoopBackOff"), "crashloop")]),
    Recipe(MD, "no-image", {**CPU_MODEL, "replicas": 1}, {"mlplatform.dev/kwok-image-pull-error": "true"},
           steps=[Step(is_cond("Ready", "False", "ImagePullBackOff"), "image-pull")]),
    Recipe(MD, "too-big", {**CPU_MODEL, "replicas": 1, "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 16}}},
           steps=[Step(is_cond("Ready", "False", "Unschedulable"), "unschedulable")]),
    Recipe(MD, "exotic", {**CPU_MODEL, "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 1, "type": "nvidia-b999"}}},
           steps=[Step(is_cond("Stalled", "True", "InvalidSpec"), "stalled-invalid-spec")]),
    Recipe(MD, "hopeful", {"model": {"fromTrainingJob": "broken"}, "runtime": {"preset": "xgboost"}, "replicas": 1},
           steps=[Step(is_cond("Stalled", "True", "TrainingJobFailed"), "stalled-training-failed")]),
    Recipe(MD, "follower", {"model": {"fromTrainingJob": "not-yet"}, "runtime": {"preset": "xgboost"}, "replicas": 1},
           steps=[Step(in_phase("WaitingForTrainingJob"), "waiting-for-training-job")]),
    Recipe(MD, "scorer", {**CPU_MODEL, "replicas": 1, "features": ["missing-view"]},
           steps=[Step(in_phase("WaitingForFeatures"), "waiting-for-features")]),
    Recipe(MD, "sleepy", {**CPU_MODEL, "suspend": True},
           steps=[Step(both(observed, lambda b: cond(b, "Ready").get("reason") == "Suspended"), "suspended")]),

    Recipe(TJ, "queued-pods", TRAINING, {"mlplatform.dev/kwok-start-after": SLOW},
           steps=[Step(in_phase("Pending", is_cond("Ready", "False", "WorkersStarting")), "pending")]),
    Recipe(TJ, "long", TRAINING, {"mlplatform.dev/kwok-complete-after": SLOW},
           steps=[Step(in_phase("Running"), "running")]),
    Recipe(TJ, "broken", {"image": "python:3.12", "backoffLimit": 0, "output": {"uri": "s3://models/broken"}},
           {"mlplatform.dev/kwok-fail": "true", "mlplatform.dev/kwok-exit-code": "3"},
           steps=[Step(in_phase("Failed"), "failed")]),
    Recipe(TJ, "held", {**TRAINING, "suspend": True}, steps=[Step(in_phase("Suspended"), "suspended")]),
    Recipe(TJ, "exotic", {"image": "python:3.12", "resources": {"gpu": {"count": 1, "type": "nvidia-b999"}}},
           steps=[Step(is_cond("Stalled", "True", "InvalidSpec"), "stalled-invalid-spec")]),
    Recipe(TJ, "queued", {"image": "python:3.12", "queueName": "team-a"},
           steps=[Step(is_cond("Stalled", "True", "KueueNotInstalled"), "stalled-kueue-not-installed")]),
    Recipe(TJ, "no-image", TRAINING, {"mlplatform.dev/kwok-image-pull-error": "true"},
           steps=[Step(is_cond("Ready", "False", "ImagePullBackOff"), "image-pull")]),
    Recipe(TJ, "too-big", {"image": "python:3.12", "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 16}}},
           steps=[Step(is_cond("Ready", "False", "Unschedulable"), "unschedulable")]),

    Recipe(FV, "slow", feature_view_spec(), {"mlplatform.dev/kwok-complete-after": SLOW},
           steps=[Step(in_phase("Materializing"), "materializing")]),
    Recipe(FV, "failing", feature_view_spec(online=False, serving=None),
           {"mlplatform.dev/kwok-fail": "true", "mlplatform.dev/kwok-complete-after": "1s"},
           steps=[Step(is_cond("Materialized", "False", "MaterializationFailed"), "failed", timeout=240)],
           delete_when_done=True),
    Recipe(FV, "fleeting", feature_view_spec(freshness={"maxStaleness": "20s"}, materialization={"schedule": RARE}),
           steps=[Step(is_cond("Fresh", "False", "Stale"), "stale", timeout=150)]),
    FV_SUSPENDED,
    Recipe(FV, "crashing", feature_view_spec(), {"mlplatform.dev/kwok-crashloop": "true"},
           steps=[Step(is_cond("Ready", "False", "CrashLoopBackOff"), "crashloop")]),
]

def fixture_name(kind: str, state: str) -> str:
    return f"{kind.lower()}-{state}"


# ------------------------------------------------------------------ recording


def trimmed(body: dict) -> dict:
    meta = body["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    keep = {k: meta[k] for k in ("name", "namespace", "generation", "labels") if k in meta}
    if annotations:
        keep["annotations"] = annotations
    out = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": keep, "spec": body.get("spec")}
    if "status" in body:
        out["status"] = body["status"]
    return out


def summary(body: dict) -> str:
    status = body.get("status") or {}
    ready, stalled = cond(body, "Ready"), cond(body, "Stalled")
    return (f"gen {body['metadata'].get('generation')}/obs {status.get('observedGeneration')} "
            f"phase {status.get('phase')} Ready {ready.get('status')}/{ready.get('reason')} "
            f"Stalled {stalled.get('status')}/{stalled.get('reason')}")


class Recorder:
    def __init__(self, kubectl: Kubectl, out: Path, only: set[str] | None):
        self.kubectl, self.out, self.only = kubectl, out, only
        self.written: dict[str, str] = {}

    def wanted(self, kind: str, state: str) -> bool:
        return self.only is None or fixture_name(kind, state) in self.only

    def write(self, body: dict, state: str) -> None:
        name = fixture_name(body["kind"], state)
        if not self.wanted(body["kind"], state):
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{name}.json").write_text(json.dumps(trimmed(body), indent=2, sort_keys=True) + "\n")
        self.written[name] = summary(body)
        print(f"  recorded {name:50} {summary(body)}", flush=True)

    def bodies(self) -> dict[tuple[str, str], dict]:
        plurals = ",".join(f"{p}.{GROUP}" for p in PLURALS.values())
        items = json.loads(self.kubectl.run("get", plurals, "-n", NAMESPACE, "-o", "json").stdout)["items"]
        return {(i["kind"], i["metadata"]["name"]): i for i in items}


def ensure_namespace(kubectl: Kubectl) -> None:
    if kubectl.run("get", "namespace", NAMESPACE, check=False).returncode == 0:
        print(f"==> deleting the namespace {NAMESPACE} left by a previous run", flush=True)
        kubectl.run("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    kubectl.run("create", "namespace", NAMESPACE)
    deadline = time.monotonic() + 30
    while kubectl.run("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"no default service account in {NAMESPACE}")
        time.sleep(0.5)


def drive(recorder: Recorder, recipes: list[Recipe]) -> list[str]:
    """Poll every recipe's resource until its steps are done (or timed out); returns what timed out."""
    kubectl = recorder.kubectl
    now = time.monotonic()
    for recipe in recipes:
        recipe.started = now
    active = list(recipes)
    failures = []
    while active:
        bodies = recorder.bodies()
        for recipe in list(active):
            body = bodies.get((recipe.kind, recipe.name))
            step = recipe.steps[recipe.step]
            if body is not None and step.until(body):
                if step.record:
                    recorder.write(body, step.record)
                if step.then:
                    step.then(kubectl)
                recipe.step += 1
                recipe.started = time.monotonic()
            elif time.monotonic() - recipe.started > step.timeout:
                seen = summary(body) if body else "not found"
                failures.append(f"{recipe.kind}/{recipe.name} step {recipe.step} ({step.record}): timed out; last {seen}")
                print(f"  TIMEOUT {failures[-1]}", flush=True)
                recipe.step = len(recipe.steps)
            if recipe.step >= len(recipe.steps):
                active.remove(recipe)
                if recipe.delete_when_done:
                    kubectl.run("delete", f"{recipe.kind.lower()}/{recipe.name}", "-n", NAMESPACE, "--wait=false")
        time.sleep(0.5)
    return failures


def kubeconfig_path() -> str:
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        return external
    import cluster  # e2e/controlplane/cluster.py: MLPLATFORM_CLUSTER_DIR selects the run dir

    return str(cluster.Cluster().up())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="fixture names to (re)write, e.g. modeldeployment-ready")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help=f"leave namespace {NAMESPACE} behind")
    args = parser.parse_args(argv)
    only = set(args.only) if args.only else None

    kubeconfig = kubeconfig_path()
    kubectl = Kubectl(kubeconfig)
    recorder = Recorder(kubectl, args.out, only)
    print(f"==> CRDs into {kubeconfig}", flush=True)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in PLURALS.values():
        kubectl.run("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s")
    ensure_namespace(kubectl)

    print("==> just created: applied while no operator runs", flush=True)
    for recipe in UNOBSERVED:
        kubectl.apply(recipe.manifest(), NAMESPACE)
    bodies = recorder.bodies()
    for recipe in UNOBSERVED:
        recorder.write(bodies[(recipe.kind, recipe.name)], "created")

    config = Path(tempfile.mkdtemp(prefix="record-cr-states-")) / "config.yaml"
    config.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    operator = Operator(kubeconfig, LOG)
    print(f"==> the operator (log {LOG.relative_to(ROOT)}), then every state", flush=True)
    operator.start(config)
    try:
        for recipe in RECIPES[len(UNOBSERVED):]:
            kubectl.apply(recipe.manifest(), NAMESPACE)
        failures = drive(recorder, RECIPES)
    finally:
        operator.stop()

    print("==> spec edited while the operator is stopped: generation ahead of observedGeneration", flush=True)
    reapply(CHURN, replicas=3)(kubectl)
    reapply(TRAIN, args=["--epochs", "2"])(kubectl)
    reapply(DRIVERS, freshness={"maxStaleness": "2h"})(kubectl)
    bodies = recorder.bodies()
    for recipe in UNOBSERVED:
        body = bodies[(recipe.kind, recipe.name)]
        if body["metadata"]["generation"] <= (body.get("status") or {}).get("observedGeneration", 0):
            failures.append(f"{recipe.kind}/{recipe.name}: the edit did not move the generation")
        recorder.write(body, "spec-edited")

    if not args.keep:
        kubectl.run("delete", "namespace", NAMESPACE, "--wait=false")
    print(f"==> {len(recorder.written)} fixtures in {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    for failure in failures:
        print(f"MISSING {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
