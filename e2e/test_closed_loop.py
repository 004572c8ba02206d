"""The closed loop on the real control plane, GitOps style (issue 21): nothing in git changes between runs.

A FeatureView materializes (its status.materializedUntil moves: patched forward here, as a materialization
Job's completion moves it; the operator keeps the latest watermark) -> the TrainingJob starts a run by itself
-> the run succeeds with metrics (kwok annotations: the operator copies them to the pods) -> the ModelDeployment's
promotion gate passes -> the canary runs and promotes it -> status.lineage names the run and the watermark, the
HTTPRoute's filter names the run.
A run with a failing metric is skipped; a schema edit of the FeatureView turns FeatureContract False and keeps
runs trained on the old schema from being promoted until a run on the new one succeeds.

Run with -s to see the loop's timeline (seconds per step) and `kubectl describe md` (also written to
.run/closed-loop-kubectl.txt).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import yaml

from harness import ROOT, condition, feature_view_spec, get_cr, resource

FIELD_MANAGER = "argocd-controller"
TRANSCRIPT = ROOT / ".run" / "closed-loop-kubectl.txt"
METRICS = "mlplatform.dev/kwok-termination-message"
COMPLETE_AFTER = "mlplatform.dev/kwok-complete-after"
TJ, MD, FV = "fraud-train", "fraud", "driver-stats"


@pytest.fixture(scope="module")
def transcript():
    TRANSCRIPT.parent.mkdir(parents=True, exist_ok=True)
    out = open(TRANSCRIPT, "w")

    def write(title: str, text: str) -> None:
        block = f"### {title}\n{text.rstrip()}\n\n"
        print("\n" + block, end="")
        out.write(block)
        out.flush()
    yield write
    out.close()


def apply(kubectl, manifest: dict, namespace: str) -> None:
    kubectl.run("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
                "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def patch_view_status(custom, namespace: str, **fields) -> None:
    """A materialization's report: status.materializedUntil (the FeatureView's reconcile keeps the latest)."""
    custom.patch_namespaced_custom_object_status("mlplatform.dev", "v1alpha1", namespace, "featureviews", FV,
                                                 {"status": fields})


def training_job(auc: float, complete_after: str = "1s") -> dict:
    """The TrainingJob as committed; the kwok annotations play the trainer (its metrics, how long it takes)."""
    return resource("TrainingJob", TJ, {
        "image": "python:3.12", "resources": {"cpu": "100m", "memory": "128Mi"},
        "output": {"uri": "s3://models/fraud/"}, "features": [FV],
        "trigger": {"afterMaterialization": [FV]}},
        annotations={METRICS: json.dumps({"auc": auc}), COMPLETE_AFTER: complete_after})


def model_deployment() -> dict:
    return resource("ModelDeployment", MD, {
        "model": {"fromTrainingJob": TJ, "format": "sklearn", "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}},
        "runtime": {"preset": "sklearn"}, "resources": {"cpu": "100m", "memory": "128Mi"}, "replicas": 1,
        "features": [FV],
        "gateway": {"parentRefs": [{"name": "inference", "namespace": "gateway-system"}]},
        "rollout": {"canary": {"steps": [50], "stepSeconds": 2}}})


def run_record(custom, namespace: str, run: int) -> dict:
    status = get_cr(custom, "TrainingJob", namespace, TJ).get("status") or {}
    return next((r for r in status.get("runs") or [] if r["run"] == run), {})


def versions(custom, namespace: str) -> list[str]:
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", MD)
    return [f["responseHeaderModifier"]["set"][0]["value"] for b in route["spec"]["rules"][0]["backendRefs"]
            for f in b.get("filters") or [] if f["type"] == "ResponseHeaderModifier"]


def events(core_v1, namespace: str, name: str, reason: str) -> list[str]:
    return [e.message for e in core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
            .items if e.reason == reason]


def test_materialization_retrains_promotes_and_the_lineage_follows(operator, kubectl, custom, core_v1, namespace,
                                                                   wait_for, transcript):
    md = lambda: get_cr(custom, "ModelDeployment", namespace, MD)  # noqa: E731
    apply(kubectl, resource("FeatureView", FV, feature_view_spec()), namespace)
    wait_for(lambda: condition(get_cr(custom, "FeatureView", namespace, FV), "Fresh").get("status") == "True",
             timeout=90, what="FeatureView Fresh")
    view = lambda: get_cr(custom, "FeatureView", namespace, FV)  # noqa: E731
    status = wait_for(lambda: (lambda s: s if s.get("schemaHash") and s.get("materializedUntil") else None)(
        view().get("status") or {}), timeout=30, what="schemaHash and materializedUntil of the first materialization")
    s1, base = status["schemaHash"], datetime.fromisoformat(status["materializedUntil"].replace("Z", "+00:00"))

    def later(hours: int) -> str:
        """A watermark `hours` past the first materialization's (later than any Job of this test sets)."""
        return (base + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Run 1: the TrainingJob as created (trigger spec); it reads the view's watermark and schema.
    apply(kubectl, training_job(0.95), namespace)
    wait_for(lambda: run_record(custom, namespace, 1).get("phase") == "Succeeded", timeout=60, what="run 1")
    first = run_record(custom, namespace, 1)
    assert first["trigger"] == "spec"
    assert first["inputs"]["features"][0] == {"name": FV, "schemaHash": s1, "materializedUntil": status["materializedUntil"],
                                              "featureTypes": {"conv_rate": "FLOAT32"}}
    assert first["inputs"]["image"]
    apply(kubectl, model_deployment(), namespace)
    wait_for(lambda: (md().get("status") or {}).get("lineage", {}).get("run") == 1 and
             condition(md(), "Ready").get("status") == "True", timeout=90, what="run 1 served")
    assert versions(custom, namespace) == [f"{TJ}/run-1"]
    assert condition(md(), "FeatureContract")["reason"] == "SchemaMatches"

    # The loop: a materialization completes; nothing changes in git.
    timeline: list[tuple[str, float]] = []
    start = time.monotonic()
    mark = lambda what: timeline.append((what, time.monotonic() - start))  # noqa: E731
    patch_view_status(custom, namespace, materializedUntil=later(1))
    mark("FeatureView materializedUntil moved")
    wait_for(lambda: run_record(custom, namespace, 2), timeout=30, interval=0.1, what="run 2 started")
    mark("run 2 started (trigger afterMaterialization)")
    assert run_record(custom, namespace, 2)["trigger"] == "afterMaterialization"
    wait_for(lambda: run_record(custom, namespace, 2).get("phase") == "Succeeded", timeout=60, interval=0.1,
             what="run 2 succeeded")
    mark("run 2 succeeded (auc 0.95 meets min 0.9)")
    canary = wait_for(lambda: (lambda r: r if r.get("phase") == "Progressing" else None)(
        (md().get("status") or {}).get("rollout") or {}), timeout=60, interval=0.1, what="canary started")
    mark("canary started")
    assert canary["canaryModelUri"] == "s3://models/fraud/run-2/"
    lineage = wait_for(lambda: (md().get("status") or {}).get("lineage", {}).get("canary") and md()["status"]["lineage"],
                       timeout=30, interval=0.1, what="lineage.canary")
    assert (lineage["run"], lineage["canary"]["run"]) == (1, 2)
    wait_for(lambda: versions(custom, namespace) == [f"{TJ}/run-1", f"{TJ}/run-2"], timeout=30, interval=0.1,
             what="each backend names its run")
    mark("canary at 50%: route backends say run-1 / run-2")
    wait_for(lambda: ((md().get("status") or {}).get("rollout") or {}).get("phase") == "Promoted", timeout=90,
             interval=0.1, what="promoted")
    mark("canary promoted")
    wait_for(lambda: md()["status"].get("lineage", {}).get("run") == 2 and versions(custom, namespace) == [f"{TJ}/run-2"]
             and "canary" not in md()["status"]["lineage"], timeout=30, interval=0.1, what="lineage run 2")
    mark("lineage and X-Model-Version name run 2")
    lineage = md()["status"]["lineage"]
    assert lineage == {"trainingJob": TJ, "run": 2, "artifactUri": "s3://models/fraud/run-2/",
                       "image": run_record(custom, namespace, 2)["inputs"]["image"],
                       "features": [{"name": FV, "schemaHash": s1, "materializedUntil": later(1)}]}
    assert events(core_v1, namespace, TJ, "TriggeredRunStarted")
    transcript("the loop's timeline (seconds since the materialization)",
               "\n".join(f"{seconds:6.1f} s  {what}" for what, seconds in timeline))

    # A run whose metric fails the gate: skipped, run 2 keeps serving.
    apply(kubectl, training_job(0.5), namespace)
    patch_view_status(custom, namespace, materializedUntil=later(2))
    wait_for(lambda: run_record(custom, namespace, 3).get("phase") == "Succeeded", timeout=60, what="run 3")
    wait_for(lambda: "run 3 skipped: auc 0.5 < min 0.9" in condition(md(), "ModelResolved").get("message", ""),
             timeout=30, what="run 3 skipped")
    assert md()["status"]["lineage"]["run"] == 2
    wait_for(lambda: events(core_v1, namespace, MD, "RunSkippedByPromotion"), timeout=15, what="RunSkippedByPromotion")

    # A schema edit while run 4 trains on the old schema: FeatureContract False, run 4 is never promoted.
    apply(kubectl, training_job(0.97, complete_after="6s"), namespace)
    patch_view_status(custom, namespace, materializedUntil=later(3))
    wait_for(lambda: run_record(custom, namespace, 4), timeout=30, interval=0.1, what="run 4 started")
    assert run_record(custom, namespace, 4)["inputs"]["features"][0]["schemaHash"] == s1
    apply(kubectl, resource("FeatureView", FV, feature_view_spec(features=[{"name": "conv_rate", "dtype": "INT64"}])),
          namespace)
    # The operator's hash of the edited spec, once it has seen the edit.
    s2 = wait_for(lambda: (lambda v: v["status"]["schemaHash"] if v["status"].get("observedGeneration") ==
                           v["metadata"]["generation"] and v["status"].get("schemaHash") != s1 else None)(view()),
                  timeout=30, what="FeatureView edit observed, its schema hash changed")
    contract = wait_for(lambda: (lambda c: c if c.get("status") == "False" else None)(condition(md(), "FeatureContract")),
                        timeout=30, what="FeatureContract False")
    assert contract["reason"] == "SchemaChanged"
    assert contract["message"] == f"{FV}: feature conv_rate FLOAT32 -> INT64 since run 2 was trained"
    # Run 2 keeps serving: the contract tells, it does not make the model not Ready (Ready may follow the
    # FeatureView's own re-materialization after the edit, through FeaturesReady, as before).
    assert md()["status"]["modelUri"] == "s3://models/fraud/run-2/"
    assert condition(md(), "Ready").get("reason") != "SchemaChanged"
    wait_for(lambda: run_record(custom, namespace, 4).get("phase") == "Succeeded", timeout=60, what="run 4")
    resolved = wait_for(lambda: (lambda c: c if "run 4 skipped" in c.get("message", "") else None)(
        condition(md(), "ModelResolved")), timeout=30, what="run 4 skipped")
    assert f"run 4 skipped: trained on FeatureView {FV} schema {s1}, which now has schema {s2}" in resolved["message"]
    assert md()["status"]["lineage"]["run"] == 2
    wait_for(lambda: events(core_v1, namespace, MD, "FeatureContractChanged"), timeout=15, what="FeatureContractChanged")

    # A run on the new schema: promoted, the contract holds again.
    wait_for(lambda: condition(get_cr(custom, "FeatureView", namespace, FV), "Fresh").get("status") == "True",
             timeout=60, what="FeatureView Fresh after the edit")
    patch_view_status(custom, namespace, materializedUntil=later(4))
    wait_for(lambda: run_record(custom, namespace, 5).get("phase") == "Succeeded", timeout=60, what="run 5")
    assert run_record(custom, namespace, 5)["inputs"]["features"][0]["schemaHash"] == s2
    wait_for(lambda: md()["status"].get("lineage", {}).get("run") == 5 and
             condition(md(), "FeatureContract").get("status") == "True", timeout=90, what="run 5 served, contract True")
    wait_for(lambda: versions(custom, namespace) == [f"{TJ}/run-5"], timeout=30, what="route names run 5")
    transcript(f"kubectl get md {MD}", kubectl.run("get", "md", MD, "-n", namespace).stdout)
    transcript(f"kubectl get tj {TJ} -o yaml (status.runs)", yaml.safe_dump(
        {"runs": get_cr(custom, "TrainingJob", namespace, TJ)["status"]["runs"]}, sort_keys=False))
    transcript(f"kubectl describe md {MD}", kubectl.run("describe", "md", MD, "-n", namespace).stdout)


@pytest.mark.parametrize("trigger,words", [
    ({"timeZone": "Europe/Dublin", "afterMaterialization": [FV]}, "timeZone needs schedule"),
    ({"schedule": "every night"}, "spec.trigger.schedule"),
    ({"afterMaterialization": ["Driver_Stats"]}, "spec.trigger.afterMaterialization"),
    ({"minIntervalSeconds": 60}, "trigger needs schedule or afterMaterialization"),
])
def test_the_api_server_refuses_a_bad_trigger(crds, kubectl, namespace, trigger, words):
    manifest = resource("TrainingJob", "bad", {"image": "python:3.12", "trigger": trigger})
    result = kubectl.run("apply", "--server-side", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest),
                         check=False)
    assert result.returncode != 0 and words in result.stderr, result.stderr
