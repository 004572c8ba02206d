"""Prometheus metrics: reconciles, errors and latency per kind, resources per phase, API calls, the
control loop itself (work queue depth and oldest item, leadership, cache objects per kind, re-lists), and
per resource what the dashboard and alerts read: Ready and phase, FeatureView staleness against its
budget, ModelDeployment ready vs desired replicas, TrainingJob runs by phase.

Per-resource series carry kind/namespace/name (and a bounded `phase` where named so), one set per
resource, dropped by forget() when the resource is deleted. Scrape them with honor_labels (the chart's
ServiceMonitor sets honorLabels) so that `namespace` stays the resource's, not the operator pod's."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

ResourceKey = tuple[str, str, str]  # kind, namespace, name


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, clock=time.time):
        self.registry = registry or CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        self._clock = clock
        self.reconciles = Counter("mlplatform_reconcile_total", "Reconciles by kind and result.",
                                  ["kind", "result"], registry=self.registry)
        self.errors = Counter("mlplatform_reconcile_errors_total", "Reconciles that raised, by kind.",
                              ["kind"], registry=self.registry)
        self.latency = Histogram("mlplatform_reconcile_duration_seconds", "Reconcile latency by kind.", ["kind"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.status_writes = Counter("mlplatform_status_writes_total", "Status subresource patches by kind.",
                                     ["kind"], registry=self.registry)
        self.applies = Counter("mlplatform_child_applies_total", "Server-side applies of children by child kind.",
                               ["kind"], registry=self.registry)
        self.leader = Gauge("mlplatform_leader", "1 while this instance holds the lease (or runs without leader "
                            "election), else 0.", registry=self.registry)
        self.handler_errors = Counter("mlplatform_informer_handler_errors_total", "Changes whose event handler "
                                      "failed (a bug: see the operator's error log); their keys were enqueued "
                                      "again.", ["kind"], registry=self.registry)
        self.relists = Counter("mlplatform_informer_relists_total", "Full listings that replaced a kind's cache "
                               "content, by kind and reason (initial, expired, periodic: every --relist-seconds, "
                               "error).", ["kind", "reason"], registry=self.registry)
        self.workers = Gauge("mlplatform_workers", "Workers allowed to reconcile at once now (the pool follows the "
                             "queue between --min-workers and --max-workers).", registry=self.registry)
        self.worker_busy_seconds = Counter("mlplatform_worker_busy_seconds", "Seconds workers spent in reconciles "
                                           "(against process CPU seconds: how much of a reconcile is waiting).",
                                           registry=self.registry)
        self.api_write_slowdown = Gauge("mlplatform_api_write_slowdown", "The last second's mean write round trip "
                                        "to the API server over the fastest of the last 10 minutes (1: as fast as "
                                        "it gets; from 3 the worker pool gives workers back).", registry=self.registry)
        self._queue = None
        self._cache = None
        self._phases: dict[ResourceKey, str] = {}
        self._ready: dict[ResourceKey, bool] = {}
        # Kind-specific values, as last reported by the resource's reconcile (see the set_* methods).
        self._workloads: dict[ResourceKey, dict] = {}
        self._lock = threading.Lock()
        self._api_calls = lambda: 0
        self.registry.register(_PhaseCollector(self))
        self.registry.register(_WorkloadCollector(self))

    def set_phase(self, kind: str, namespace: str, name: str, phase: str, ready: bool | None = None) -> None:
        """The phase and (when given) the Ready condition a reconcile just reported for a resource."""
        with self._lock:
            self._phases[(kind, namespace, name)] = phase
            if ready is not None:
                self._ready[(kind, namespace, name)] = ready

    def set_feature_view(self, namespace: str, name: str, *, online: bool, last_materialized: datetime | None,
                         max_staleness_seconds: float | None) -> None:
        """Staleness is computed at scrape time from the last materialization, so it grows between
        reconciles; an offline-only view has nothing to keep fresh and exports neither series."""
        self._set_workload(("FeatureView", namespace, name), {
            "last": last_materialized.timestamp() if online and last_materialized else None,
            "budget": max_staleness_seconds if online else None})

    def set_model_deployment(self, namespace: str, name: str, *, ready_replicas: int, desired_replicas: int) -> None:
        self._set_workload(("ModelDeployment", namespace, name), {"ready": ready_replicas, "desired": desired_replicas})

    def set_training_job(self, namespace: str, name: str, *, runs: list[dict]) -> None:
        """The runs recorded in status.runs (the last RUN_HISTORY_LIMIT), counted by phase."""
        by_phase: dict[str, int] = {}
        for run in runs:
            phase = run.get("phase") or "Pending"
            by_phase[phase] = by_phase.get(phase, 0) + 1
        self._set_workload(("TrainingJob", namespace, name), {"runs": by_phase})

    def _set_workload(self, key: ResourceKey, values: dict) -> None:
        with self._lock:
            self._workloads[key] = values

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The resource is gone: drop every series of it."""
        key = (kind, namespace, name)
        with self._lock:
            self._phases.pop(key, None)
            self._ready.pop(key, None)
            self._workloads.pop(key, None)

    def snapshot(self) -> tuple[dict[ResourceKey, str], dict[ResourceKey, bool], dict[ResourceKey, dict]]:
        """Series of the resources the cache holds: a reconcile that was still running when its resource was
        deleted may set a series after the clean-up; it is not exported (and the next clean-up drops it)."""
        with self._lock:
            phases, ready, workloads = dict(self._phases), dict(self._ready), dict(self._workloads)
        if self._cache is not None:
            exists = self._cache.holds
            phases = {k: v for k, v in phases.items() if exists(k)}
            ready = {k: v for k, v in ready.items() if exists(k)}
            workloads = {k: v for k, v in workloads.items() if exists(k)}
        return phases, ready, workloads

    def phase_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for (kind, _, _), phase in self.snapshot()[0].items():
            counts[(kind, phase)] = counts.get((kind, phase), 0) + 1
        return counts

    def count_api_calls(self, read) -> None:
        self._api_calls = read

    def count_relist(self, kind: str, reason: str) -> None:
        self.relists.labels(kind, reason).inc()

    def observe_loop(self, queue, cache) -> None:
        """Read the work queue's depth and the cache's sizes at scrape time."""
        self._queue, self._cache = queue, cache

    def serve(self, port: int, address: str) -> None:
        start_http_server(port, addr=address, registry=self.registry)


