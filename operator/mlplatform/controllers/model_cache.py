"""model.cache in the ModelDeployment reconciler: apply the shared claim and fill Job (render/model_cache.py),
read how the fill stands, and say so in the ModelCached condition. The workload is withheld until the
cache is filled (its pods would otherwise mount an empty claim); one that already runs is kept."""

from __future__ import annotations

from ..render.common import Owner
from ..render.model_cache import cache_field_manager, is_cache_object, owner_reference_only
from ..runtime.cache import ResourceKey
from ..status.conditions import Cond
from .base import Context

POLL_SECONDS = 5.0
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "HorizontalPodAutoscaler")


def _job_condition(job: dict, type_: str) -> dict | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def fill_condition(claim: dict | None, job: dict | None) -> Cond:
    """ModelCached from the claim and the fill Job as they are."""
    name = (claim or job or {}).get("metadata", {}).get("name", "")
    if job is not None and _job_condition(job, "Complete"):
        return Cond("ModelCached", True, "Filled", f"persistentvolumeclaim {name} holds the model")
    if job is not None and (failed := _job_condition(job, "Failed")):
        return Cond("ModelCached", False, "FillFailed",
                    f"the fill Job {job['metadata']['name']} failed: {failed.get('reason', '')} "
                    f"{failed.get('message', '')}".strip())
    phase = ((claim or {}).get("status") or {}).get("phase")
    if claim is not None and phase != "Bound":
        return Cond("ModelCached", False, "ClaimPending",
                    f"persistentvolumeclaim {name} is {phase or 'Pending'}, not Bound: the fill waits for storage")
    return Cond("ModelCached", False, "Filling", f"the fill Job {(job or {}).get('metadata', {}).get('name', '')} "
                                                 f"is downloading the model into {name}")


def reconcile_cache(ctx: Context, key: ResourceKey, owner: Owner,
                    objects: list[dict]) -> tuple[list[dict], Cond | None, bool]:
    """(the objects left for apply_children, the ModelCached condition or None without a cache, whether
    the workload is withheld)."""
    shared = [o for o in objects if is_cache_object(o)]
    if not shared:
        return objects, None, False
    manager = cache_field_manager(owner)
    live = {}
    for obj in shared:  # claim first, then the Job that fills it
        meta = obj["metadata"]
        existing = ctx.kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        intent = obj if existing is None else owner_reference_only(obj)
        if existing is None or not any(ref.get("uid") == owner.uid
                                       for ref in existing["metadata"].get("ownerReferences") or []):
            existing = ctx.kube.apply(intent, field_manager=manager)
        live[obj["kind"]] = existing
    cond = fill_condition(live.get("PersistentVolumeClaim"), live.get("Job"))
    rest = [o for o in objects if not is_cache_object(o)]
    withheld = False
    if not cond.status:
        if cond.reason != "FillFailed":
            ctx.queue.add(key, delay=POLL_SECONDS)  # the fill is not watched: look again shortly
        running = ctx.cache.child(key, "Deployment", owner.name) or ctx.cache.child(key, "LeaderWorkerSet", owner.name)
        if running is None:
            rest = [o for o in rest if o["kind"] not in WORKLOAD_KINDS]
            withheld = True
    return rest, cond, withheld
