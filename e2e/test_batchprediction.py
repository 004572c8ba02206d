"""BatchPrediction on the real control plane (kwok plays the kubelet: each shard's pod completes after a delay and
reports {"rows": N} as its termination message, as the scoring entrypoint does): a run from a TrainingJob's
promoted run is an Indexed Job whose progress moves shard by shard; vllm runs on GPU nodes; a shard that fails
its retries fails the run naming it; a schedule's CronJob Job becomes a numbered run."""

from __future__ import annotations

import json

import kstatus
from harness import condition, get_cr, resource, wait_condition

SHARD_ROWS = 1000


def shard_annotations(after: str = "4s") -> dict:
    return {"mlplatform.dev/kwok-complete-after": after,
            "mlplatform.dev/kwok-termination-message": json.dumps({"rows": SHARD_ROWS})}


def status_of(custom, namespace: str, name: str) -> dict:
    return get_cr(custom, "BatchPrediction", namespace, name).get("status") or {}


def shard_pods(core_v1, namespace: str, name: str) -> list:
    return core_v1.list_namespaced_pod(namespace, label_selector=f"mlplatform.dev/owner=batchprediction.{name}").items


def bp_spec(**extra) -> dict:
    spec = {"model": {"uri": "s3://models/churn/v3/", "format": "sklearn"}, "runtime": {"preset": "sklearn"},
            "input": {"uri": "s3://lake/customers/2026-12-05/"}, "output": {"uri": "s3://scores/churn/"},
            "shards": 4, "parallelism": 2, "resources": {"cpu": "500m", "memory": "512Mi"}}
    spec.update(extra)
    return spec


def test_a_run_from_a_promoted_training_run_reports_progress_shard_by_shard(
        operator, kubectl, custom, namespace, core_v1, batch_v1, wait_for):
    trainer = {"image": "ghcr.io/acme/train:1", "output": {"uri": "s3://models/fraud/"},
               "resources": {"cpu": "500m", "memory": "512Mi"}}
    kubectl.apply(resource("TrainingJob", "fraud-train", trainer, {
        "mlplatform.dev/kwok-complete-after": "2s", "mlplatform.dev/kwok-termination-message": '{"auc": 0.95}'}),
        namespace)
    wait_condition(wait_for, custom, "TrainingJob", namespace, "fraud-train", "Succeeded", "True", timeout=90)
    spec = bp_spec(model={"fromTrainingJob": "fraud-train", "format": "xgboost",
                          "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}},
                   runtime={"preset": "xgboost"})
    kubectl.apply(resource("BatchPrediction", "risk", spec, shard_annotations("5s")), namespace)

    seen: set[int] = set()
    during: list[str] = []

    def done():
        st = status_of(custom, namespace, "risk")
        succeeded = (st.get("shards") or {}).get("succeeded")
        if succeeded is not None:
            seen.add(succeeded)
            if 0 < succeeded < 4 and not during:
                during.append(kubectl.run("get", "bp", "-n", namespace).stdout)
        return st.get("phase") == "Succeeded" and st
    st = wait_for(done, timeout=120, what="the run to succeed")
    assert seen & {1, 2, 3}, f"progress seen: {sorted(seen)}"  # shards complete two at a time
    assert st["shards"] == {"total": 4, "succeeded": 4, "failed": 0} and st["shardSummary"] == "4/4"
    assert st["rowsScored"] == 4 * SHARD_ROWS
    assert st["lineage"] == {"trainingJob": "fraud-train", "run": 1, "artifactUri": "s3://models/fraud/run-1/"}
    assert st["modelUri"] == "s3://models/fraud/run-1/" and st["outputUri"] == "s3://scores/churn/run-1/"
    body = get_cr(custom, "BatchPrediction", namespace, "risk")
    assert condition(body, "Ready")["status"] == "True" and condition(body, "Stalled")["status"] == "False"
    assert kstatus.verdict(body).status == "Current"  # what Flux reads
    job = batch_v1.read_namespaced_job("risk-1", namespace)
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 4, 2)
    assert (job.spec.backoff_limit_per_index, job.spec.max_failed_indexes) == (2, 0)
    pods = [p for p in shard_pods(core_v1, namespace, "risk") if p.status.phase == "Succeeded"]
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2", "3"]
    for pod in pods:  # CPU pods on CPU nodes
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        # the kubelet expands $(MLPLATFORM_RUN), read from the pod's own annotation (downward API)
        assert env["OUTPUT_URI"] == "s3://scores/churn/run-$(MLPLATFORM_RUN)/"
        assert pod.metadata.annotations["mlplatform.dev/run"] == "1"
        assert not pod.spec.tolerations or all(t.key != "nvidia.com/gpu" for t in pod.spec.tolerations)
        node = core_v1.read_node(pod.spec.node_name)
        assert "nvidia.com/gpu.product" not in (node.metadata.labels or {})
    after = kubectl.run("get", "bp", "-n", namespace).stdout
    print("\n$ kubectl get bp (during)\n" + "".join(during) + "$ kubectl get bp (after)\n" + after)
    assert "Succeeded" in after and "4/4" in after and str(4 * SHARD_ROWS) in after and "s3://models/fraud/run-1/" in after
    events = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={body['metadata']['uid']}").items
    assert any(e.reason == "Succeeded" and e.type == "Normal" for e in events), [(e.reason, e.message) for e in events]


