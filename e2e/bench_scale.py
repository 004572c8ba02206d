"""Scale benchmark: N ModelDeployments through the operator against the Kubernetes floor, in ONE run.

    make bench BENCH_N=300,1000      (or: .venv/bin/python e2e/bench_scale.py --n 300,1000)

On a fresh local control plane of its own (.run/bench-cluster, with enough simulated CPU nodes for every
pod of the run; stopped at the end unless --keep-cluster):
  1. floor: the N ModelDeployments rendered with `mlplatform render` and their children applied directly
     by FLOOR_APPLIERS (4) concurrent `kubectl apply --server-side`, each a quarter of the models (no
     operator involved), the fastest plain client; Ready = the Deployment available. The serial floor of
     earlier runs (one kubectl for everything) is measured too, labelled, for continuity.
  2. operator: the same N ModelDeployments applied (by FLOOR_APPLIERS concurrent `kubectl apply`, as the
     floor's children) and reconciled by the operator;
     Ready = the Ready condition. Ratio ours/floor (the parallel floor) of the time to all-Ready,
     p50/p99 apply->Ready.
  3. API writes per resource from the kube-apiserver's own `apiserver_request_total` (by verb and
     resource), for both phases; 60 s idle; 30 s after an operator restart.
  4. a steady arrival rate (default 10 ModelDeployments/s for 60 s), floor and operator: p99 apply->Ready.
  5. memory: the operator's RSS with --memory-n resources (default 5,000) in its namespace: what the
     phases above left, topped up with suspended ModelDeployments (a Deployment at 0 replicas, no pods),
     then again after a restart.
Writes a markdown summary, the figures as JSON and a PNG of apply->Ready over time into .run/bench/.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlplatform.labels import OWNER_LABEL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "controlplane"))
sys.path.insert(0, str(ROOT / "e2e"))

import cluster  # noqa: E402
from audit import AuditLog, summary  # noqa: E402
from harness import E2E_OPERATOR_CONFIG, Kubectl, Operator, resource  # noqa: E402 - e2e/ and e2e/controlplane/ are on sys.path only after the lines above
from machine_cpu import cores_between, describe, process_cpu_seconds, snapshot  # noqa: E402

OUT = ROOT / ".run" / "bench"
CONFIG = OUT / "operator-config.yaml"
MODEL = {"model": {"uri": "s3://models/m/"}, "runtime": {"preset": "sklearn"},
         "resources": {"cpu": "100m", "memory": "256Mi"}, "replicas": 2}
RATE_MODEL = {**MODEL, "replicas": 1}
SUSPENDED_MODEL = {**RATE_MODEL, "suspend": True}
PODS_PER_NODE = 300  # a simulated CPU node holds 400 pods, but CPU for only 320 of these (32 CPUs, 100m each)
MEMORY_APPLY_RATE = 50.0  # ModelDeployments per second added for the memory figure
APPLIERS = 32  # threads applying at a steady rate: one slow apply must not delay the next slots
FLOOR_APPLIERS = 4  # concurrent server-side applies of the floor
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
# What the apiserver writes on its own or for the simulated nodes, whoever runs: not the workload's.
BACKGROUND = {"leases", "nodes"}
PLURAL = {"Deployment": ("apis/apps/v1", "deployments"), "Service": ("api/v1", "services"),
          "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
          "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
          "ModelDeployment": ("apis/mlplatform.dev/v1alpha1", "modeldeployments")}


# ----------------------------------------------------------------------------------------- figures

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def write_counts(metrics_text: str) -> Counter:
    """apiserver_request_total of write verbs, summed by (verb, resource[/subresource])."""
    counts: Counter = Counter()
    for labels, value in re.findall(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", metrics_text, re.M):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if lab.get("verb") in WRITE_VERBS and lab.get("resource") not in BACKGROUND:
            res = lab["resource"] + (f"/{lab['subresource']}" if lab.get("subresource") else "")
            counts[(lab["verb"], res)] += float(value)
    return counts


@dataclass
class Phase:
    name: str
    n: int
    ready_s: dict[str, float] = field(default_factory=dict)  # resource -> seconds from its apply
    ready_at: list[float] = field(default_factory=list)      # seconds since the phase started, per Ready
    wall_s: float = float("nan")                             # first apply -> last Ready
    writes: Counter = field(default_factory=Counter)
    operator_writes: dict[str, int] = field(default_factory=dict)  # the audit log's, by verb and resource
    operator_cpu_s: float | None = None
    cores: dict[str, float] = field(default_factory=dict)   # busy cores over the phase: the machine's, by process

    def summary(self) -> dict:
        latencies = list(self.ready_s.values())
        return {"n": self.n, "ready": len(latencies), "all_ready_s": round(self.wall_s, 1),
                "p50_s": round(percentile(latencies, 50), 2), "p99_s": round(percentile(latencies, 99), 2),
                "writes": sum(self.writes.values()), "writes_per_resource": round(sum(self.writes.values()) / self.n, 2),
                "operator_writes": self.operator_writes,
                "operator_writes_per_resource": round(sum(self.operator_writes.values()) / self.n, 2),
                "operator_cpu_s": self.operator_cpu_s, "cores": self.cores}


# ------------------------------------------------------------------------------------ the cluster

class Bench:
    def __init__(self, kubeconfig: str, local: cluster.Cluster):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.kubectl = Kubectl(kubeconfig)
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = APPLIERS  # one connection per applier thread
        self.api_client = client.ApiClient(configuration)
        self.client = client
        self.local = local
        self.operator: Operator | None = None  # the running one, whose CPU the phases report
        st = cluster.State.load(local.run)
        self.admin = cluster.Api(local.run, st.ports["apiserver"])
        self.audit = AuditLog(local.audit_log)

    def apiserver_writes(self) -> Counter:
        status, text = self.admin.request("GET", "/metrics", timeout=30)
        assert status == 200, f"apiserver /metrics: HTTP {status}"
        return write_counts(text)

    def processes(self) -> dict[str, int]:
        """The control plane's processes, this benchmark's and the operator's, by name."""
        pids = {**self.local.pids(), "bench": os.getpid()}
        if self.operator is not None and self.operator.process is not None:
            pids["operator"] = self.operator.process.pid
        return pids

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.kubectl.run("create", "namespace", name)
        return name

    def apply_ssa(self, obj: dict, namespace: str) -> None:
        """One server-side apply, as kubectl would (field manager kubectl)."""
        prefix, plural = PLURAL[obj["kind"]]
        name = obj["metadata"]["name"]
        request = self.api_client.param_serialize(
            "PATCH", f"/{prefix}/namespaces/{namespace}/{plural}/{name}",
            query_params=[("fieldManager", "kubectl"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=obj, auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request, _request_timeout=30)
        response.read()
        assert response.status in (200, 201), f"apply {obj['kind']}/{name}: HTTP {response.status} {response.data[:300]!r}"

    def watch_ready(self, namespace: str, kind: str, names: set[str], started: dict[str, float],
                    phase: Phase, t0: float, stop: threading.Event) -> threading.Thread:
        """A thread that records, from one watch, when each named object first turns Ready."""
        from kubernetes import watch

        def is_ready(obj: dict) -> bool:
            if kind == "Deployment":
                spec, status = obj.get("spec", {}), obj.get("status", {})
                return (status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
                        and status.get("availableReplicas", 0) >= spec.get("replicas", 1)
                        and status.get("updatedReplicas", 0) >= spec.get("replicas", 1))
            conds = obj.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        if kind == "Deployment":
            apps = self.client.AppsV1Api(self.api_client)
            list_fn, kwargs = apps.list_namespaced_deployment, {"namespace": namespace}
        else:
            custom = self.client.CustomObjectsApi(self.api_client)
            list_fn = custom.list_namespaced_custom_object
            kwargs = {"group": "mlplatform.dev", "version": "v1alpha1", "namespace": namespace,
                      "plural": "modeldeployments"}

        def run() -> None:
            while not stop.is_set() and len(phase.ready_s) < len(names):
                w = watch.Watch()
                try:
                    for event in w.stream(list_fn, timeout_seconds=300, _request_timeout=330, **kwargs):
                        obj = event["object"]
                        obj = obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)
                        name = obj["metadata"]["name"]
                        if name in names and name not in phase.ready_s and name in started and is_ready(obj):
                            now = time.monotonic()
                            phase.ready_s[name] = now - started[name]
                            phase.ready_at.append(now - t0)
                        if stop.is_set() or len(phase.ready_s) >= len(names):
                            break
                except Exception as err:  # noqa: BLE001 - a cut watch (any error of the stream): list and watch again
                    print(f"  (watch restarted: {type(err).__name__})", file=sys.stderr)
                finally:
                    w.stop()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def cpu_seconds(pid: int) -> float:
    seconds = process_cpu_seconds(pid)
    assert seconds is not None, f"process {pid} exited"
    return seconds


def rendered_children(models: list[dict], namespace: str) -> list[dict]:
    """`mlplatform render` of the ModelDeployments with the operator's configuration: the objects the
    operator would apply."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(models, f)
    out = subprocess.run([sys.executable, "-m", "mlplatform.cli", "render", "-f", f.name, "--config", str(CONFIG)],
                         check=True, capture_output=True, text=True).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    return objects


def models(names: list[str], namespace: str, spec: dict) -> list[dict]:
    return [{**resource("ModelDeployment", n, spec), "metadata": {"name": n, "namespace": namespace}} for n in names]


def wait_phase(phase: Phase, thread: threading.Thread, stop: threading.Event, timeout: float, t0: float) -> None:
    thread.join(timeout)
    stop.set()
    phase.wall_s = max(phase.ready_at) if len(phase.ready_s) == phase.n else time.monotonic() - t0


# -------------------------------------------------------------------------------------- the phases

def in_shares(objects: list[dict], shares: int) -> list[list[dict]]:
    """The objects in `shares` lists, each model's children together (by their owner label's name)."""
    def owner(obj: dict) -> str:
        return (obj["metadata"].get("labels") or {}).get(OWNER_LABEL) or obj["metadata"]["name"]
    models = sorted({owner(o) for o in objects})
    share_of = {m: i % shares for i, m in enumerate(models)}
    split: list[list[dict]] = [[] for _ in range(shares)]
    for obj in objects:
        split[share_of[owner(obj)]].append(obj)
    return [s for s in split if s]


def burst(bench: Bench, label: str, names: list[str], namespace: str, objects: list[dict], kind: str,
          timeout: float, appliers: int = 1) -> Phase:
    """Everything applied by `appliers` concurrent kubectl commands; Ready counted from their start."""
    phase, stop = Phase(label, len(names)), threading.Event()
    before, audit_offset = bench.apiserver_writes(), bench.audit.offset()
    cpu_before = snapshot(bench.processes())
    t0 = time.monotonic()
    started = dict.fromkeys(names, t0)
    thread = bench.watch_ready(namespace, kind, set(names), started, phase, t0, stop)
    commands = [threading.Thread(target=bench.kubectl.run, args=("apply", "--server-side", "-n", namespace, "-f", "-"),
                                 kwargs={"stdin": yaml.safe_dump_all(share), "timeout": 900})
                for share in in_shares(objects, appliers)]
    for command in commands:
        command.start()
    for command in commands:
        command.join()
    applied = time.monotonic() - t0
    wait_phase(phase, thread, stop, timeout, t0)
    phase.cores = cores_between(cpu_before, snapshot(bench.processes()))
    time.sleep(5)  # the last status writes and Events
    phase.writes = bench.apiserver_writes() - before
    phase.operator_writes = summary(bench.audit.writes(audit_offset, namespace))
    print(f"  {label}: kubectl apply took {applied:.1f}s; {len(phase.ready_s)}/{phase.n} Ready, "
          f"all after {phase.wall_s:.1f}s; {describe(phase.cores)}")
    return phase


def at_rate(bench: Bench, label: str, names: list[str], namespace: str, objects_by_name: dict[str, list[dict]],
            kind: str, rate: float, timeout: float) -> Phase:
    """Each resource's objects applied at its slot of a steady arrival rate (by a pool of appliers, so
    a slow apply does not hold the next); Ready counted from the slot."""
    from concurrent.futures import ThreadPoolExecutor

    phase, stop = Phase(label, len(names)), threading.Event()
    cpu_before = snapshot(bench.processes())
    t0 = time.monotonic()
    started: dict[str, float] = {}
    thread = bench.watch_ready(namespace, kind, set(names), started, phase, t0, stop)
    late = 0.0

    def apply_all(name: str) -> None:
        for obj in objects_by_name[name]:
            bench.apply_ssa(obj, namespace)

    with ThreadPoolExecutor(APPLIERS) as appliers:
        futures = []
        for i, name in enumerate(names):
            slot = t0 + i / rate
            wait = slot - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            started[name] = time.monotonic()
            futures.append(appliers.submit(apply_all, name))
        for future in futures:
            future.result()
    wait_phase(phase, thread, stop, timeout, t0)
    phase.cores = cores_between(cpu_before, snapshot(bench.processes()))
    print(f"  {label}: {len(names)} at {rate:g}/s (applies at most {late:.2f}s behind their slot); "
          f"{len(phase.ready_s)}/{phase.n} Ready; p50 {percentile(list(phase.ready_s.values()), 50):.2f}s "
          f"p99 {percentile(list(phase.ready_s.values()), 99):.2f}s; {describe(phase.cores)}")
    return phase


def window_writes(bench: Bench, seconds: float) -> Counter:
    before = bench.apiserver_writes()
    time.sleep(seconds)
    return bench.apiserver_writes() - before


# ------------------------------------------------------------------------------------------ output

def writes_table(floor: Phase, ours: Phase) -> list[str]:
    keys = sorted(set(floor.writes) | set(ours.writes), key=lambda k: (k[1], k[0]))
    rows = ["| resource | verb | floor / resource | operator / resource |", "|---|---|---:|---:|"]
    for verb, res in keys:
        rows.append(f"| {res} | {verb} | {floor.writes[(verb, res)] / floor.n:.2f} | {ours.writes[(verb, res)] / ours.n:.2f} |")
    rows.append(f"| **all** | | **{sum(floor.writes.values()) / floor.n:.2f}** | **{sum(ours.writes.values()) / ours.n:.2f}** |")
    return rows


def plot(phases: list[Phase], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for phase in phases:
        times = sorted(phase.ready_at)
        ax.plot(times, range(1, len(times) + 1), label=f"{phase.name} (all Ready {phase.wall_s:.0f}s)")
    ax.set_xlabel("seconds since the first apply")
    ax.set_ylabel("resources Ready")
    ax.set_title(f"{phases[0].n} ModelDeployments applied at once: floor vs operator")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def operator_load(operator: Operator) -> dict[str, float]:
    """The operator's own counters: reconciles, seconds spent in them (worker-seconds), CPU seconds."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10) as rsp:
        text = rsp.read().decode()
    def total(metric: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{metric}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))
    return {"reconciles": total("mlplatform_reconcile_total"),
            "worker_s": total("mlplatform_reconcile_duration_seconds_sum"),
            "cpu_s": cpu_seconds(operator.process.pid)}


