"""model.cache in the ModelDeployment reconciler: apply the shared claim and fill Job (render/model_cache.py),
read how the fill stands, and say so in the ModelCached condition. The workload is withheld until the
cache is filled (its pods would otherwise mount an empty claim); one that already runs is kept."""

from __future__ import annotations

from dataclasses import dataclass

from ..labels import MODEL_URI_ANNOTATION
from ..render.common import Owner
from ..render.model_cache import (
    CACHE_LABEL,
    HOLDER_KIND,
    cache_field_manager,
    held_by,
    holder_name,
    is_cache_object,
    owner_reference_only,
    render_holder,
)
from ..runtime.cache import ResourceKey
from ..status.conditions import Cond
from .base import Context, live_child, with_intent_hash, wrote

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


def _manages_spec(obj: dict, manager: str) -> bool:
    return any(entry.get("manager") == manager and "f:spec" in (entry.get("fieldsV1") or {})
               for entry in obj["metadata"].get("managedFields") or [])


def _revision(obj: dict) -> int:
    return int(obj.get("revision") or 0)


def _holders(ctx: Context, key: ResourceKey) -> list[dict]:
    return [c for c in ctx.cache.children(key, HOLDER_KIND) if CACHE_LABEL in (c["metadata"].get("labels") or {})]


def _hold(ctx: Context, key: ResourceKey, owner_metadata: dict, owner: Owner, uri: str,
          holders: list[dict]) -> tuple[dict, bool]:
    """This resource's holder of the claim of `uri`, applied when it has none yet (its uid is what the claim's
    owner reference names)."""
    name = holder_name(owner.name, uri)
    live = next((h for h in holders if h["metadata"]["name"] == name), None) or \
        live_child(ctx, key, "apps/v1", HOLDER_KIND, name)  # absent from the cache: confirmed with a GET
    if live is not None:
        return live, False
    revision = max((_revision(h) for h in holders), default=0) + 1
    # Applied as apply_children would (with its intent hash), so later reconciles find it up to date, and
    # recorded as its writes are (read-your-writes for the rest of this reconcile and the next).
    applied = ctx.kube.apply(with_intent_hash(render_holder(owner_metadata, owner.name, uri, revision)))
    wrote(ctx, key, HOLDER_KIND, applied, "apps/v1")
    return applied, True


def _kept_holders(holders: list[dict], current: dict, settled: bool, previous: int) -> list[dict]:
    """While a rollout is under way every claim held stays; once it has settled on the current claim, that one
    and the `previous` most recent others."""
    others = sorted((h for h in holders if h["metadata"]["name"] != current["metadata"]["name"]),
                    key=_revision, reverse=True)
    return [current] + (others[:previous] if settled else others)


def _as_intent(holder: dict) -> dict:
    meta = holder["metadata"]
    return {"apiVersion": "apps/v1", "kind": HOLDER_KIND,
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations", "ownerReferences")
                         if k in meta},
            "data": holder.get("data"), "revision": holder.get("revision")}


def settled_on(workload: dict | None, claim: str) -> bool:
    """The workload runs the template that mounts `claim` on all its replicas, none of an older one left."""
    if workload is None or not _mounts(workload, claim):
        return False
    status = workload.get("status") or {}
    replicas = (workload.get("spec") or {}).get("replicas", 1)
    current = status.get("observedGeneration", workload["metadata"].get("generation", 0)) >= \
        workload["metadata"].get("generation", 0)
    return current and status.get("updatedReplicas", 0) >= replicas and status.get("replicas", 0) <= \
        status.get("updatedReplicas", 0)


def reconcile_cache(ctx: Context, key: ResourceKey, owner: Owner, objects: list[dict],
                    run: int | None = None, canary_running: bool = False) -> CacheOutcome:
    """Apply the shared claim and fill Job (adding our holder's owner reference to those another user made), and
    decide what the workload does meanwhile: nothing runs yet -> withheld; an older template runs -> held, it
    keeps serving (a new URI, such as every new fromTrainingJob run, is filled first, then rolled out). Claims of
    earlier URIs are let go once the rollout to the current one has settled (keeping the configured number of
    previous ones for a rollback)."""
    shared = [o for o in objects if is_cache_object(o)]
    if not shared:
        return CacheOutcome(objects, None)
    manager = cache_field_manager(owner)
    claim_obj = next(o for o in shared if o["kind"] == "PersistentVolumeClaim")
    claim = claim_obj["metadata"]["name"]
    uri = claim_obj["metadata"]["annotations"][MODEL_URI_ANNOTATION]
    workload_meta = next((o["metadata"] for o in objects if o["kind"] in ("Service",)), None) or \
        next(o["metadata"] for o in objects if not is_cache_object(o))
    holders = _holders(ctx, key)
    live: dict[str, dict] = {}
    conflict = None
    holder = None
    for obj in shared:  # claim first, then the Job that fills it
        meta = obj["metadata"]
        existing = ctx.kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if existing is not None and not _ours(existing, obj):
            # Same name, not our cache (no label, or another model's): never adopted, never filled into.
            conflict = Cond("ModelCached", False, "CacheConflict",
                            f"{obj['kind'].lower()} {meta['name']} exists without the label "
                            f"{CACHE_LABEL}={meta['labels'][CACHE_LABEL]}: not adopted as the model cache of "
                            f"{uri}; delete or rename it")
            break
        if holder is None:
            holder, _ = _hold(ctx, key, workload_meta, owner, uri, holders)
        obj = held_by(obj, holder)
        # Whoever created it applies its whole intent again (an apply without the spec would give up the spec's
        # fields, which a claim cannot lose); another user applies only its owner reference.
        intent = obj if existing is None or _manages_spec(existing, manager) else owner_reference_only(obj)
        if existing is None or not any(ref.get("uid") == holder["metadata"]["uid"]
                                       for ref in existing["metadata"].get("ownerReferences") or []):
            existing = ctx.kube.apply(intent, field_manager=manager)
        live[obj["kind"]] = existing
    cond = conflict or fill_condition(live.get("PersistentVolumeClaim"), live.get("Job"))
    rest = [o for o in objects if not is_cache_object(o)]
    running = ctx.cache.child(key, "Deployment", owner.name) or ctx.cache.child(key, "LeaderWorkerSet", owner.name)
    if holder is not None:
        settled = cond.status and not canary_running and settled_on(running, claim)
        kept = _kept_holders([h for h in holders if h["metadata"]["name"] != holder["metadata"]["name"]] + [holder],
                             holder, settled, ctx.config.defaults.model_cache_previous_claims)
    else:
        kept = holders  # a conflict: nothing of ours changes
    # Always among the children to apply, the one created just now too: the informer may deliver it before the
    # prune of this very reconcile (a second apply of the same intent changes nothing).
    rest += [_as_intent(h) for h in kept]
    if cond.status:
        return CacheOutcome(rest, cond)
    if cond.reason not in ("FillFailed", "CacheConflict"):
        ctx.queue.add(key, delay=POLL_SECONDS)  # the fill is not watched: look again shortly
    if running is None:
        return CacheOutcome([o for o in rest if o["kind"] not in WORKLOAD_KINDS], cond, withheld=True)
    if _mounts(running, claim):
        return CacheOutcome(rest, cond)  # already runs from this claim (refilled): nothing to hold back
    which = f"{uri} (run {run})" if run is not None else uri
    held = Cond("ModelCached", False, cond.reason,
                f"{cond.message}; filling it for {which}: the running template keeps serving until the fill "
                f"completes, then the new one rolls out")
    return CacheOutcome([o for o in rest if o["kind"] not in HELD_KINDS], held, held=True)
