"""Prometheus metrics: reconciles, errors and latency per kind, resources per phase, API calls, and the
control loop itself: work queue depth and oldest item, leadership, cache objects per kind, re-lists."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
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
        self.relists = Counter("mlplatform_informer_relists_total", "Full listings that replaced a kind's cache "
                               "content, by kind and reason (initial, expired, resync, error).", ["kind", "reason"],
                               registry=self.registry)
        self._queue = None
        self._cache = None
        self._phases: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._api_calls = lambda: 0
        self.registry.register(_PhaseCollector(self))

    def set_phase(self, kind: str, namespace: str, name: str, phase: str) -> None:
        with self._lock:
            self._phases[(kind, namespace, name)] = phase

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((kind, namespace, name), None)

    def phase_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for (kind, _, _), phase in self._phases.items():
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