def test_vllm_scores_on_gpu_nodes(operator, kubectl, custom, namespace, core_v1, wait_for):
    spec = bp_spec(model={"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "format": "huggingface"},
                   runtime={"preset": "vllm"}, input={"uri": "s3://prompts/2026-12-05.jsonl"},
                   output={"uri": "s3://completions/support/"}, shards=2,
                   resources={"cpu": "4", "memory": "32Gi", "gpu": {"count": 1, "type": "nvidia-h100-80gb"}})
    kubectl.apply(resource("BatchPrediction", "llm", spec, shard_annotations("2s")), namespace)
    st = wait_for(lambda: (s := status_of(custom, namespace, "llm")).get("phase") == "Succeeded" and s, timeout=120,
                  what="the vllm run to succeed")
    assert st["rowsScored"] == 2 * SHARD_ROWS
    pods = shard_pods(core_v1, namespace, "llm")
    assert pods
    for pod in pods:
        node = core_v1.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
        assert {e.name: e.value for e in pod.spec.containers[0].env}["PRESET"] == "vllm"


def test_a_shard_failing_its_retries_fails_the_run_naming_it(operator, kubectl, custom, namespace, core_v1, wait_for):
    kubectl.apply(resource("BatchPrediction", "flaky", bp_spec(parallelism=4, backoffLimitPerIndex=1),
                           shard_annotations("300s")),
                  namespace)

    def running_index(index: str, not_uids: set[str]):
        for pod in shard_pods(core_v1, namespace, "flaky"):
            if (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index") == index \
                    and pod.status.phase == "Running" and pod.metadata.uid not in not_uids:
                return pod
        return None
    failed: set[str] = set()
    for attempt in (1, 2):  # the first failure is retried (backoffLimitPerIndex 1), the second fails the shard
        pod = wait_for(lambda: running_index("2", failed), timeout=90, what=f"shard 2's attempt {attempt} running")
        kubectl.run("annotate", f"pod/{pod.metadata.name}", "-n", namespace, "--overwrite",
                    "mlplatform.dev/kwok-fail=true", "mlplatform.dev/kwok-exit-code=1",
                    "mlplatform.dev/kwok-complete-after=1s", "mlplatform.dev/kwok-fail-message=bad row 17")
        failed.add(pod.metadata.uid)
    body = wait_condition(wait_for, custom, "BatchPrediction", namespace, "flaky", "Stalled", "True", timeout=90)
    st = body["status"]
    assert st["phase"] == "Failed" and st["shards"]["failed"] == 1
    message = condition(body, "Ready")["message"]
    assert message.startswith("run 1: shard 2 failed after 2 attempts"), message
    assert "bad row 17" in message
    assert kstatus.verdict(body).status == "Failed"


def test_a_schedule_makes_cronjob_runs_numbered_by_the_operator(operator, kubectl, custom, namespace, batch_v1,
                                                                 wait_for):
    kubectl.apply(resource("BatchPrediction", "nightly", bp_spec(shards=2, schedule="* * * * *"),
                           shard_annotations("2s")), namespace)
    cronjob = wait_for(lambda: batch_v1.read_namespaced_cron_job("nightly-scheduled", namespace), timeout=30,
                       what="the CronJob")
    assert cronjob.spec.job_template.spec.suspend is True and cronjob.spec.concurrency_policy == "Forbid"

    def scheduled_run_succeeded():
        st = status_of(custom, namespace, "nightly")
        runs = st.get("runs") or []
        return any(r.get("trigger") == "schedule" and r.get("phase") == "Succeeded" for r in runs) and st
    st = wait_for(scheduled_run_succeeded, timeout=180, what="a scheduled run to succeed")
    scheduled = next(r for r in st["runs"] if r["trigger"] == "schedule")
    assert st["runs"][0]["trigger"] == "spec" and st["runs"][0]["phase"] == "Succeeded"
    assert scheduled["run"] >= 2 and scheduled["job"].startswith("nightly-scheduled-")
    assert scheduled["rowsScored"] == 2 * SHARD_ROWS and scheduled["outputUri"] == f"s3://scores/churn/run-{scheduled['run']}/"
    job = batch_v1.read_namespaced_job(scheduled["job"], namespace)
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.spec.template.metadata.annotations["mlplatform.dev/run"] == str(scheduled["run"])


def test_the_api_server_refuses_what_validate_refuses_naming_the_field(crds, kubectl, namespace):
    cases = [
        (bp_spec(model={"uri": "s3://m/", "fromModelDeployment": "churn"}), "spec.model",
         "set exactly one of model.uri, model.fromTrainingJob or model.fromModelDeployment"),
        (bp_spec(parallelism=8), "spec.parallelism", "parallelism must be <= shards"),
        (bp_spec(model={"uri": "hf://m/x", "format": "huggingface"}, runtime={"preset": "vllm"},
                 input={"uri": "s3://prompts/day.parquet"}), "spec.input.uri",
         "input.uri must be OpenAI batch JSONL for the vllm preset"),
        (bp_spec(input={"uri": "s3://lake/day.jsonl"}), "spec.input.uri", "input.uri must be Parquet"),
        (bp_spec(runtime={"preset": "xgboost"}), "spec.model.format", "model.format must be one the preset's scorer reads"),
        (bp_spec(model={"fromModelDeployment": "churn", "promotion": {"metrics": [{"name": "auc", "min": 0.9}]}}),
         "spec.model.promotion", "model.promotion needs model.fromTrainingJob"),
    ]
    for i, (spec, field, message) in enumerate(cases):
        result = kubectl.apply(resource("BatchPrediction", f"bad-{i}", spec), namespace, check=False)
        assert result.returncode != 0, (field, message)
        assert f"{field}: Invalid value" in result.stderr and message in result.stderr, result.stderr
