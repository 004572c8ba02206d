"""A simulated model-metrics exporter, as kwok simulates the kubelet: no model server runs under kwok, so the
series a vLLM/Triton/... pod would expose come from this small HTTP server on 127.0.0.1, which the local
Prometheus (e2e/controlplane/prometheus_server.py) really scrapes, every second.

At each scrape it lists the pods from the API server and keeps those Prometheus would scrape (annotation
`prometheus.io/scrape: "true"`, phase Running); each series carries the labels kubernetes_sd's usual
relabelling gives a pod target: `namespace`, `pod`, and the pod's labels (names sanitized to [a-zA-Z0-9_]).
The values are what the tests set:

    model_metrics.set("ns", "app=chat", "vllm:num_requests_waiting", 12)       # gauge, on every matching pod
    model_metrics.set("ns", "chat-7d9f-abcde", "vllm:kv_cache_usage_perc", 0.9) # one pod, by name
    model_metrics.inc("ns", {"app": "chat"}, "vllm:request_success_total", 5, labels={"finished_reason": "stop"})
    model_metrics.observe("ns", "app=chat", "vllm:e2e_request_latency_seconds", 0.8)   # histogram
    model_metrics.set_series("gateway_pending_requests", {"namespace": "ns", "route": "chat"}, 3)  # not a pod's

A selector is a pod name, "k=v[,k=v]" or a dict of labels; it is matched at each scrape, so pods created later
(by a scale-up) report the value too. Where two settings give one pod the same series, the later one wins.
Any metric name is accepted (the presets' real names: `vllm:num_requests_waiting`, ...).
"""
from __future__ import annotations

