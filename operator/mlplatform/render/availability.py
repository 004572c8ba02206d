"""Availability defaults of serving pods, for any kind that runs replicas behind a Service (model servers; the
feature server can take the same): spread over zones and nodes, a liveness probe, a graceful drain on shutdown.
Pure builders: each returns the pod-spec or container fields to merge."""

from __future__ import annotations

from typing import Any

ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"
LIVENESS_PERIOD_SECONDS = 10
LIVENESS_FAILURE_THRESHOLD = 3
LIVENESS_TIMEOUT_SECONDS = 5


def topology_spread(pod_labels: dict[str, str], replicas: int) -> list[dict[str, Any]]:
    """Replicas spread over zones, then nodes, as evenly as possible but never unschedulable (ScheduleAnyway:
    a single-zone cluster still runs every replica). One replica has nothing to spread: none.
    pod-template-hash keeps a rolling update's new pods from being counted against the old ones."""
    if replicas <= 1:
        return []
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(pod_labels)}, "matchLabelKeys": ["pod-template-hash"]}
            for key in (ZONE_KEY, HOSTNAME_KEY)]


def liveness_probe(handler: dict[str, Any]) -> dict[str, Any]:
    """A restart when the server stops answering: its handler (httpGet, grpc or tcpSocket) every
    LIVENESS_PERIOD_SECONDS, LIVENESS_FAILURE_THRESHOLD misses in a row. It starts once the startupProbe passed."""
    return {**handler, "periodSeconds": LIVENESS_PERIOD_SECONDS, "timeoutSeconds": LIVENESS_TIMEOUT_SECONDS,
            "failureThreshold": LIVENESS_FAILURE_THRESHOLD}


def graceful_shutdown(drain_seconds: int, grace_seconds: int) -> tuple[dict[str, Any], int]:
    """(the container's lifecycle, the pod's terminationGracePeriodSeconds). The preStop sleep keeps a
    terminating pod serving while the endpoints controller and the gateway stop routing to it (the kubelet's
    own sleep action: no shell needed in the image); then SIGTERM, and the rest of the grace period for the
    requests in flight. The grace period always covers the drain."""
    lifecycle = {"preStop": {"sleep": {"seconds": drain_seconds}}} if drain_seconds > 0 else {}
    return lifecycle, max(grace_seconds, drain_seconds + 1)
