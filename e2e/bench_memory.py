"""Benchmark: the operator's memory with N ModelDeployments, its cache trimmed vs whole objects.

    make bench-memory            (or: .venv/bin/python e2e/bench_memory.py --n 1000)

One run on the local control plane: N ModelDeployments (1 replica each: a Deployment, a Service and a
pod per resource) created through the operator; then, over that same state, the operator restarted
with whole objects in its cache (the baseline) and restarted trimmed. RSS is read from /proc once the
restarted operator has reconciled every resource. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
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

MODEL = {"model": {"uri": "s3://models/m/"}, "runtime": {"preset": "sklearn"},
         "resources": {"cpu": "10m", "memory": "64Mi"}, "replicas": 1}
SETTLE_SECONDS = 10


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def ready_count(custom, namespace: str) -> int:
    items = custom.list_namespaced_custom_object("mlplatform.dev", "v1alpha1", namespace, "modeldeployments")["items"]
    return sum(condition(b, "Ready").get("status") == "True" for b in items)


def restarted(kubeconfig: str, config: Path, namespace: str, n: int, untrimmed: bool, label: str) -> dict:
    if untrimmed:
        os.environ["MLPLATFORM_BENCH_UNTRIMMED_CACHE"] = "1"
    try:
        op = Operator(kubeconfig, ROOT / ".run" / f"bench-memory-{label}.log", ("--namespace", namespace))
        t0 = time.monotonic()
        op.start(config)
        synced = time.monotonic() - t0
    finally:
        os.environ.pop("MLPLATFORM_BENCH_UNTRIMMED_CACHE", None)
    while metric(op.metrics(), "mlplatform_reconcile_total") < n:
        time.sleep(0.5)
    reconciled = time.monotonic() - t0
    time.sleep(SETTLE_SECONDS)
    text = op.metrics()
    figures = {"rss_mib": op.rss_mib(), "synced_s": synced, "reconciled_s": reconciled,
               "cached": int(metric(text, "mlplatform_cache_objects")),
               "status_writes": int(metric(text, "mlplatform_status_writes_total")),
               "applies": int(metric(text, "mlplatform_child_applies_total"))}
    op.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("N", "1000")), help="ModelDeployments")
    args = parser.parse_args()
    kubeconfig = str(cluster.Cluster().up())
    kubectl = Kubectl(kubeconfig)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    stop_dev_operator()
    from kubernetes import client
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config(config_file=kubeconfig)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    namespace = f"bench-memory-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", namespace)
    config = Path(tempfile.mkdtemp()) / "config.yaml"
    # The storage initializer's 1Gi request would not fit 1,000 pods on the simulated CPU nodes.
    config.write_text(yaml.safe_dump({**E2E_OPERATOR_CONFIG, "storageInitializer": {"memory": "64Mi", "cpu": "10m"}}))
    try:
        op = Operator(kubeconfig, ROOT / ".run" / "bench-memory-create.log", ("--namespace", namespace))
        op.start(config)
        idle_rss = op.rss_mib()
        t0 = time.monotonic()
        for start in range(0, args.n, 50):
            docs = [resource("ModelDeployment", f"m{i}", MODEL) for i in range(start, min(start + 50, args.n))]
            kubectl.run("apply", "--server-side", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs),
                        timeout=600)
        while ready_count(custom, namespace) < args.n:
            time.sleep(2)
        created_s = time.monotonic() - t0
        time.sleep(SETTLE_SECONDS)
        created_rss = op.rss_mib()
        op.stop()
        baseline = restarted(kubeconfig, config, namespace, args.n, untrimmed=True, label="untrimmed")
        trimmed = restarted(kubeconfig, config, namespace, args.n, untrimmed=False, label="trimmed")
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")
    print(f"\n{args.n} ModelDeployments (1 replica each) on the local control plane")
    print(f"  operator idle RSS {idle_rss:.0f} MiB; all Ready {created_s:.0f}s after the first apply; "
          f"RSS then {created_rss:.0f} MiB (trimmed cache)")
    for label, f in (("whole objects (baseline)", baseline), ("trimmed", trimmed)):
        print(f"  restart, cache {label:24s}: RSS {f['rss_mib']:.0f} MiB, {f['cached']} objects cached, "
              f"caches synced {f['synced_s']:.1f}s, all reconciled {f['reconciled_s']:.1f}s, "
              f"writes {f['status_writes']} status + {f['applies']} applies")
    saved = baseline["rss_mib"] - trimmed["rss_mib"]
    print(f"  trim saves {saved:.0f} MiB ({saved / baseline['rss_mib']:.0%} of the baseline's RSS), "
          f"{saved * 1024 / args.n:.0f} KiB per ModelDeployment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
