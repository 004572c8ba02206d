"""Benchmark: seconds from `kubectl apply` to Ready (Succeeded for a TrainingJob) per kind on the local
control plane, then a burst of resources at once; the operator's memory, API requests and writes.

    make bench            (or: .venv/bin/python e2e/bench_operator.py [--repeat 5] [--burst 30])

Prints figures; asserts nothing. kwok completes Job pods after 3 s, which bounds the Job-based kinds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import cluster  # noqa: E402
from harness import E2E_OPERATOR_CONFIG, Kubectl, Operator, condition, resource, stop_dev_operator  # noqa: E402 - e2e/ and e2e/controlplane/ are on sys.path only after the lines above

SPECS = {
    "ModelDeployment": {"model": {"uri": "s3://models/m/"}, "runtime": {"preset": "sklearn"},
                        "resources": {"cpu": "100m", "memory": "256Mi"}, "replicas": 2},
    "TrainingJob": {"image": "python:3.12", "resources": {"cpu": "1", "memory": "1Gi"}, "output": {"uri": "s3://m/"}},
    "FeatureView": {"entities": [{"name": "driver", "joinKey": "driver_id", "valueType": "INT64"}],
                    "features": [{"name": "conv_rate", "dtype": "FLOAT32"}],
                    "source": {"path": "s3://f/d.parquet", "timestampField": "event_timestamp"},
                    "serving": {"replicas": 1}},
}
PLURALS = {"FeatureView": "featureviews", "ModelDeployment": "modeldeployments", "TrainingJob": "trainingjobs"}


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def wait_ready(custom, kind, namespace, names, timeout=180.0) -> dict[str, float]:
    """Seconds until each named resource is Ready, polling the API every 100 ms."""
    started, done = time.monotonic(), {}
    while len(done) < len(names) and time.monotonic() - started < timeout:
        items = custom.list_namespaced_custom_object("mlplatform.dev", "v1alpha1", namespace, PLURALS[kind])["items"]
        for body in items:
            name = body["metadata"]["name"]
            if name in names and name not in done and condition(body, "Ready").get("status") == "True":
                done[name] = time.monotonic() - started
        time.sleep(0.1)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="sequential applies per kind")
    parser.add_argument("--burst", type=int, default=30, help="ModelDeployments applied at once")
    args = parser.parse_args()

    from kubernetes import client, config

    kubeconfig = str(cluster.Cluster().up())
    kubectl = Kubectl(kubeconfig)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    config_file = Path(tempfile.mkdtemp()) / "config.yaml"
    config_file.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    stop_dev_operator()  # one operator per cluster
    operator = Operator(kubeconfig, ROOT / ".run" / "bench-operator.log")
    operator.start(config_file)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", namespace)
    try:
        time.sleep(2)
        idle_rss = operator.rss_mib()
        print(f"operator RSS idle: {idle_rss:.0f} MiB")
        print(f"\nseconds from apply to Ready, {args.repeat} sequential applies per kind:")
        for kind, spec in SPECS.items():
            times = []
            for i in range(args.repeat):
                name = f"{kind.lower()[:5]}-{i}"
                kubectl.apply(resource(kind, name, spec), namespace)
                times.extend(wait_ready(custom, kind, namespace, {name}).values())
            print(f"  {kind:16} median {statistics.median(times):5.2f}  min {min(times):5.2f}  max {max(times):5.2f}"
                  f"  ({len(times)}/{args.repeat} Ready)")
        before = operator.metrics()
        names = {f"burst-{i}" for i in range(args.burst)}
        manifests = "---\n".join(yaml.safe_dump(resource("ModelDeployment", n, SPECS["ModelDeployment"]))
                                 for n in sorted(names))
        started = time.monotonic()
        kubectl.apply(manifests, namespace)
        done = wait_ready(custom, "ModelDeployment", namespace, names, timeout=300)
        elapsed = time.monotonic() - started
        after = operator.metrics()
        print(f"\nburst: {args.burst} ModelDeployments ({args.burst * 2} pods) applied at once: "
              f"{len(done)} Ready after {max(done.values()) if done else float('nan'):.1f}s "
              f"(median {statistics.median(done.values()) if done else float('nan'):.1f}s), measured over {elapsed:.1f}s")
        reconciles = metric(after, "mlplatform_reconcile_total") - metric(before, "mlplatform_reconcile_total")
        requests = metric(after, "mlplatform_api_requests_total") - metric(before, "mlplatform_api_requests_total")
        writes = metric(after, "mlplatform_status_writes_total") - metric(before, "mlplatform_status_writes_total")
        applies = metric(after, "mlplatform_child_applies_total") - metric(before, "mlplatform_child_applies_total")
        print(f"  reconciles {reconciles:.0f} ({reconciles / args.burst:.1f} per resource), API requests "
              f"{requests:.0f} ({requests / args.burst:.1f} per resource), status writes {writes / args.burst:.1f} "
              f"per resource, child applies {applies / args.burst:.1f} per resource")
        print(f"  operator RSS after: {operator.rss_mib():.0f} MiB; errors: "
              f"{metric(after, 'mlplatform_reconcile_errors_total'):.0f}")
        sample = custom.get_namespaced_custom_object("mlplatform.dev", "v1alpha1", namespace, "modeldeployments",
                                                     "burst-0")
        kopf_marks = [k for k in (sample["metadata"].get("annotations") or {}) if "kopf" in k or "mlplatform.dev/" in k]
        print(f"  annotations/finalizers the operator wrote on a resource: {kopf_marks or 'none'} / "
              f"{sample['metadata'].get('finalizers') or 'none'}")
    finally:
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
        operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
