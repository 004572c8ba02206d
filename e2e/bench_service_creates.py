"""Benchmark: Service creates against the local API server, one at a time and several in flight.

    .venv/bin/python e2e/bench_service_creates.py            (its own control plane: .run/svc-cluster)

Why it exists: in `make bench`'s 10/s phase the operator's Service applies took 0.3-1.3 s while its Deployment
applies took 0.05-0.08 s. This prints, for each concurrency, the p50/p90 latency of a server-side apply that
creates a ClusterIP Service (with and without an owner reference, one at a time) and the creates per second:
if the API server handles Service creates one after another, throughput stays flat as concurrency grows and
latency grows with it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))

import cluster  # noqa: E402 - e2e/controlplane is on sys.path only after the line above


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=300, help="Services created per concurrency")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--keep-cluster", action="store_true")
    args = parser.parse_args()
    from kubernetes import client, config

    local = cluster.Cluster(ROOT / ".run" / "svc-cluster")
    config.load_kube_config(str(local.up()))
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    namespace = f"svc-{int(time.time()) % 100000}"
    core.create_namespace({"metadata": {"name": namespace}})
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
                 "controller": True, "blockOwnerDeletion": True}

    def apply_service(name: str, owned: bool) -> float:
        meta = {"name": name, "labels": {"app": name}, **({"ownerReferences": [owner_ref]} if owned else {})}
        body = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"type": "ClusterIP", "selector": {"app": name},
                         "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
        request = api.param_serialize("PATCH", f"/api/v1/namespaces/{namespace}/services/{name}",
                                      query_params=[("fieldManager", "bench"), ("force", "true")],
                                      header_params={"Content-Type": "application/apply-patch+yaml",
                                                     "Accept": "application/json"},
                                      body=body, auth_settings=["BearerToken"])
        started = time.perf_counter()
        response = api.call_api(*request)
        response.read()
        return time.perf_counter() - started

    def line(label: str, seconds: list[float], elapsed: float) -> str:
        seconds = sorted(seconds)
        return (f"  {label:<32} p50 {statistics.median(seconds) * 1000:6.1f} ms  "
                f"p90 {seconds[int(0.9 * len(seconds))] * 1000:6.1f} ms  {len(seconds) / elapsed:6.1f} creates/s")

    try:
        print(f"{args.creates} Service creates each (server-side apply), namespace {namespace}:")
        for owned in (False, True):
            started = time.perf_counter()
            seconds = [apply_service(f"o{int(owned)}-{i}", owned) for i in range(args.creates)]
            print(line(f"one at a time, {'with' if owned else 'no'} owner ref", seconds, time.perf_counter() - started))
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            with ThreadPoolExecutor(concurrency) as pool:
                started = time.perf_counter()
                names = [f"c{concurrency}-{i}" for i in range(args.creates)]
                seconds = list(pool.map(lambda name: apply_service(name, True), names))
                print(line(f"{concurrency} in flight", seconds, time.perf_counter() - started))
    finally:
        if not args.keep_cluster:
            local.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
