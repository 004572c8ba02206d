"""Benchmark: the API server's CPU per write, for each write a ModelDeployment costs with and without the operator.

    .venv/bin/python e2e/bench_write_costs.py            (its own control plane: .run/write-costs-cluster)

Why it exists: `make bench`'s phases keep both cores of a 2-core machine busy, so what the operator adds per
ModelDeployment (the user's apply of the resource, its status patches, an Event) decides how far it falls
behind the floor (the children applied directly). For each kind of write this creates or patches --writes
objects, 4 in flight, waits until the API server is quiet again (the controllers' follow-up work, e.g. a
Deployment's ReplicaSet, counts to the write that caused it) and prints the kube-apiserver's and etcd's CPU
milliseconds per write. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import bench_scale  # noqa: E402 - e2e/ and e2e/controlplane/ are on sys.path only after the lines above
import cluster  # noqa: E402
from bench_scale import RATE_MODEL, Bench, models, rendered_children  # noqa: E402
from harness import E2E_OPERATOR_CONFIG  # noqa: E402
from machine_cpu import process_cpu_seconds  # noqa: E402

IN_FLIGHT = 4
QUIET_CORES = 0.05  # the API server's CPU share below which it counts as done with a write's follow-up work


def status_patch(ready: bool) -> dict:
    """A status as the operator writes it: Progressing after the first reconcile, then Ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"lastTransitionTime": now, "observedGeneration": 1}
    return {"status": {
        "observedGeneration": 1, "phase": "Ready" if ready else "Progressing", "modelUri": "s3://models/m/",
        "replicas": 1, "readyReplicas": int(ready), "desiredReplicas": 1, "replicaSummary": f"{int(ready)}/1 ready",
        "conditions": [
            {**condition, "type": "Ready", "status": str(ready), "reason": "Available" if ready else "Progressing",
             "message": f"{int(ready)}/1 replicas ready"},
            {**condition, "type": "Progressing", "status": str(not ready),
             "reason": "Available" if ready else "Rolling", "message": "rollout"},
            {**condition, "type": "Stalled", "status": "False", "reason": "Ok", "message": ""}]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=300, help="writes of each kind")
    parser.add_argument("--keep-cluster", action="store_true")
    args = parser.parse_args()
    local = cluster.Cluster(ROOT / ".run" / "write-costs-cluster")
    local.down()  # a fresh etcd
    bench = Bench(str(local.up()), local)
    bench.kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    bench_scale.OUT.mkdir(parents=True, exist_ok=True)
    bench_scale.CONFIG.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    pids = local.pids()
    namespace = bench.create_namespace("costs")
    names = [f"m{i:05d}" for i in range(args.writes)]
    resources = models(names, namespace, RATE_MODEL)
    children = rendered_children(resources, namespace)
    services = [o for o in children if o["kind"] == "Service"]
    deployments = [o for o in children if o["kind"] == "Deployment"]
    for deployment in deployments:
        deployment["spec"]["replicas"] = 0  # the Deployment's own cost, not its pods'
    api = bench.api_client

    def patch_status(name: str, ready: bool) -> None:
        path = f"/apis/mlplatform.dev/v1alpha1/namespaces/{namespace}/modeldeployments/{name}/status"
        response = api.call_api(*api.param_serialize(
            "PATCH", path, header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
            body=status_patch(ready), auth_settings=["BearerToken"]), _request_timeout=30)
        response.read()
        assert response.status == 200, f"status of {name}: HTTP {response.status} {response.data[:300]!r}"

    def post_event(name: str) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        bench.client.CoreV1Api(api).create_namespaced_event(namespace, {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": "mlplatform.dev/v1alpha1", "kind": "ModelDeployment", "name": name,
                               "namespace": namespace},
            "type": "Normal", "reason": "Available", "message": "Ready is True",
            "source": {"component": "mlplatform-operator"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1})

    def api_cpu() -> tuple[float, float]:
        return (process_cpu_seconds(pids["kube-apiserver"]) or 0.0), (process_cpu_seconds(pids["etcd"]) or 0.0)

    def wait_quiet() -> None:
        while True:
            before = api_cpu()[0]
            time.sleep(2.0)
            if api_cpu()[0] - before < 2.0 * QUIET_CORES:
                return

    writes = [
        ("ModelDeployment created (server-side apply: the user's)", "the user (operator phases only)",
         lambda i: bench.apply_ssa(resources[i], namespace)),
        ("Service created (server-side apply)", "floor and operator", lambda i: bench.apply_ssa(services[i], namespace)),
        ("Deployment created (server-side apply, 0 replicas)", "floor and operator",
         lambda i: bench.apply_ssa(deployments[i], namespace)),
        ("ModelDeployment status merge-patched: Progressing", "operator", lambda i: patch_status(names[i], False)),
        ("ModelDeployment status merge-patched: Ready", "operator", lambda i: patch_status(names[i], True)),
        ("Event created", "operator", lambda i: post_event(names[i])),
        ("Deployment applied again, unchanged", "nobody (the operator skips unchanged applies)",
         lambda i: bench.apply_ssa(deployments[i], namespace)),
    ]
    try:
        print(f"{args.writes} writes of each kind, {IN_FLIGHT} in flight; CPU until the API server is quiet again:")
        print(f"  {'write':<58} {'writes/s':>9} {'kube-apiserver':>15} {'etcd':>8}   who writes it")
        for label, who, write in writes:
            wait_quiet()
            (api_before, etcd_before), started = api_cpu(), time.perf_counter()
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                list(pool.map(write, range(args.writes)))
            elapsed = time.perf_counter() - started
            wait_quiet()
            api_after, etcd_after = api_cpu()
            print(f"  {label:<58} {args.writes / elapsed:9.0f} {1000 * (api_after - api_before) / args.writes:12.1f} ms "
                  f"{1000 * (etcd_after - etcd_before) / args.writes:5.1f} ms   {who}", flush=True)
    finally:
        if not args.keep_cluster:
            local.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
