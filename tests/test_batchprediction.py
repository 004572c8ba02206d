"""BatchPrediction (issue 22): refusals (pydantic and the CRD's CEL), rendering per preset against the official
Kubernetes schemas, run status from the Indexed Job and the shards' termination messages, the reconciler
against the fake Kube (runs, pinning, scheduled runs), and the Argo CD health of its states."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from mlplatform.api import API_VERSION, KINDS
from mlplatform.api.validation import validate_document
from mlplatform.config import OperatorConfig
from mlplatform.controllers import CONTROLLERS
from mlplatform.crds import crd_for
from mlplatform.labels import JOB_COMPLETION_INDEX_LABEL, JOB_UID_LABEL, RUN_LABEL
from mlplatform.render import render_offline
from mlplatform.render.batchprediction import RUN_ANNOTATION, TRIGGER_LABEL, cronjob_name
from mlplatform.status.batchprediction import indexes, run_state, shard_rows

from .fake_kube import FakeKube
from .test_argocd_health import health
from .test_reconcilers import NS, Harness, key_of, model_deployment, resource, training_job
from .test_render import K8S_VERSION

CONFIG = OperatorConfig()


def bp(spec: dict | None = None, name: str = "scores", **fields) -> dict:
    base = {"model": {"uri": "s3://models/churn/v3/", "format": "sklearn"}, "runtime": {"preset": "sklearn"},
            "input": {"uri": "s3://lake/customers/"}, "output": {"uri": "s3://scores/churn/"}, "shards": 4}
    return {"apiVersion": API_VERSION, "kind": "BatchPrediction", "metadata": {"name": name, "namespace": NS},
            "spec": {**base, **(spec or {}), **fields}}


def problems_of(doc: dict) -> list[str]:
    return [str(p) for p in validate_document(doc)[1]]


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("change,expected", [
    ({"model": {"uri": "s3://m/", "fromTrainingJob": "t"}},
     "spec.model: set exactly one of model.uri, model.fromTrainingJob or model.fromModelDeployment"),
    ({"model": {"fromModelDeployment": "md", "fromTrainingJob": "t"}},
     "spec.model: set exactly one of model.uri, model.fromTrainingJob or model.fromModelDeployment"),
    ({"model": {}}, "spec.model: set exactly one of model.uri, model.fromTrainingJob or model.fromModelDeployment"),
    ({"model": {"fromModelDeployment": "md", "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}}},
     "spec.model.promotion: model.promotion needs model.fromTrainingJob"),
    ({"parallelism": 5}, "spec.parallelism: parallelism must be <= shards"),
    ({"shards": 0}, "spec.shards: found 0; allowed: >= 1"),
    ({"runtime": {"preset": "vllm"}, "model": {"uri": "hf://m/x", "format": "huggingface"},
      "input": {"uri": "s3://lake/prompts.parquet"}}, "spec.input.uri: input.uri must be OpenAI batch JSONL for the vllm preset"),
    ({"input": {"uri": "s3://lake/prompts.jsonl"}},
     "spec.input.uri: input.uri must be Parquet for the sklearn, xgboost and mlserver scorers"),
    ({"input": {"uri": "ftp://lake/x"}}, "spec.input.uri: found 'ftp://lake/x'; allowed: s3://, gs:// or pvc://"),
    ({"runtime": {"preset": "xgboost"}}, "spec.model.format: model.format must be one the preset's scorer reads"),
    ({"runtime": {"preset": "triton"}}, "spec.runtime.preset: found 'triton'"),
    ({"runtime": {"preset": "custom"}}, "spec.runtime.image: runtime.image is required when runtime.preset is custom"),
    ({"schedule": "every night"}, "spec.schedule: found 'every night'; allowed: a 5-field cron schedule"),
])
def test_refusals_name_the_field(change, expected):
    found = problems_of(bp(change))
    assert any(p.startswith(expected) for p in found), found


def test_the_crd_carries_the_same_rules_as_cel():
    crd = crd_for(KINDS["BatchPrediction"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [v["message"] for v in spec["x-kubernetes-validations"]]
    assert any("parallelism must be <= shards" in m for m in messages)
    assert any("OpenAI batch JSONL for the vllm preset" in m for m in messages)
    model_rules = spec["properties"]["model"]["x-kubernetes-validations"]
    assert model_rules[0]["rule"] == \
        "[has(self.uri), has(self.fromTrainingJob), has(self.fromModelDeployment)].filter(x, x).size() == 1"
    names = crd["spec"]["names"]
    assert (names["shortNames"], names["categories"]) == (["bp"], ["ml", "mlplatform"])
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Phase", "Shards", "Rows", "Model", "Age"]


def test_every_kind_has_a_controller_and_batch_predictions_follow_their_sources():
    assert "BatchPrediction" in CONTROLLERS
    h = Harness()
    h.add(resource("BatchPrediction", "a", bp({"model": {"fromTrainingJob": "t"}})["spec"]))
    h.add(resource("BatchPrediction", "b", bp({"model": {"fromModelDeployment": "md"}})["spec"]))
    assert CONTROLLERS["TrainingJob"].dependents(h.ctx, NS, "t") == [("BatchPrediction", NS, "a")]
    assert CONTROLLERS["ModelDeployment"].dependents(h.ctx, NS, "md") == [("BatchPrediction", NS, "b")]


# --- rendering --------------------------------------------------------------------------------------


def rendered(doc: dict, artifacts: dict | None = None) -> list[dict]:
    resource_, problems = validate_document(doc)
    assert problems == [], problems
    objects = render_offline(resource_, CONFIG, artifacts=artifacts).objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return objects


def job_of(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Job")


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


PRESETS = {
    "sklearn": {},
    "xgboost": {"model": {"uri": "s3://models/fraud/", "format": "xgboost"}, "runtime": {"preset": "xgboost"}},
    "mlserver": {"model": {"uri": "s3://models/fraud/", "format": "xgboost"}, "runtime": {"preset": "mlserver"}},
    "vllm": {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "format": "huggingface"},
             "runtime": {"preset": "vllm"}, "input": {"uri": "pvc://prompts/batch.jsonl"},
             "output": {"uri": "pvc://results/llm/"},
             "resources": {"memory": "32Gi", "gpu": {"count": 1, "type": "nvidia-l4"}}},
    "custom": {"runtime": {"preset": "custom", "image": "ghcr.io/acme/scorer:1", "command": ["python", "-m", "acme.score"]}},
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_renders_an_indexed_job_valid_against_the_kubernetes_schemas(preset):
    objects = rendered(bp(PRESETS[preset], schedule="0 2 * * *"))
    job = job_of(objects)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (2, 0)
    assert "backoffLimit" not in spec
    pod = spec["template"]["spec"]
    env = env_of(pod)
    assert env["SHARD_INDEX"] == {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["MLPLATFORM_RUN"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{RUN_ANNOTATION}']"}}
    assert spec["template"]["metadata"]["annotations"][RUN_ANNOTATION] == "1"
    names = [e["name"] for e in pod["containers"][0]["env"]]
    assert names.index("MLPLATFORM_RUN") < names.index("OUTPUT_URI")  # $(MLPLATFORM_RUN) is expanded
    assert {"SHARD_COUNT", "INPUT_URI", "OUTPUT_URI", "MODEL_DIR"} <= set(env) and env["SHARD_COUNT"] == "4"
    assert env["OUTPUT_URI"].endswith("/run-$(MLPLATFORM_RUN)/") or env["OUTPUT_URI"].endswith("/run-$(MLPLATFORM_RUN)")
    cronjob = next(o for o in objects if o["kind"] == "CronJob")
    assert cronjob["metadata"]["name"] == cronjob_name("scores")
    template = cronjob["spec"]["jobTemplate"]
    assert template["spec"]["suspend"] is True and RUN_ANNOTATION not in template["spec"]["template"]["metadata"]["annotations"]
    assert template["metadata"]["labels"][TRIGGER_LABEL] == "schedule"
    scorer = [o for o in objects if o["kind"] == "ConfigMap"]
    if preset == "custom":
        assert scorer == [] and pod["containers"][0]["command"] == ["python", "-m", "acme.score"]
    else:
        assert pod["containers"][0]["command"] == ["python3", "/opt/mlplatform/batch_score.py"]
        assert "def score_parquet_shard" in scorer[0]["data"]["batch_score.py"]
        assert {"name": "scorer", "mountPath": "/opt/mlplatform", "readOnly": True} in pod["containers"][0]["volumeMounts"]


def test_vllm_runs_on_gpu_nodes_with_its_claims_mounted():
    pod = job_of(rendered(bp(PRESETS["vllm"])))["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == CONFIG.runtimes["vllm"].image
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == CONFIG.gpu_types["nvidia-l4"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    env = env_of(pod)
    assert (env["INPUT_URI"], env["OUTPUT_URI"], env["PRESET"]) == (
        "/mnt/data/prompts/batch.jsonl", "/mnt/data/results/llm/run-$(MLPLATFORM_RUN)", "vllm")
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"].get("readOnly", False)
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"prompts": True, "results": False}
    cpu_pod = job_of(rendered(bp()))["spec"]["template"]["spec"]
    assert "tolerations" not in cpu_pod and "nodeSelector" not in cpu_pod
    assert cpu_pod["initContainers"][0]["args"] == ["s3://models/churn/v3/", "/mnt/models"]


def test_a_model_only_the_operator_can_resolve_withholds_the_job_offline():
    doc = bp({"model": {"fromTrainingJob": "fraud-train", "format": "sklearn"}})
    resource_, _ = validate_document(doc)
    out = render_offline(resource_, CONFIG)
    assert [o["kind"] for o in out.objects] == ["ConfigMap"] and "Job withheld" in out.notes[0]
    assert job_of(rendered(doc, {"fraud-train": "s3://models/fraud/run-2/"}))["metadata"]["annotations"][
        "mlplatform.dev/model-uri"] == "s3://models/fraud/run-2/"


# --- status from the Job ---------------------------------------------------------------------------


def shard_pod(job_uid: str, index: int, rows: int | None, phase: str = "Succeeded", message: str | None = None) -> dict:
    terminated = {"exitCode": 0 if phase == "Succeeded" else 1, "reason": "Completed" if phase == "Succeeded" else "Error"}
    if rows is not None or message is not None:
        terminated["message"] = message if message is not None else json.dumps({"shard": index, "rows": rows})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"scores-1-{index}-x{phase[0]}", "namespace": NS,
                         "labels": {JOB_UID_LABEL: job_uid, "app.kubernetes.io/component": "scorer",
                                    "mlplatform.dev/owner": "batchprediction.scores"},
                         "annotations": {JOB_COMPLETION_INDEX_LABEL: str(index)}},
            "status": {"phase": phase, "containerStatuses": [{"name": "scorer", "state": {"terminated": terminated}}]}}


def test_indexes_and_rows():
    assert indexes("0-3,5,7-8") == [0, 1, 2, 3, 5, 7, 8] and indexes(None) == []
    pods = [shard_pod("u", 0, 100), shard_pod("u", 1, 250), shard_pod("other", 2, 999),
            shard_pod("u", 3, None, message="not json"), shard_pod("u", 4, 7, phase="Failed")]
    assert shard_rows(pods, "u") == {0: 100, 1: 250}
    # kwok (and any writer of a bare {"rows": N}) leaves the shard to the pod's completion index
    assert shard_rows([shard_pod("u", 6, None, message='{"rows": 5}')], "u") == {6: 5}


def job(status: dict, uid: str = "u", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "scores-1", "namespace": NS, "uid": uid},
            "spec": {"backoffLimitPerIndex": 2, **spec}, "status": status}


def test_progress_then_success_then_failure_naming_the_shard():
    running = run_state(job({"active": 2, "completedIndexes": "0,2", "startTime": "t0"}),
                        [shard_pod("u", 0, 10), shard_pod("u", 2, 30)], 4, False, None)
    assert (running.phase, running.succeeded, running.rows) == ("Running", 2, 40)
    assert running.message == "2/4 shards scored, 2 running, 40 rows"
    done = run_state(job({"completedIndexes": "0-3", "completionTime": "t1",
                          "conditions": [{"type": "Complete", "status": "True"}]}),
                     [shard_pod("u", i, 10) for i in range(4)], 4, False, None)
    assert (done.phase, done.succeeded, done.rows, done.completion_time) == ("Succeeded", 4, 40, "t1")
    failed = run_state(job({"completedIndexes": "0-1", "failedIndexes": "2",
                            "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}),
                       [shard_pod("u", 2, None, phase="Failed", message="bad row")], 4, False, None)
    assert (failed.phase, failed.reason, failed.failed) == ("Failed", "ShardFailed", 1)
    assert failed.message.startswith("shard 2 failed after 3 attempts; pod scores-1-2-xF: container scorer exited "
                                     "with code 1 (Error): bad row")
    # rows never go back within a run (a succeeded shard's pod removed)
    assert run_state(job({"active": 1, "completedIndexes": "0"}), [], 4, False, {"rowsScored": 40}).rows == 40


# --- the reconciler --------------------------------------------------------------------------------


def status_of(h: Harness, body: dict) -> dict:
    return h.ctx.cache.resource(key_of(body)).get("status") or {}


def conditions_of(status: dict) -> dict:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def stored_job(h: Harness, name: str) -> dict | None:
    return h.kube.stored("batch/v1", "Job", NS, name)


def finish(h: Harness, name: str, shards: int, rows: int = 10) -> None:
    """The Job controller and the kubelet: every shard's pod succeeded and the Job is Complete."""
    live = stored_job(h, name)
    uid = live["metadata"]["uid"]
    for i in range(shards):
        pod = shard_pod(uid, i, rows)
        pod["metadata"]["name"] = f"{name}-{i}"
        h.add(pod)
    h.kube.update("batch/v1", "Job", NS, name, manager="job-controller",
                  status={"completedIndexes": f"0-{shards - 1}", "startTime": "2026-12-06T02:00:00Z",
                          "completionTime": "2026-12-06T02:10:00Z",
                          "conditions": [{"type": "Complete", "status": "True"}]})
    h.sync()