def size_phases(bench: Bench, args, n: int, operator: Operator, ours_ns: str) -> dict:
    """One burst size: the serial floor, the parallel floor and the operator, each in namespaces of their own
    (the operator's: one for every size, the names prefixed by the size)."""
    names = [f"m{n}-{i:05d}" for i in range(n)]
    serial_ns = None if args.no_serial_floor else bench.create_namespace(f"floor-serial-{n}")
    floor_ns = bench.create_namespace(f"floor-{n}")
    print(f"\n{n} ModelDeployments ({MODEL['replicas']} replicas each) applied at once:")
    serial = None if args.no_serial_floor else burst(
        bench, "floor, serial (one kubectl)", names, serial_ns,
        rendered_children(models(names, serial_ns, MODEL), serial_ns), "Deployment", args.timeout)
    floor = burst(bench, f"floor ({FLOOR_APPLIERS} concurrent kubectl)", names, floor_ns,
                  rendered_children(models(names, floor_ns, MODEL), floor_ns), "Deployment", args.timeout,
                  appliers=FLOOR_APPLIERS)
    load0 = operator_load(operator)
    # The ModelDeployments applied by as many concurrent clients as the floor's children: the ratio compares
    # reconciling, not one kubectl's apply of N custom resources against four.
    ours = burst(bench, f"operator ({FLOOR_APPLIERS} concurrent kubectl)", names, ours_ns,
                 models(names, ours_ns, MODEL), "ModelDeployment", args.timeout, appliers=FLOOR_APPLIERS)
    load = {k: v - load0[k] for k, v in operator_load(operator).items()}
    ours.operator_cpu_s = round(load["cpu_s"], 1)
    figures = {"n": n, "floor": floor.summary(), "floor_serial": serial and serial.summary(), "operator": ours.summary(),
               "ratio": round(ours.wall_s / floor.wall_s, 2),
               "ratio_serial": serial and round(ours.wall_s / serial.wall_s, 2),
               "reconciles_per_resource": round(load["reconciles"] / n, 2), "worker_s": round(load["worker_s"], 1),
               "operator_rss_mib": round(operator.rss_mib()), "phases": (floor, ours, serial)}  # serial: None if skipped
    print(f"  ratio {figures['ratio']} (to the serial floor {figures['ratio_serial'] or 'not measured'}); "
          "the operator's own writes per resource "
          f"{figures['operator']['operator_writes_per_resource']} ({_per(ours.operator_writes, n)}); "
          f"reconciles per resource {figures['reconciles_per_resource']}; worker-seconds {figures['worker_s']} "
          f"against CPU seconds {ours.operator_cpu_s}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default=os.environ.get("BENCH_N") or "300,1000",
                        help="ModelDeployments per burst; several sizes comma-separated, each measured in this run")
    parser.add_argument("--rate", type=float, default=10.0, help="arrivals per second in the steady-rate phase (0: skip)")
    parser.add_argument("--rate-seconds", type=float, default=60.0)
    parser.add_argument("--memory-n", type=int, default=int(os.environ.get("BENCH_MEMORY_N") or 5000),
                        help="resources in the operator's namespace for the memory figure (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--restart-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per phase, seconds")
    parser.add_argument("--keep-cluster", action="store_true", help="leave .run/bench-cluster running afterwards")
    parser.add_argument("--operator-args", default=os.environ.get("BENCH_OPERATOR_ARGS") or "",
                        help="more `mlplatform run` flags for every operator of the run, e.g. '--max-workers 6'")
    parser.add_argument("--no-serial-floor", action="store_true", help="skip the serial floor (one kubectl)")
    args = parser.parse_args()
    more_flags = tuple(shlex.split(args.operator_args))
    sizes = [int(n) for n in str(args.n).split(",") if n.strip()]
    rate_n = int(args.rate * args.rate_seconds)
    pods = 3 * sum(sizes) * MODEL["replicas"] + 2 * rate_n + 1
    local = cluster.Cluster(ROOT / ".run" / "bench-cluster")
    local.down()  # a fresh etcd: nothing of an earlier run is deleted or counted during this one
    kubeconfig = str(local.up(cpu_nodes=max(cluster.DEFAULT_CPU_NODES, math.ceil(pods / PODS_PER_NODE) + 1)))
    bench = Bench(kubeconfig, local)
    bench.kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    OUT.mkdir(parents=True, exist_ok=True)
    config = CONFIG
    # The storage initializer's defaults (100Mi request) reserve no more than the model server asks for.
    config.write_text(yaml.safe_dump(E2E_OPERATOR_CONFIG))
    floor_ns, ours_ns = bench.create_namespace("bench-floor"), bench.create_namespace("bench-op")
    operator = bench.operator = Operator(kubeconfig, OUT / "operator.log", ("--namespace", ours_ns, *more_flags))
    operator.start(config)
    figures: dict = {"sizes": sizes, "cpu_nodes": cluster.State.load(local.run).cpu_nodes,
                     "operator_idle_rss_mib": round(operator.rss_mib()),
                     "operator_code": os.environ.get("PYTHONPATH") or "this checkout"}
    bursts: list[dict] = []
    try:
        for n in sizes:
            bursts.append(size_phases(bench, args, n, operator, ours_ns))
            figures["bursts"] = [{k: v for k, v in b.items() if k != "phases"} for b in bursts]
            save(figures)

        audit_offset = bench.audit.offset()
        idle = window_writes(bench, args.idle_seconds)
        idle_ours = summary(bench.audit.writes(audit_offset, ours_ns))
        operator.stop()
        operator = bench.operator = Operator(kubeconfig, OUT / "operator-restarted.log",
                                             ("--namespace", ours_ns, *more_flags))
        before, t0, audit_offset = bench.apiserver_writes(), time.monotonic(), bench.audit.offset()
        operator.start(config)
        figures["restart_ready_s"] = round(time.monotonic() - t0, 1)
        time.sleep(args.restart_seconds)
        restart = bench.apiserver_writes() - before
        figures.update(idle_writes=dict(_flat(idle)), idle_operator_writes=idle_ours,
                       restart_writes=dict(_flat(restart)),
                       restart_operator_writes=summary(bench.audit.writes(audit_offset, ours_ns)),
                       restart_cpu_s=round(cpu_seconds(operator.process.pid), 1))
        save(figures)
        print(f"  idle {args.idle_seconds:g}s: the operator's writes {figures['idle_operator_writes'] or 'none'}; "
              f"restart: {figures['restart_operator_writes'] or 'none'}")

        if rate_n:
            figures["rate"] = steady_rate(bench, args, rate_n, floor_ns, ours_ns)
            save(figures)

        if args.memory_n:
            figures["memory"] = memory(bench, operator, config, kubeconfig, ours_ns, args.memory_n, sum(sizes) + rate_n)
            operator = figures["memory"].pop("operator")
        report(figures, bursts)
    finally:
        operator.stop()
        if not args.keep_cluster:
            local.down()
    return 0


