#!/usr/bin/env python3
"""Figures for the local control plane.

Prints:
  * cold build time per component, from the build log build.py records
    (``<cache>/build-log.jsonl``; a cold build is whatever built each binary last)
  * warm ``make cluster`` time: binaries cached, a fresh cluster in a temporary
    run dir (so a running shared cluster is not disturbed), until usable
  * idempotent ``make cluster`` time against the already running cluster (if any)
  * binary cache size
  * resident memory (RSS) of each control-plane process of the fresh cluster,
    and of the shared one if it runs

    .venv/bin/python e2e/controlplane/bench.py [--run-dir DIR] [--settle 10]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import cluster  # noqa: E402

REPO = HERE.parents[1]


def dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def report_rss(label: str, c: cluster.Cluster) -> None:
    pids = c.pids()
    if not pids:
        print(f"{label}: not running")
        return
    parts = {n: rss_kib(pid) for n, pid in pids.items()}
    total = sum(parts.values())
    detail = ", ".join(f"{n} {v / 1024:.0f}" for n, v in parts.items())
    print(f"{label}: RSS total {total / 1024:.0f} MiB ({detail} MiB)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", help="the shared cluster's run dir (default as cluster.py)")
    ap.add_argument("--settle", type=float, default=10,
                    help="seconds to let the fresh cluster settle before reading RSS")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh warm start")
    args = ap.parse_args()

    cache = build.cache_dir()
    print(f"binary cache: {cache}")
    log = cache / "build-log.jsonl"
    last: dict[str, dict] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            with_entry = json.loads(line)
            last[with_entry["component"]] = with_entry
    if last:
        total = sum(e["seconds"] for e in last.values())
        print(f"cold build (last build of each binary, {next(iter(last.values()))['cpus']} CPUs, "
              f"{next(iter(last.values()))['go']}): {total:.0f}s total")
        for n, e in last.items():
            print(f"  {n:<25} {e['seconds']:>6.0f}s  {e['bytes'] / 1e6:>5.0f} MB  ({e['at']})")
    else:
        print("cold build: no build log (binaries not built by build.py)")
    if not build.have_all():
        print("binaries missing: run `make cluster-build` first")
        return 1
    print(f"cache size: {dir_size(cache) / 1e6:.0f} MB")

    shared = cluster.Cluster(args.run_dir)
    if shared.is_running():
        t0 = time.monotonic()
        subprocess.run(["make", "-s", "cluster"] +
                       ([f"CLUSTER_DIR={shared.run}"] if args.run_dir else []),
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"make cluster, already running (idempotent): {time.monotonic() - t0:.1f}s")
        report_rss(f"shared cluster {shared.run}", shared)

    if not args.no_fresh:
        with tempfile.TemporaryDirectory(prefix="mlplatform-bench-") as tmp:
            run = Path(tmp) / "cluster"
            fresh = cluster.Cluster(run)
            try:
                t0 = time.monotonic()
                subprocess.run(["make", "-s", "cluster", f"CLUSTER_DIR={run}"], cwd=REPO,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                print(f"make cluster, warm (cached binaries, fresh cluster): "
                      f"{time.monotonic() - t0:.1f}s")
                time.sleep(args.settle)
                report_rss(f"fresh cluster after {args.settle:.0f}s", fresh)
            finally:
                fresh.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