def test_a_run_pins_the_promoted_model_and_reports_shards_rows_and_lineage():
    h = Harness()
    trainer = training_job("fraud-train", status={
        "phase": "Succeeded", "run": 2, "artifactUri": "s3://models/trainer/run-2/", "artifactRun": 2,
        "runs": [{"run": 1, "phase": "Succeeded", "artifactUri": "s3://models/trainer/run-1/", "metrics": {"auc": 0.95}},
                 {"run": 2, "phase": "Succeeded", "artifactUri": "s3://models/trainer/run-2/", "metrics": {"auc": 0.7}}]})
    h.add(trainer)
    body = h.add(resource("BatchPrediction", "scores", bp({"model": {
        "fromTrainingJob": "fraud-train", "format": "sklearn",
        "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}}})["spec"]))
    h.reconcile(body)
    live = stored_job(h, "scores-1")
    assert live["metadata"]["annotations"]["mlplatform.dev/model-uri"] == "s3://models/trainer/run-1/"
    status = status_of(h, body)
    assert (status["phase"], status["run"], status["shardSummary"]) == ("Pending", 1, "0/4")
    assert status["lineage"] == {"trainingJob": "fraud-train", "run": 1, "artifactUri": "s3://models/trainer/run-1/"}
    assert status["outputUri"] == "s3://scores/churn/run-1/"
    finish(h, "scores-1", 4, rows=25)
    h.reconcile(body)
    status = status_of(h, body)
    assert (status["phase"], status["shards"], status["rowsScored"]) == (
        "Succeeded", {"total": 4, "succeeded": 4, "failed": 0}, 100)
    assert conditions_of(status)["Ready"] == ("True", "Succeeded")
    assert conditions_of(status)["Reconciling"][0] == "False" and conditions_of(status)["Stalled"][0] == "False"
    # a newer promoted run does not change the finished run's pin, and starts no run by itself
    h.kube.calls.clear()
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    assert [c for c in h.kube.writes() if c.kind == "Job"] == []


def test_waits_for_its_model_then_a_spec_edit_starts_a_new_run():
    h = Harness()
    body = h.add(resource("BatchPrediction", "scores", bp({"model": {"fromModelDeployment": "churn",
                                                                      "format": "sklearn"}})["spec"]))
    h.reconcile(body)
    status = status_of(h, body)
    assert status["phase"] == "Pending" and "run" not in status and stored_job(h, "scores-1") is None
    assert conditions_of(status)["Ready"] == ("False", "WaitingForModelDeployment")
    h.add(model_deployment("churn", status={"modelUri": "s3://models/churn/v3/"}))
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    assert stored_job(h, "scores-1")["metadata"]["annotations"]["mlplatform.dev/model-uri"] == "s3://models/churn/v3/"
    assert status_of(h, body)["lineage"] == {"modelDeployment": "churn", "artifactUri": "s3://models/churn/v3/"}
    # the deployment moves on: the running run keeps its pin
    h.add(model_deployment("churn", status={"modelUri": "s3://models/churn/v4/"}))
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    assert status_of(h, body)["modelUri"] == "s3://models/churn/v3/"
    # an edit of what a run computes starts run 2 (run 1 superseded, its unfinished Job pruned); schedule starts none
    edited = copy.deepcopy(h.ctx.cache.resource(key_of(body)))
    edited["spec"]["shards"] = 2
    h.replace(edited)
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    status = status_of(h, body)
    assert status["run"] == 2 and status["modelUri"] == "s3://models/churn/v4/"
    assert [r["phase"] for r in status["runs"]] == ["Superseded", "Pending"]
    assert stored_job(h, "scores-1") is None and stored_job(h, "scores-2")["spec"]["completions"] == 2
    edited = copy.deepcopy(h.ctx.cache.resource(key_of(body)))
    edited["spec"]["schedule"] = "0 2 * * *"
    h.replace(edited)
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    assert status_of(h, body)["run"] == 2
    assert h.kube.stored("batch/v1", "CronJob", NS, "scores-scheduled") is not None


def scheduled_job(h: Harness, name: str, cronjob: dict, suffix: str) -> dict:
    """What the CronJob controller creates at a tick: the template's Job, owned by the CronJob."""
    template = copy.deepcopy(cronjob["spec"]["jobTemplate"])
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {**template["metadata"], "name": f"{name}-{suffix}", "namespace": NS,
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "controller": True,
                                             "name": cronjob["metadata"]["name"], "uid": cronjob["metadata"]["uid"]}]},
           "spec": template["spec"]}
    return h.add(obj)


def test_a_scheduled_job_becomes_the_next_run_once_the_current_one_finished():
    h = Harness()
    body = h.add(resource("BatchPrediction", "scores", bp(schedule="*/5 * * * *")["spec"]))
    h.reconcile(body)
    h.sync()
    cronjob = h.kube.stored("batch/v1", "CronJob", NS, "scores-scheduled")
    tick = scheduled_job(h, "scores-scheduled", cronjob, "29420000")
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    # run 1 (the creation's) still going: the scheduled Job waits, suspended
    assert stored_job(h, tick["metadata"]["name"])["spec"]["suspend"] is True
    assert status_of(h, body)["run"] == 1
    finish(h, "scores-1", 4)
    h.reconcile(h.ctx.cache.resource(key_of(body)))  # run 1 recorded Succeeded ...
    assert status_of(h, body)["phase"] == "Succeeded"
    assert stored_job(h, tick["metadata"]["name"])["spec"]["suspend"] is True
    h.reconcile(h.ctx.cache.resource(key_of(body)))  # ... and its status write's reconcile starts the next run
    adopted = stored_job(h, tick["metadata"]["name"])
    assert adopted["spec"]["suspend"] is False
    assert adopted["metadata"]["labels"][RUN_LABEL] == "2"
    assert adopted["spec"]["template"]["metadata"]["annotations"][RUN_ANNOTATION] == "2"
    assert adopted["spec"]["template"]["spec"] == tick["spec"]["template"]["spec"]  # only the numbering changed
    status = status_of(h, body)
    assert status["run"] == 2 and status["runs"][-1]["trigger"] == "schedule"
    assert status["runs"][-1]["job"] == tick["metadata"]["name"] and status["outputUri"] == "s3://scores/churn/run-2/"
    assert stored_job(h, "scores-1") is not None  # a finished run's Job stays for its TTL
    assert status["phase"] == "Pending" and status["runs"][0]["phase"] == "Succeeded"


# --- Argo CD health ---------------------------------------------------------------------------------


def with_status(status: dict, **spec) -> dict:
    body = bp(**spec)
    body["metadata"]["generation"] = 1
    body["status"] = {"observedGeneration": 1, **status}
    return body


@pytest.mark.parametrize("phase,ready,stalled,expected", [
    ("Running", ("False", "ShardsRunning"), "False", "Progressing"),
    ("Succeeded", ("True", "Succeeded"), "False", "Healthy"),
    ("Failed", ("False", "ShardFailed"), "True", "Degraded"),
    ("Pending", ("False", "WaitingForModelDeployment"), "False", "Progressing"),
])
def test_argocd_health_of_batch_prediction_states(phase, ready, stalled, expected):
    body = with_status({"phase": phase, "conditions": [
        {"type": "Ready", "status": ready[0], "reason": ready[1], "message": f"run 1: {ready[1]}"},
        {"type": "Stalled", "status": stalled, "reason": "x", "message": "run 1: shard 2 failed"}]})
    result = health(body)
    assert result["status"] == expected
    suspended = with_status({"phase": "Suspended", "conditions": [
        {"type": "Ready", "status": "True", "reason": "Suspended", "message": "held"}]}, suspend=True)
    assert health(suspended)["status"] == "Suspended"


def test_fake_kube_lets_an_unstarted_suspended_job_take_template_metadata_only():
    kube = FakeKube()
    kube.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": NS},
                "spec": {"suspend": True, "template": {"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}}}})
    kube.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": NS},
                "spec": {"suspend": False, "template": {"metadata": {"annotations": {"b": "2"}}}}}, "other")
    template = kube.stored("batch/v1", "Job", NS, "j")["spec"]["template"]
    assert template == {"metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}}, "spec": {"x": 1}}
    with pytest.raises(Exception, match="immutable"):
        kube.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": NS},
                    "spec": {"template": {"metadata": {"annotations": {"b": "3"}}}}})


def test_a_spec_edit_stops_a_scheduled_run_still_going():
    h = Harness()
    body = h.add(resource("BatchPrediction", "scores", bp(schedule="*/5 * * * *")["spec"]))
    h.reconcile(body)
    h.sync()
    finish(h, "scores-1", 4)
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    tick = scheduled_job(h, "scores-scheduled", h.kube.stored("batch/v1", "CronJob", NS, "scores-scheduled"), "1")
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    assert status_of(h, body)["run"] == 2 and stored_job(h, tick["metadata"]["name"])["spec"]["suspend"] is False
    edited = copy.deepcopy(h.ctx.cache.resource(key_of(body)))
    edited["spec"]["input"] = {"uri": "s3://lake/customers/2026-12-06/"}
    h.replace(edited)
    h.reconcile(h.ctx.cache.resource(key_of(body)))
    status = status_of(h, body)
    assert status["run"] == 3 and [r["phase"] for r in status["runs"]] == ["Succeeded", "Superseded", "Pending"]
    assert stored_job(h, tick["metadata"]["name"]) is None and stored_job(h, "scores-3") is not None


def test_validate_and_render_on_the_command_line(tmp_path, capsys):
    from mlplatform import cli

    bad = bp(parallelism=9)
    (tmp_path / "bad.yaml").write_text(json.dumps(bad))
    assert cli.main(["validate", "-f", str(tmp_path / "bad.yaml")]) == 1
    assert "BatchPrediction/scores: spec.parallelism: parallelism must be <= shards" in capsys.readouterr().err
    (tmp_path / "good.yaml").write_text(json.dumps(bp({"model": {"fromModelDeployment": "churn-model"}})))
    assert cli.main(["render", "-f", str(tmp_path / "good.yaml"), "--artifact", "churn-model=s3://models/churn/v3/"]) == 0
    out = capsys.readouterr().out
    assert "kind: Job" in out and "name: scores-1" in out and "mlplatform.dev/model-uri: s3://models/churn/v3/" in out
