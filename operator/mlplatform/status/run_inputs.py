"""status.runs[].inputs and .trigger: what a run read when it started (FeatureViews' schema hash and watermark,
from their status as cached) and the image it ran (the pod's digest once reported)."""

from __future__ import annotations

from datetime import datetime

from .conditions import now_iso

DIGEST_PREFIXES = ("docker-pullable://", "docker://")


def feature_input(name: str, view: dict | None) -> dict:
    """One FeatureView as the run reads it now: status.schemaHash and status.materializedUntil (the FeatureView
    controller writes them), and the features' types, so that a later schema change can name the feature."""
    status = (view or {}).get("status") or {}
    features = ((view or {}).get("spec") or {}).get("features") or []
    read = {"name": name, "schemaHash": status.get("schemaHash"), "materializedUntil": status.get("materializedUntil"),
            "featureTypes": {f["name"]: f.get("dtype") for f in features if f.get("name")} or None}
    return {k: v for k, v in read.items() if v is not None}


def pod_image(pods: list[dict]) -> str | None:
    """The trainer container's image digest (containerStatuses imageID) of the first pod reporting one."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            image_id = container.get("imageID") or ""
            for prefix in DIGEST_PREFIXES:
                image_id = image_id.removeprefix(prefix)
            if "@sha256:" in image_id:
                return image_id
    return None


def record_run_inputs(status: dict, run: int, new_run: bool, trigger: str, views: dict[str, dict | None],
                      image: str, pods: list[dict], now: datetime) -> None:
    """On the run's first report: why it started, when, and the FeatureViews it read. Every report: the image,
    the pod's digest replacing spec.image once a pod reports one."""
    record = next((r for r in status.get("runs") or [] if r.get("run") == run), None)
    if record is None:
        return
    if new_run:
        record["trigger"] = trigger
        record["triggeredAt"] = now_iso(now)
        record["inputs"] = {"features": [feature_input(n, v) for n, v in views.items()]} if views else {}
    if "inputs" not in record:  # a run started before inputs were recorded: its features are not known
        return
    inputs = record["inputs"]
    digest = pod_image(pods)
    if digest or not inputs.get("image"):
        inputs["image"] = digest or image