def steady_rate(bench: Bench, args, rate_n: int, floor_ns: str, ours_ns: str) -> dict:
    print(f"\nsteady arrival: {args.rate:g} ModelDeployments/s for {args.rate_seconds:g}s (1 replica each):")
    rate_names = [f"r{i:05d}" for i in range(rate_n)]
    rate_children = rendered_children(models(rate_names, floor_ns, RATE_MODEL), floor_ns)
    by_name: dict[str, list[dict]] = {n: [] for n in rate_names}
    for obj in rate_children:
        by_name[obj["metadata"]["name"]].append(obj)
    floor_rate = at_rate(bench, "floor", rate_names, floor_ns, by_name, "Deployment", args.rate, args.timeout)
    ours_rate = at_rate(bench, "operator", rate_names, ours_ns,
                        {m["metadata"]["name"]: [m] for m in models(rate_names, ours_ns, RATE_MODEL)},
                        "ModelDeployment", args.rate, args.timeout)
    return {"rate": args.rate, "seconds": args.rate_seconds,
            "floor": floor_rate.summary(), "operator": ours_rate.summary()}


def _flat(counts: Counter):
    return {f"{verb} {res}": int(v) for (verb, res), v in sorted(counts.items()) if v}


def memory(bench: Bench, operator: Operator, config: Path, kubeconfig: str, namespace: str, total: int,
           existing: int) -> dict:
    """Top the operator's namespace up to `total` ModelDeployments with suspended ones; RSS once all are Ready,
    and after a restart over the same state."""
    extra = max(0, total - existing)
    names = [f"s{i:05d}" for i in range(extra)]
    print(f"\nmemory: {existing} ModelDeployments with pods + {extra} suspended = {existing + extra}")
    phase = at_rate(bench, "operator (suspended)", names, namespace,
                    {m["metadata"]["name"]: [m] for m in models(names, namespace, SUSPENDED_MODEL)},
                    "ModelDeployment", MEMORY_APPLY_RATE, 1800) if names else None
    time.sleep(10)
    rss = operator.rss_mib()
    operator.stop()
    restarted = Operator(kubeconfig, OUT / "operator-memory.log", operator.extra_args)
    restarted.start(config)
    time.sleep(20)
    return {"resources": existing + extra, "with_pods": existing, "suspended": extra,
            "rss_mib": round(rss), "rss_after_restart_mib": round(restarted.rss_mib()),
            "suspended_all_ready_s": round(phase.wall_s, 1) if phase else None, "operator": restarted}


