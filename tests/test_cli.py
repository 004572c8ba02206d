"""The console command, as users and CI call it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]


def mlplatform(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlplatform.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT)


def test_validate_accepts_the_examples_directory():
    result = mlplatform("validate", "-f", "examples")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == len(list((ROOT / "examples").glob("*.yaml")))


def test_validate_reports_one_line_per_problem_with_document_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
apiVersion: mlplatform.dev/v1alpha1
kind: TrainingJob
metadata: {name: ok-train}
spec: {image: python:3.12}
---
apiVersion: mlplatform.dev/v1alpha1
kind: ModelDeployment
metadata: {name: bad-md}
spec:
  model: {uri: ftp://x}
  runtime: {preset: triton}
  autoscaling: {minReplicas: 4, maxReplicas: 2, targets: {cpuUtilization: 50}}
""")
    result = mlplatform("validate", "-f", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{bad}#2 ModelDeployment/bad-md: spec.model.uri: found 'ftp://x'; allowed: s3://, gs://, hf://, oci:// or pvc://<claim>/<path>",
        f"{bad}#2 ModelDeployment/bad-md: spec.autoscaling.minReplicas: "
        "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
    ]


def test_validate_reads_stdin_and_reports_yaml_errors():
    assert mlplatform("validate", "-f", "-", stdin=(ROOT / "examples/trainingjob-cpu.yaml").read_text()).returncode == 0
    broken = mlplatform("validate", "-f", "-", stdin="kind: [unclosed")
    assert broken.returncode == 1 and "<stdin>: not YAML" in broken.stderr
    missing = mlplatform("validate", "-f", "no/such/file.yaml")
    assert missing.returncode == 1 and "no/such/file.yaml: no such file or directory" in missing.stderr


def test_render_prints_every_child_as_multi_document_yaml():
    result = mlplatform("render", "-f", "examples/featureview-driver-stats.yaml", "-f", "examples/trainingjob-cpu.yaml")
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(kinds) == ["ConfigMap", "CronJob", "Deployment", "Job", "Job", "Service"]
    assert "# note: ownerReferences: added at apply time" in result.stdout


def test_render_says_plainly_what_is_only_known_at_run_time():
    result = mlplatform("render", "-f", "examples/modeldeployment-from-training.yaml")
    assert result.returncode == 0
    assert "has no artifact yet" in result.stdout
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout) if d] == ["Service"]
    preview = mlplatform("render", "-f", "examples/modeldeployment-from-training.yaml",
                         "--artifact", "fraud-train=s3://models/fraud/run-9/")
    assert "s3://models/fraud/run-9/" in preview.stdout and "HorizontalPodAutoscaler" in preview.stdout


def test_render_refuses_invalid_input_and_prints_no_half_output(tmp_path):
    docs = (ROOT / "examples/trainingjob-cpu.yaml").read_text() + "---\n" + \
        (ROOT / "examples/modeldeployment-gpu-vllm.yaml").read_text().replace("nvidia-h100-80gb", "nvidia-x999")
    (tmp_path / "m.yaml").write_text(docs)
    result = mlplatform("render", "-f", str(tmp_path / "m.yaml"))
    assert result.returncode == 1 and result.stdout == ""
    assert "spec.resources.gpu.type: found 'nvidia-x999'" in result.stderr