import bisect
import json
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRAPE_ANNOTATION = "prometheus.io/scrape"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def label_name(raw: str) -> str:
    """A pod label's name as kubernetes_sd's labelmap gives it (app.kubernetes.io/name -> app_kubernetes_io_name)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", raw)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def parse_selector(selector: str | dict) -> tuple[str | None, dict[str, str]]:
    """(pod name, {}) or (None, labels)."""
    if isinstance(selector, dict):
        return None, dict(selector)
    if "=" not in selector:
        return selector, {}
    labels = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"selector {selector!r}: expected a pod name or k=v[,k=v]")
        labels[key.strip()] = value.strip()
    return None, labels


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i in range(bisect.bisect_left(self.buckets, value), len(self.buckets)):
            self.counts[i] += 1
        self.total += value
        self.count += 1


@dataclass
class _Setting:
    namespace: str
    pod: str | None            # a pod name, or None: by labels
    match: dict[str, str]
    name: str
    kind: str                  # gauge | counter | histogram
    labels: dict[str, str]
    value: float = 0.0
    histogram: _Histogram | None = None

    def matches(self, pod: dict) -> bool:
        meta = pod["metadata"]
        if meta.get("namespace") != self.namespace:
            return False
        if self.pod is not None:
            return meta["name"] == self.pod
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.match.items())

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        if self.kind != "histogram":
            return [(self.name, self.labels, self.value)]
        h = self.histogram
        counts = h.counts or [0] * len(h.buckets)
        out = [(f"{self.name}_bucket", {**self.labels, "le": _number(b)}, c) for b, c in zip(h.buckets, counts, strict=True)]
        out.append((f"{self.name}_bucket", {**self.labels, "le": "+Inf"}, h.count))
        out.append((f"{self.name}_sum", self.labels, h.total))
        out.append((f"{self.name}_count", self.labels, h.count))
        return out


def scraped_pods(pods: list[dict]) -> list[dict]:
    """The pods a kubernetes_sd pod job keeping prometheus.io/scrape="true" would scrape (and that serve)."""
    return [p for p in pods
            if (p["metadata"].get("annotations") or {}).get(SCRAPE_ANNOTATION) == "true"
            and (p.get("status") or {}).get("phase") == "Running"]


def pod_target_labels(pod: dict) -> dict[str, str]:
    meta = pod["metadata"]
    labels = {label_name(k): v for k, v in (meta.get("labels") or {}).items()}
    return {**labels, "namespace": meta["namespace"], "pod": meta["name"]}


class ModelMetrics:
    """The exporter. `list_pods()` returns the cluster's pods as plain dicts (API JSON)."""

    def __init__(self, list_pods: Callable[[], list[dict]], targets_dir: Path | None = None):
        self._list_pods = list_pods
        self._targets_dir = targets_dir
        self._lock = threading.Lock()
        self._settings: dict[tuple, _Setting] = {}   # insertion order = update order (later wins)
        self._series: dict[tuple, tuple[str, dict[str, str], float]] = {}
        self._server: ThreadingHTTPServer | None = None
        self.scrapes = 0

    # -- what the tests set ----------------------------------------------------------------------------

    def _key(self, namespace: str, selector, name: str, labels: dict | None) -> tuple:
        pod, match = parse_selector(selector)
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: not a Prometheus metric name")
        return (namespace, pod, tuple(sorted(match.items())), name, tuple(sorted((labels or {}).items())))

    def _setting(self, key: tuple, kind: str) -> _Setting:
        found = self._settings.pop(key, None)  # re-inserted below: the latest update wins
        if found is not None and found.kind != kind:
            raise ValueError(f"{key[3]} is a {found.kind}, not a {kind}")
        if found is None:
            namespace, pod, match, name, labels = key
            found = _Setting(namespace, pod, dict(match), name, kind, dict(labels))
        self._settings[key] = found
        return found

    def set(self, namespace: str, pod_or_selector: str | dict, name: str, value: float,
            labels: dict[str, str] | None = None) -> None:
        """A gauge on the pod (by name) or on every pod matching the selector."""
        with self._lock:
            self._setting(self._key(namespace, pod_or_selector, name, labels), "gauge").value = float(value)

    def inc(self, namespace: str, pod_or_selector: str | dict, name: str, by: float = 1.0,
            labels: dict[str, str] | None = None) -> None:
        """A counter, increased by `by` (each matching pod reports the same running total)."""
        if by < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._setting(self._key(namespace, pod_or_selector, name, labels), "counter").value += by

    def observe(self, namespace: str, pod_or_selector: str | dict, name: str, value: float,
                labels: dict[str, str] | None = None, buckets: tuple[float, ...] = DEFAULT_BUCKETS,
                count: int = 1) -> None:
        """`count` observations of `value` in a histogram (name_bucket/_sum/_count)."""
        with self._lock:
            setting = self._setting(self._key(namespace, pod_or_selector, name, labels), "histogram")
            if setting.histogram is None:
                setting.histogram = _Histogram(tuple(sorted(buckets)))
            for _ in range(count):
                setting.histogram.observe(value)

    def set_series(self, name: str, labels: dict[str, str], value: float) -> None:
        """A series of no pod (e.g. the gateway's pending requests for a route): exposed as given."""
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: not a Prometheus metric name")
        with self._lock:
            self._series[(name, tuple(sorted(labels.items())))] = (name, dict(labels), float(value))

    def remove_series(self, name: str, labels: dict[str, str]) -> None:
        with self._lock:
            self._series.pop((name, tuple(sorted(labels.items()))), None)

    def clear(self, namespace: str | None = None) -> None:
        """Forget what was set (for one namespace: its pods' settings and the series labelled with it)."""
        with self._lock:
            if namespace is None:
                self._settings.clear()
                self._series.clear()
                return
            self._settings = {k: v for k, v in self._settings.items() if v.namespace != namespace}
            self._series = {k: v for k, v in self._series.items() if v[1].get("namespace") != namespace}

    # -- the exposition --------------------------------------------------------------------------------

    def render(self, pods: list[dict]) -> str:
        """The text exposition for these pods (those Prometheus would scrape) and the series of no pod."""
        with self._lock:
            settings = list(self._settings.values())
            series = list(self._series.values())
        families: dict[str, tuple[str, dict]] = {}  # family name -> (type, {(name, labels): value})
        for pod in scraped_pods(pods):
            target = pod_target_labels(pod)
            for setting in settings:
                if not setting.matches(pod):
                    continue
                _, samples = families.setdefault(setting.name, (setting.kind, {}))
                for name, labels, value in setting.samples():
                    merged = {**setting.labels, **labels, **target}
                    samples[(name, tuple(sorted(merged.items())))] = value
        for name, labels, value in series:
            _, samples = families.setdefault(name, ("gauge", {}))
            samples[(name, tuple(sorted(labels.items())))] = value
        lines = []
        for family, (kind, samples) in sorted(families.items()):
            lines.append(f"# TYPE {family} {kind}")
            for (name, labels), value in samples.items():
                text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels)
                lines.append(f"{name}{{{text}}} {_number(value)}")
        return "\n".join(lines) + "\n"

    # -- the server ------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("the exporter is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def targets_file(self) -> Path | None:
        return self._targets_dir / f"model-metrics-{os.getpid()}.json" if self._targets_dir else None

    def start(self) -> ModelMetrics:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                try:
                    body = exporter.render(exporter._list_pods()).encode()
                except Exception as e:  # noqa: BLE001 - a failed scrape is reported to Prometheus, not raised
                    self.send_error(500, str(e)[:200])
                    return
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet: Prometheus scrapes every second
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="model-metrics", daemon=True).start()
        if self.targets_file is not None:
            # Prometheus' file service discovery picks this up (prometheus_server.py's model-metrics job).
            self._targets_dir.mkdir(parents=True, exist_ok=True)
            for stale in self._targets_dir.glob("model-metrics-*.json"):  # left by an exporter whose process died
                pid = stale.stem.rsplit("-", 1)[1]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    stale.unlink(missing_ok=True)
            tmp = self.targets_file.with_suffix(".tmp")
            tmp.write_text(json.dumps([{"targets": [self.address], "labels": {}}]))
            os.replace(tmp, self.targets_file)
        return self

    def stop(self) -> None:
        if self.targets_file is not None:
            self.targets_file.unlink(missing_ok=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