def save(figures: dict) -> None:
    (OUT / "scale.json").write_text(json.dumps(figures, indent=2, default=str))


def _per(counts: dict[str, int], n: int) -> str:
    return ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.items()))


def burst_lines(b: dict) -> list[str]:
    floor, ours, serial = b["phases"]
    f, o, fs = b["floor"], b["operator"], b["floor_serial"]
    n = b["n"]
    return [
        f"## {n} ModelDeployments applied at once", "",
        "| | all Ready | p50 apply->Ready | p99 apply->Ready | API writes / resource |", "|---|---:|---:|---:|---:|",
        f"| floor: children applied directly, {FLOOR_APPLIERS} concurrent kubectl | {f['all_ready_s']}s | {f['p50_s']}s "
        f"| {f['p99_s']}s | {f['writes_per_resource']} |",
        *([f"| floor, serial: one kubectl (earlier runs' floor) | {fs['all_ready_s']}s | {fs['p50_s']}s | {fs['p99_s']}s "
           f"| {fs['writes_per_resource']} |"] if fs else []),
        f"| operator | {o['all_ready_s']}s | {o['p50_s']}s | {o['p99_s']}s | {o['writes_per_resource']} |", "",
        f"**ratio operator/floor (all Ready): {b['ratio']}** (to the serial floor: {b['ratio_serial'] or 'not measured'}); "
        "the operator's own writes: "
        f"{o['operator_writes_per_resource']} per resource ({_per(o['operator_writes'], n)}; "
        f"from the apiserver's audit log, by user agent); {b['reconciles_per_resource']} reconciles per resource, "
        f"{b['worker_s']} worker-seconds in reconciles against {o['operator_cpu_s']} operator CPU seconds; "
        f"RSS {b['operator_rss_mib']} MiB", "",
        f"The machine during the parallel floor: {describe(f['cores'])}; during the operator's: {describe(o['cores'])}.", "",
        "Writes counted by the kube-apiserver (`apiserver_request_total`, write verbs, leases and nodes left out), "
        "per resource, everyone's (the controllers' pods, ReplicaSets and Events included):", "",
        *writes_table(floor, ours), "",
    ]


