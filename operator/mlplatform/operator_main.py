"""The operator process: informers fill the cache and the work queue; worker threads reconcile.

Start-up order, as client-go's: the informers list every watched kind; the workers start only when
every first listing is in the cache (and, with leader election, once this instance leads). Standbys
keep their informers running, so a takeover reconciles from a warm cache at once. A cache that does not
sync within --cache-sync-timeout, and a leader that loses its Lease, end the process at once (as
controller-runtime's manager does): the restart starts clean, and a deposed leader makes no further write.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from .api import API_VERSION, KINDS
from .config import OperatorConfig
from .controllers.base import Context
from .labels import OWNER_LABEL
from .metrics import Metrics
from .runtime.cache import Cache, Change, ResourceKey, owner_key_of
from .runtime.health import WorkerMonitor, serve_health
from .runtime.heap import HeapTrimmer, limit_malloc_arenas, malloc_trim
from .runtime.informer import Informer, Watched
from .runtime.kube import (
    CHILD_KINDS,
    FIELD_MANAGER,
    HANDOFF_FIELD_MANAGER,
    KUEUE_JOB_UID_LABEL,
    KUEUE_WORKLOADS,
    OPTIONAL_CHILD_KINDS,
    Kube,
    make_api_client,
)
from .runtime.leader import LeaderElector, LeaseSettings
from .runtime.loop import CHILD_EVENT_DELAY_SECONDS, enqueue, keys_for, process
from .runtime.settled import reports_settled
from .runtime.workers import ADJUST_EVERY_SECONDS, WorkerBounds, WorkerPool
from .runtime.workqueue import WorkQueue

log = logging.getLogger("mlplatform")

WORKLOADS = Watched(*KUEUE_WORKLOADS, KUEUE_JOB_UID_LABEL, optional=True)  # served only where Kueue is installed
WATCHED = [Watched(API_VERSION, kind.kind, kind.plural) for kind in KINDS.values()] + [
    Watched(api_version, kind, plural, OWNER_LABEL, optional=(api_version, kind) in OPTIONAL_CHILD_KINDS)
    # children: selected server-side by the owner label
    for (api_version, kind), plural in [*CHILD_KINDS.items(), (("v1", "Pod"), "pods")]] + [WORKLOADS]


def owner_of_workload(cache: Cache, workload: dict) -> ResourceKey | None:
    """Our resource whose Job Kueue made this Workload for: the Workload's owner reference names the Job, the
    Job (in the cache when it is ours) carries our owner label. None for the Workloads of others' Jobs."""
    meta = workload.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("apiVersion") != "batch/v1" or ref.get("kind") != "Job":
            continue
        job = cache.resource(("Job", meta.get("namespace"), ref.get("name")))
        if job is not None and job["metadata"].get("uid") == ref.get("uid"):
            return owner_key_of(job)
    return None


def on_change(ctx: Context, watched: Watched) -> Callable[[Change], None]:
    """What an informer calls for each change: a Workload's owner is found through its Job (the loop finds a
    child's owner by our label, which Workloads do not carry)."""
    if watched == WORKLOADS:
        def enqueue_owner_of_workload(change: Change) -> None:
            if (owner := owner_of_workload(ctx.cache, change.obj)) is not None:
                ctx.queue.add(owner, delay=CHILD_EVENT_DELAY_SECONDS,
                              first=reports_settled("Workload", change.obj))
        return enqueue_owner_of_workload
    return lambda change: enqueue(ctx, change)


@dataclass
class RunOptions:
    namespace: str | None = None
    metrics_port: int = 8080
    health_port: int = 8081
    bind_address: str = "127.0.0.1"
    workers: int = 4  # active at start; the pool moves between min_workers and max_workers with the load
    min_workers: int = 2
    max_workers: int = 12
    resync_seconds: float = 3600.0  # every cached resource enqueued again (client-go resync); 0: never
    relist_seconds: float = 600.0  # each kind listed again, replacing its cache content
    cache_sync_timeout: float = 120.0
    stuck_after_seconds: float = 300.0
    leader_election: LeaseSettings | None = None
    verbose: bool = False


def instance_identity() -> str:
    """The pod name in a cluster (downward API), else host and process; unique per process either way."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _worker(ctx: Context, index: int, pool: WorkerPool, may_run: threading.Event, stop: threading.Event,
            monitor: WorkerMonitor) -> None:
    name = f"reconcile-{index}"
    while not stop.is_set():
        if not may_run.wait(timeout=0.5) or not pool.wait_until_active(index, timeout=0.5):
            continue
        key = ctx.queue.get(timeout=0.5)
        if key is None:
            continue
        monitor.started(name)
        pool.started(index)
        try:
            process(ctx, key)
        finally:
            pool.finished(index)
            monitor.finished(name)
            ctx.queue.done(key)


def follow_the_queue(ctx: Context, pool: WorkerPool, stop: threading.Event) -> None:
    """Every tick: the worker count for the queue's depth, the pool's metrics, and a heap trim once idle."""
    counted = 0.0
    heap = HeapTrimmer(malloc_trim())
    while not stop.wait(ADJUST_EVERY_SECONDS):
        due = ctx.queue.due_count()
        load = pool.adjust(due)
        ctx.metrics.workers.set(pool.active)
        ctx.metrics.api_write_slowdown.set(load.api_slowdown)
        ctx.metrics.worker_busy_seconds.inc(pool.busy_seconds_total - counted)
        heap.observe(working=due > 0 or pool.busy_seconds_total > counted)
        counted = pool.busy_seconds_total


def exit_now(code: int) -> None:
    """End the process without running another line of any thread (a worker mid-reconcile included)."""
    logging.shutdown()
    os._exit(code)


def resync(ctx: Context, stop: threading.Event, every_seconds: float) -> None:
    """client-go's resync: every cached resource is reconciled again, without an API call."""
    while not stop.wait(every_seconds):
        for kind in KINDS:
            for body in ctx.cache.resources(kind):
                ctx.queue.add((kind, body["metadata"]["namespace"], body["metadata"]["name"]))


