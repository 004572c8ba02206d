"""The console command, as users and CI call it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
        f"{bad}#2 ModelDeployment/bad-md: spec.autoscaling.minReplicas: autoscaling.minReplicas must be <= autoscaling.maxReplicas",
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