def test_render_with_a_config_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("storageInitializer: {image: registry.internal/storage-init:1}\n"
                      "gpuTypes: {nvidia-h100-80gb: {pool: h100}}\n")
    result = mlplatform("render", "-f", "examples/modeldeployment-gpu-vllm.yaml", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "registry.internal/storage-init:1" in result.stdout and "pool: h100" in result.stdout
    config.write_text("runtimes: {vllm: {port: 0}}\n")
    bad = mlplatform("render", "-f", "examples/modeldeployment-gpu-vllm.yaml", "--config", str(config))
    assert bad.returncode == 2 and "runtimes.vllm.image" in bad.stderr and "runtimes.vllm.port" in bad.stderr


# ---------------------------------------------------------------- validate on a GitOps folder

# kubernetes-validate is a test extra: the CLI schema-checks plain Kubernetes objects with it when installed.
SCHEMA = f"Kubernetes {'.'.join(kubernetes_validate.latest_version().split('.')[:2])} schema"

GITOPS_OTHERS = """
apiVersion: v1
kind: Namespace
metadata: {name: risk}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: team-settings, namespace: risk}
data: {owner: risk-ml}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: ml-examples, namespace: argocd}
spec: {project: default}
---
apiVersion: sagemaker.services.k8s.aws/v1alpha1
kind: TrainingJob
metadata: {name: not-ours, namespace: risk}
spec: {trainingJobName: x}
"""


def gitops_folder(tmp_path: Path) -> Path:
    """examples/ as a GitOps folder holds them: our kinds beside Namespaces, other objects and kustomize files."""
    folder = tmp_path / "gitops"
    (folder / "apps").mkdir(parents=True)
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        (folder / "apps" / example.name).write_text(example.read_text())
    (folder / "namespaces.yaml").write_text(GITOPS_OTHERS)
    (folder / "kustomization.yaml").write_text("resources:\n- namespaces.yaml\n- apps/\n")  # no apiVersion/kind
    return folder


def test_validate_a_gitops_folder_validates_ours_and_passes_over_the_rest(tmp_path):
    folder = gitops_folder(tmp_path)
    result = mlplatform("validate", "-f", str(folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(list((ROOT / "examples").glob("*.yaml"))) and all(": valid" in line for line in lines)
    assert "Namespace" not in result.stdout and "skipped" not in result.stdout, "others are listed only with -v"


def test_validate_verbose_lists_every_other_document_in_order(tmp_path):
    folder = gitops_folder(tmp_path)
    result = mlplatform("validate", "-v", "-f", str(folder))
    assert result.returncode == 0, result.stderr
    others = [line for line in result.stdout.splitlines() if "/apps/" not in line]
    assert others == [
        f"{folder}/kustomization.yaml#1: skipped (kustomize configuration)",
        f"{folder}/namespaces.yaml#1 Namespace/risk: valid ({SCHEMA})",
        f"{folder}/namespaces.yaml#2 ConfigMap/team-settings: valid ({SCHEMA})",
        f"{folder}/namespaces.yaml#3 Application/ml-examples: skipped (argoproj.io/v1alpha1 Application: "
        "not an mlplatform.dev kind, and not a built-in Kubernetes kind)",
        f"{folder}/namespaces.yaml#4 TrainingJob/not-ours: skipped (sagemaker.services.k8s.aws/v1alpha1 TrainingJob: "
        "not an mlplatform.dev kind, and not a built-in Kubernetes kind)",
    ]


def test_validate_schema_checks_plain_kubernetes_objects_when_kubernetes_validate_is_installed(tmp_path):
    folder = gitops_folder(tmp_path)
    (folder / "namespaces.yaml").write_text(GITOPS_OTHERS.replace("data: {owner: risk-ml}", "dat: {owner: risk-ml}"))
    result = mlplatform("validate", "-f", str(folder))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{folder}/namespaces.yaml#2 ConfigMap/team-settings: Additional properties are not allowed "
        f"('dat' was unexpected) ({SCHEMA})"]


def test_validate_without_kubernetes_validate_passes_the_others_over(tmp_path, monkeypatch, capsys):
    from mlplatform import cli

    monkeypatch.setattr(cli, "_kubernetes_validate", lambda: None)  # it is a test extra, not a dependency
    folder = gitops_folder(tmp_path)
    (folder / "namespaces.yaml").write_text(GITOPS_OTHERS.replace("data: {owner: risk-ml}", "dat: {owner: risk-ml}"))
    assert cli.main(["validate", "-v", "-f", str(folder)]) == 0
    out = capsys.readouterr().out
    assert (f"{folder}/namespaces.yaml#2 ConfigMap/team-settings: skipped (v1 ConfigMap: not an mlplatform.dev kind; "
            "install kubernetes-validate to schema-check it)") in out


def test_validate_still_refuses_a_document_that_is_no_kubernetes_object(tmp_path):
    folder = gitops_folder(tmp_path)
    (folder / "stray.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n"
                                       "metadata: {name: half}\nspec: {replicas: 1}\n---\nkind: Namespace\n")
    result = mlplatform("validate", "-f", str(folder))
    assert result.returncode == 1 and result.stdout == ""
    missing = "required field is missing: every document must be a Kubernetes object"
    assert result.stderr.splitlines() == [
        f"{folder}/stray.yaml#2 ?/half: apiVersion: {missing}",
        f"{folder}/stray.yaml#2 ?/half: kind: {missing}",
        f"{folder}/stray.yaml#3 Namespace/?: apiVersion: {missing}",
    ]


def test_validate_takes_our_kind_in_a_wrong_group_for_ours(tmp_path):
    """A typo in our apiVersion must not make a ModelDeployment pass unchecked as 'someone else's'."""
    bad = tmp_path / "typo.yaml"
    bad.write_text((ROOT / "examples/modeldeployment-sklearn-cpu.yaml").read_text()
                   .replace("mlplatform.dev/v1alpha1", "mlplatform/v1alpha1") + "---\n" +
                   (ROOT / "examples/trainingjob-cpu.yaml").read_text().replace("mlplatform.dev/v1alpha1", "v1"))
    result = mlplatform("validate", "-f", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}#1 ModelDeployment/") and lines[0].endswith(
        "apiVersion: found 'mlplatform/v1alpha1'; allowed: 'mlplatform.dev/v1alpha1'")
    assert lines[1] == f"{bad}#2 TrainingJob/fraud-train: apiVersion: found 'v1'; allowed: 'mlplatform.dev/v1alpha1'"


def test_render_of_a_gitops_folder_renders_ours_only(tmp_path):
    folder = gitops_folder(tmp_path)
    config = tmp_path / "config.yaml"  # the KEDA example's triggers and analysis query the cluster's Prometheus
    config.write_text("prometheus: {url: http://prometheus.monitoring.svc:9090}\n")
    result = mlplatform("render", "-f", str(folder), "--config", str(config))
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert "Namespace" not in kinds and "Application" not in kinds and {"Deployment", "Job"} <= kinds


# ---------------------------------------------------------------- issue 17: render = what the operator applies

def test_render_with_a_config_copies_the_pod_annotations_the_operator_copies(tmp_path):
    """podAnnotationPrefixes: the operator copies matching annotations of the resource onto its pods; render
    prints the same pod template (compared with the reconciler's apply against the fake Kube)."""
    from mlplatform.api.validation import validate_document
    from mlplatform.config import load_config
    from mlplatform.controllers import RECONCILERS

    from .fake_kube import FakeKube, make_context

    config = tmp_path / "config.yaml"
    config.write_text("podAnnotationPrefixes: [sidecar.istio.io/]\n")
    doc = yaml.safe_load((ROOT / "examples/modeldeployment-sklearn-cpu.yaml").read_text())
    doc["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false", "team": "risk"}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(doc))
    result = mlplatform("render", "-f", str(tmp_path / "md.yaml"), "--config", str(config))
    assert result.returncode == 0, result.stderr
    printed, = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"]
    assert printed["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert "team" not in printed["spec"]["template"]["metadata"]["annotations"]

    kube = FakeKube()
    ctx = make_context(kube)
    ctx.config = load_config(str(config))
    namespace = doc["metadata"].get("namespace", "default")
    body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace, "uid": "u1", "generation": 1}}
    assert validate_document(body)[1] == []
    ctx.cache.upsert("ModelDeployment", kube.put(body))
    RECONCILERS["ModelDeployment"](ctx, ("ModelDeployment", namespace, doc["metadata"]["name"]),
                                   ctx.cache.resource(("ModelDeployment", namespace, doc["metadata"]["name"])))
    applied = kube.stored("apps/v1", "Deployment", namespace, doc["metadata"]["name"])
    assert applied["spec"]["template"] == printed["spec"]["template"]


def test_render_prints_no_yaml_anchors_or_aliases():
    result = mlplatform("render", "-f", "examples/modeldeployment-llm-multinode.yaml")
    assert result.returncode == 0, result.stderr
    assert "&id" not in result.stdout and "*id" not in result.stdout


def test_validate_refuses_a_canary_of_multi_node_replicas_naming_both_fields(tmp_path):
    doc = yaml.safe_load((ROOT / "examples/modeldeployment-llm-multinode.yaml").read_text())
    doc["spec"]["rollout"] = {"canary": {"steps": [50]}}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(doc))
    result = mlplatform("validate", "-f", str(tmp_path / "md.yaml"))
    assert result.returncode == 1
    assert "rollout.canary" in result.stdout + result.stderr and "nodesPerReplica" in result.stdout + result.stderr
