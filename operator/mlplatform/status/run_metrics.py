"""A TrainingJob run's metrics: the JSON object of numbers that worker 0 wrote to its termination message."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..labels import JOB_COMPLETION_INDEX_LABEL, JOB_UID_LABEL

MAX_METRICS = 64


@dataclass(frozen=True)
class MetricsReading:
    metrics: dict[str, float] | None
    problem: str | None  # why a message was there but could not be used


def parse_metrics(message: str | None) -> MetricsReading:
    """'{"auc": 0.93}' -> {auc: 0.93}. No message: no metrics and no problem. Anything else than a JSON
    object of finite numbers (booleans are not numbers): no metrics, and the problem in words."""
    if message is None or not message.strip():
        return MetricsReading(None, None)
    try:
        value = json.loads(message)
    except ValueError as err:
        return MetricsReading(None, f"the termination message is not JSON ({err.msg} at position {err.pos})")
    if not isinstance(value, dict):
        return MetricsReading(None, f"the termination message is JSON {type(value).__name__}, not an object of numbers")
    bad = sorted(k for k, v in value.items()
                 if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))
    if bad:
        return MetricsReading(None, f"the termination message's {', '.join(map(repr, bad))} "
                                    f"{'is not a number' if len(bad) == 1 else 'are not numbers'}")
    if len(value) > MAX_METRICS:
        return MetricsReading(None, f"the termination message has {len(value)} metrics, more than {MAX_METRICS}")
    return MetricsReading({str(k): float(v) for k, v in value.items()}, None)


def worker_zero_message(pods: list[dict]) -> str | None:
    """The termination message of the first container of the succeeded pod with completion index 0."""
    for pod in pods:
        annotations = pod["metadata"].get("annotations") or {}
        status = pod.get("status") or {}
        if annotations.get(JOB_COMPLETION_INDEX_LABEL) != "0" or status.get("phase") != "Succeeded":
            continue
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") == 0:
                return terminated.get("message")
    return None


def _record(status: dict, run: int) -> dict | None:
    return next((r for r in status.get("runs") or [] if r.get("run") == run), None)


def turned_succeeded(status: dict, previous: dict, run: int) -> bool:
    """The run's record shows Succeeded in this status and did not in the previous one: the moment its
    metrics are read."""
    return ((_record(status, run) or {}).get("phase") == "Succeeded"
            and (_record(previous, run) or {}).get("phase") != "Succeeded")


def worker_zero_selector(job_uid: str) -> str:
    """The label selector of the pods of index 0 of that Job (the Job controller's labels on its pods)."""
    return f"{JOB_UID_LABEL}={job_uid},{JOB_COMPLETION_INDEX_LABEL}=0"


def record_metrics(status: dict, previous: dict, run: int, pods: list[dict]) -> str | None:
    """Copy worker 0's metrics into the run's record (once, when it first shows Succeeded) and into
    status.metrics (latest succeeded run). Returns the problem to announce, when the message was unusable.
    pods: worker 0's pods as the API server holds them when the run turned Succeeded; the cache's copy may
    not show the pod Succeeded yet, as the Job's and the pods' watches deliver in no set order."""
    record = _record(status, run)
    problem = None
    if record is not None and turned_succeeded(status, previous, run):
        reading = parse_metrics(worker_zero_message(pods))
        if reading.metrics is not None:
            record["metrics"] = reading.metrics
        problem = reading.problem and f"run {run} succeeded without metrics: {reading.problem}"
    latest = next((r for r in reversed(status.get("runs") or []) if r.get("phase") == "Succeeded"), None)
    if latest is not None and latest.get("metrics") is not None:
        status["metrics"] = latest["metrics"]
    elif latest is not None:
        status.pop("metrics", None)
    elif previous.get("metrics") is not None:
        status["metrics"] = previous["metrics"]
    return problem
