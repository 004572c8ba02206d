"""model.cache in the ModelDeployment reconciler: apply the shared claim and fill Job (render/model_cache.py),
read how the fill stands, and say so in the ModelCached condition. The workload is withheld until the
cache is filled (its pods would otherwise mount an empty claim); one that already runs is kept."""

from __future__ import annotations

from dataclasses import dataclass

from ..labels import MODEL_URI_ANNOTATION
from ..render.common import Owner
from ..render.model_cache import CACHE_LABEL, cache_field_manager, is_cache_object, owner_reference_only
from ..runtime.cache import ResourceKey
from ..status.conditions import Cond
from .base import Context

POLL_SECONDS = 5.0
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "HorizontalPodAutoscaler")
# What a held workload keeps as it runs: nothing of it (nor of a canary, or the route's weights) is applied.
HELD_KINDS = WORKLOAD_KINDS + ("HTTPRoute", "PodDisruptionBudget")


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


@dataclass(frozen=True)
class CacheOutcome:
    objects: list[dict]     # the objects left for apply_children
    condition: Cond | None  # ModelCached, or None without a cache
    withheld: bool = False  # nothing runs yet: the workload waits for the fill
    held: bool = False      # a workload runs an older template: it keeps it (and the canary, the route) until the fill


def _ours(existing: dict, obj: dict) -> bool:
    """A cache object this operator made for this model: the cache label with the URI's hash."""
    wanted = obj["metadata"]["labels"][CACHE_LABEL]
    return (existing["metadata"].get("labels") or {}).get(CACHE_LABEL) == wanted


def _mounts(workload: dict | None, claim: str) -> bool:
    """Whether the workload's pod template(s) already mount this claim."""
    spec = (workload or {}).get("spec") or {}
    templates = [spec.get("template")] + [((spec.get("leaderWorkerTemplate") or {}).get(role))
                                          for role in ("leaderTemplate", "workerTemplate")]
    return any(((v.get("persistentVolumeClaim") or {}).get("claimName") == claim)
               for t in templates if t for v in ((t.get("spec") or {}).get("volumes") or []))


def reconcile_cache(ctx: Context, key: ResourceKey, owner: Owner, objects: list[dict],
                    run: int | None = None) -> CacheOutcome:
    """Apply the shared claim and fill Job (adding our owner reference to those another user made), and decide
    what the workload does meanwhile: nothing runs yet -> withheld; an older template runs -> held, it keeps
    serving (a new URI, such as every new fromTrainingJob run, is filled first, then rolled out)."""
    shared = [o for o in objects if is_cache_object(o)]
    if not shared:
        return CacheOutcome(objects, None)
    manager = cache_field_manager(owner)
    live: dict[str, dict] = {}
    conflict = None
    for obj in shared:  # claim first, then the Job that fills it
        meta = obj["metadata"]
        existing = ctx.kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if existing is not None and not _ours(existing, obj):
            # Same name, not our cache (no label, or another model's): never adopted, never filled into.
            conflict = Cond("ModelCached", False, "CacheConflict",
                            f"{obj['kind'].lower()} {meta['name']} exists without the label "
                            f"{CACHE_LABEL}={meta['labels'][CACHE_LABEL]}: not adopted as the model cache of "
                            f"{meta['annotations'][MODEL_URI_ANNOTATION]}; delete or rename it")
            break
        intent = obj if existing is None else owner_reference_only(obj)
        if existing is None or not any(ref.get("uid") == owner.uid
                                       for ref in existing["metadata"].get("ownerReferences") or []):
            existing = ctx.kube.apply(intent, field_manager=manager)
        live[obj["kind"]] = existing
    claim = next(o for o in shared if o["kind"] == "PersistentVolumeClaim")["metadata"]["name"]
    uri = shared[0]["metadata"]["annotations"][MODEL_URI_ANNOTATION]
    cond = conflict or fill_condition(live.get("PersistentVolumeClaim"), live.get("Job"))
    rest = [o for o in objects if not is_cache_object(o)]
    if cond.status:
        return CacheOutcome(rest, cond)
    if cond.reason not in ("FillFailed", "CacheConflict"):
        ctx.queue.add(key, delay=POLL_SECONDS)  # the fill is not watched: look again shortly
    running = ctx.cache.child(key, "Deployment", owner.name) or ctx.cache.child(key, "LeaderWorkerSet", owner.name)
    if running is None:
        return CacheOutcome([o for o in rest if o["kind"] not in WORKLOAD_KINDS], cond, withheld=True)
    if _mounts(running, claim):
        return CacheOutcome(rest, cond)  # already runs from this claim (refilled): nothing to hold back
    which = f"{uri} (run {run})" if run is not None else uri
    held = Cond("ModelCached", False, cond.reason,
                f"{cond.message}; filling it for {which}: the running template keeps serving until the fill "
                f"completes, then the new one rolls out")
    return CacheOutcome([o for o in rest if o["kind"] not in HELD_KINDS], held, held=True)