def report(figures: dict, bursts: list[dict]) -> None:
    lines = [
        f"# Scale bench: {', '.join(str(b['n']) for b in bursts)} ModelDeployments, floor vs operator (one run)", "",
        f"Local control plane, {figures['cpu_nodes']} simulated CPU nodes, {os.cpu_count()} cores; operator code: "
        f"{figures['operator_code']} (idle RSS {figures['operator_idle_rss_mib']} MiB).", "",
    ]
    for b in bursts:
        lines += burst_lines(b)
    lines += [
        f"Idle window: {sum(figures['idle_writes'].values())} writes in all ({figures['idle_writes'] or 'none'}), "
        f"the operator's {sum(figures['idle_operator_writes'].values())}; after an operator restart: "
        f"{sum(figures['restart_writes'].values())} in all ({figures['restart_writes'] or 'none'}), the operator's "
        f"{sum(figures['restart_operator_writes'].values())} (ready {figures['restart_ready_s']}s after start, "
        f"{figures['restart_cpu_s']} CPU s).", "",
    ]
    if "rate" in figures:
        r = figures["rate"]
        lines += [f"Steady arrival {r['rate']:g}/s for {r['seconds']:g}s: p50/p99 apply->Ready floor "
                  f"{r['floor']['p50_s']}/{r['floor']['p99_s']}s, operator {r['operator']['p50_s']}/{r['operator']['p99_s']}s "
                  f"({r['operator']['ready']}/{r['operator']['n']} Ready). The machine during the floor's phase: "
                  f"{describe(r['floor']['cores'])}; during the operator's: {describe(r['operator']['cores'])}.", ""]
    if "memory" in figures:
        m = figures["memory"]
        lines += [f"Memory with {m['resources']} ModelDeployments ({m['with_pods']} with pods, {m['suspended']} suspended): "
                  f"RSS {m['rss_mib']} MiB; after a restart over the same state {m['rss_after_restart_mib']} MiB.", ""]
    text = "\n".join(lines)
    (OUT / "scale.md").write_text(text)
    save(figures)
    for b in bursts:
        plot([p for p in b["phases"] if p is not None], OUT / f"scale-{b['n']}.png")
    print("\n" + text)
    print(f"written: {OUT / 'scale.md'}, {OUT / 'scale.json'}, " + ", ".join(str(OUT / f"scale-{b['n']}.png") for b in bursts))


if __name__ == "__main__":
    sys.exit(main())