# A ModelDeployment's children (Service, Deployment, PDB, HPA, route) go out together: threads for that
# many writes per worker, and as many connections.
WRITES_PER_WORKER = 4

def run_operator(config: OperatorConfig, options: RunOptions) -> int:
    limit_malloc_arenas()
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("leaderelection").setLevel(logging.INFO if options.verbose else logging.WARNING)
    identity = instance_identity()
    informer_count = len(WATCHED)
    bounds = WorkerBounds(options.min_workers, options.workers, options.max_workers)
    writer_count = bounds.maximum * WRITES_PER_WORKER
    api_client = make_api_client(pool_size=writer_count + bounds.maximum + informer_count + 4,
                                 user_agent=f"mlplatform-operator/{identity}")
    kube = Kube(api_client)
    metrics = Metrics()
    metrics.count_api_calls(lambda: kube.requests)
    # MLPLATFORM_BENCH_UNTRIMMED_CACHE=1: whole objects in the cache, the baseline of e2e/bench_memory.py.
    cache = Cache(managers=(FIELD_MANAGER, HANDOFF_FIELD_MANAGER),
                  trimmed=os.environ.get("MLPLATFORM_BENCH_UNTRIMMED_CACHE") != "1")
    queue = WorkQueue()
    writers = ThreadPoolExecutor(max_workers=writer_count, thread_name_prefix="write")
    ctx = Context(kube=kube, cache=cache, config=config, queue=queue, metrics=metrics, writers=writers)
    metrics.observe_loop(queue, cache)

    def handler_failed(change, err: Exception) -> None:
        metrics.handler_errors.labels(change.kind).inc()
        for key in keys_for(change):
            queue.add(key, delay=1.0)

    informers = [Informer(kube, cache, watched, options.namespace, on_change(ctx, watched),
                          options.relist_seconds, on_relist=metrics.count_relist, on_handler_error=handler_failed)
                 for watched in WATCHED]
    may_run = threading.Event()  # synced and leading
    stop = threading.Event()
    monitor = WorkerMonitor(options.stuck_after_seconds)

    def unsynced() -> list[str]:
        return [f"informer {i.watched.plural}: initial list not complete" for i in informers
                if not i.synced.is_set() and not i.watched.optional]

    def unhealthy() -> list[str]:
        dead = [f"informer {i.watched.plural} stopped" for i in informers if not i.thread.is_alive()]
        return dead + monitor.stuck()

    metrics.serve(options.metrics_port, options.bind_address)
    serve_health(options.bind_address, options.health_port, healthy=unhealthy, ready=unsynced)
    for informer in informers:
        informer.start()

    def start_leading() -> None:
        deadline = time.monotonic() + options.cache_sync_timeout
        for informer in informers:
            if not informer.watched.optional and not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                log.error("%s: the cache did not sync within --cache-sync-timeout=%gs (%s); exiting", identity,
                          options.cache_sync_timeout, "; ".join(unsynced()))
                exit_now(1)
        log.info("%s is leading: reconciling every resource in the cache", identity)
        metrics.leader.set(1)
        for kind in KINDS:
            for body in cache.resources(kind):
                queue.add((kind, body["metadata"]["namespace"], body["metadata"]["name"]))
        may_run.set()

    def stop_leading() -> None:
        kube.fence()  # no write leaves this process from now on, whatever a worker is in the middle of
        may_run.clear()
        metrics.leader.set(0)
        log.error("%s lost the lease: exiting so that only the new leader writes", identity)
        exit_now(1)

    elector = None
    if options.leader_election:
        elector = LeaderElector(api_client, options.leader_election, identity, start_leading, stop_leading)
        kube.guard_writes(elector.write_refusal)
        elector.start()
        log.info("%s is a candidate for lease %s/%s", identity, options.leader_election.namespace,
                 options.leader_election.name)
    else:
        threading.Thread(target=start_leading, name="start", daemon=True).start()

    if options.resync_seconds > 0:
        threading.Thread(target=resync, args=(ctx, stop, options.resync_seconds), name="resync", daemon=True).start()
    pool = WorkerPool(bounds)
    kube.write_round_trip = pool.round_trips.observe
    metrics.workers.set(pool.active)
    threads = [threading.Thread(target=_worker, args=(ctx, i, pool, may_run, stop, monitor),
                                name=f"reconcile-{i}", daemon=True) for i in range(bounds.maximum)]
    for thread in threads:
        thread.start()
    threading.Thread(target=follow_the_queue, args=(ctx, pool, stop), name="workers", daemon=True).start()
    log.info("mlplatform operator %s watching %s; metrics on %s:%d, health on %s:%d", identity,
             options.namespace or "all namespaces", options.bind_address, options.metrics_port,
             options.bind_address, options.health_port)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        queue.shutdown()
        for informer in informers:
            informer.stop()
        for thread in threads:
            thread.join(timeout=5)
        if elector is not None and may_run.is_set():
            elector.release()  # after the workers stopped: the next leader never overlaps our writes
    return 0
