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
sys.path.insert(0, str(ROOT / "e2e"))

import cluster  # noqa: E402 - e2e/ and e2e/controlplane/ are on sys.path only after the lines above
from bench_scale import Bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=300, help="Services created per concurrency")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--keep-cluster", action="store_true")
    args = parser.parse_args()
    local = cluster.Cluster(ROOT / ".run" / "svc-cluster")
    bench = Bench(str(local.up()), local)
    namespace = bench.create_namespace("svc")
    owner = bench.client.CoreV1Api(bench.api_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "owner"}})
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
                 "controller": True, "blockOwnerDeletion": True}

    def apply_service(name: str, owned: bool) -> float:
        meta = {"name": name, "labels": {"app": name}, **({"ownerReferences": [owner_ref]} if owned else {})}
        started = time.perf_counter()
        bench.apply_ssa({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                         "spec": {"type": "ClusterIP", "selector": {"app": name},
                                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
                        namespace)
        return time.perf_counter() - started

    def line(label: str, seconds: list[float], elapsed: float) -> str:
        seconds = sorted(seconds)
        return (f"  {label:<32} p50 {statistics.median(seconds) * 1000:6.1f} ms  "
                f"p90 {seconds[int(0.9 * len(seconds))] * 1000:6.1f} ms  {len(seconds) / elapsed:6.1f} creates/s")

    try:
        print(f"{args.creates} Service creates each (server-side apply, as kubectl would), namespace {namespace}:")
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