class _PhaseCollector:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        gauge = GaugeMetricFamily("mlplatform_resources", "Custom resources by kind and phase.", labels=["kind", "phase"])
        for (kind, phase), count in sorted(self.metrics.phase_counts().items()):
            gauge.add_metric([kind, phase], count)
        yield gauge
        calls = CounterMetricFamily("mlplatform_api_requests", "Requests the reconcilers made to the API server.")
        calls.add_metric([], self.metrics._api_calls())
        yield calls
        if self.metrics._queue is not None:
            depth, oldest = self.metrics._queue.stats()
            yield GaugeMetricFamily("mlplatform_workqueue_depth", "Keys waiting in the work queue (due or delayed).",
                                    value=depth)
            yield GaugeMetricFamily("mlplatform_workqueue_oldest_item_age_seconds",
                                    "How long the longest-waiting due key has waited for a worker.", value=oldest)
        if self.metrics._cache is not None:
            objects = GaugeMetricFamily("mlplatform_cache_objects", "Objects in the informer cache by kind.",
                                        labels=["kind"])
            for kind, count in sorted(self.metrics._cache.counts().items()):
                objects.add_metric([kind], count)
            yield objects


class _WorkloadCollector:
    """Per-resource series, read at scrape time. Every family is yielded even when empty, so the set of
    names the operator exports does not depend on what exists (tests compare dashboards and alerts to it)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        phases, ready, workloads = self.metrics.snapshot()
        now = self.metrics._clock()
        resource = ["kind", "namespace", "name"]
        phase = GaugeMetricFamily("mlplatform_resource_phase", "1 for each custom resource, labelled with its "
                                  "current phase (status.phase).", labels=[*resource, "phase"])
        for key, value in sorted(phases.items()):
            phase.add_metric([*key, value], 1)
        is_ready = GaugeMetricFamily("mlplatform_resource_ready", "1 while the resource's Ready condition is True, "
                                     "else 0.", labels=resource)
        for key, value in sorted(ready.items()):
            is_ready.add_metric(list(key), 1 if value else 0)
        staleness = GaugeMetricFamily("mlplatform_featureview_staleness_seconds", "Seconds since the FeatureView's "
                                      "last successful materialization (online views).", labels=["namespace", "name"])
        budget = GaugeMetricFamily("mlplatform_featureview_max_staleness_seconds", "The FeatureView's "
                                   "spec.freshness.maxStaleness in seconds: Fresh turns False past it.",
                                   labels=["namespace", "name"])
        ready_replicas = GaugeMetricFamily("mlplatform_modeldeployment_ready_replicas", "Ready replicas of the "
                                           "ModelDeployment's model server.", labels=["namespace", "name"])
        desired_replicas = GaugeMetricFamily("mlplatform_modeldeployment_desired_replicas", "Replicas the "
                                             "ModelDeployment wants (spec.replicas, or the HPA's desired count; 0 "
                                             "when suspended).", labels=["namespace", "name"])
        runs = GaugeMetricFamily("mlplatform_trainingjob_runs", "Runs of the TrainingJob recorded in status.runs "
                                 "(the last 10), by phase: Succeeded, Failed, Superseded, Running, Pending, Suspended.",
                                 labels=["namespace", "name", "phase"])
        for (kind, namespace, name), values in sorted(workloads.items()):
            if kind == "FeatureView":
                if values["last"] is not None:
                    staleness.add_metric([namespace, name], max(0.0, now - values["last"]))
                if values["budget"] is not None:
                    budget.add_metric([namespace, name], values["budget"])
            elif kind == "ModelDeployment":
                ready_replicas.add_metric([namespace, name], values["ready"])
                desired_replicas.add_metric([namespace, name], values["desired"])
            elif kind == "TrainingJob":
                for run_phase, count in sorted(values["runs"].items()):
                    runs.add_metric([namespace, name, run_phase], count)
        yield from (phase, is_ready, staleness, budget, ready_replicas, desired_replicas, runs)
