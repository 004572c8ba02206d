"""What every reconciler does the same way: apply the rendered children, prune the rest, write status."""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..api.common import API_VERSION
from ..api.validation import validate_document
from ..config import OperatorConfig
from ..labels import COMPONENT_LABEL, INTENT_HASH_ANNOTATION, short_hash
from ..metrics import Metrics
from ..render.common import Owner
from ..runtime.cache import Cache, ControllerRef, ReconcileView, ResourceKey, controller_reference, owner_key_of
from ..runtime.expectations import Expectations
from ..runtime.kube import CHILD_KINDS, FIELD_MANAGER, Kube, KubeError
from ..runtime.workqueue import WorkQueue
from ..status.conditions import Cond, merge, now_iso, true_condition
from ..status.events import condition_events
from ..status.pods import pod_problem, pod_ready
from .applied import AppliedChildren

log = logging.getLogger("mlplatform")


@dataclass
class Context:
    kube: Kube
    cache: Cache | ReconcileView
    config: OperatorConfig
    queue: WorkQueue
    metrics: Metrics
    applied: AppliedChildren = field(default_factory=AppliedChildren)
    # writes of each resource's reconcile that the informers have not delivered yet (read-your-writes)
    expectations: Expectations = field(default_factory=Expectations)
    # the pool a reconcile's independent writes go out on together; None: one after another
    writers: Executor | None = None
    # resource key -> time.monotonic() of its last status write (progress-only writes are spaced by it)
    status_written_at: dict[ResourceKey, float] = field(default_factory=dict)

    def reconciling(self, key: ResourceKey) -> Context:
        """The context of one reconcile of key: its cache reads see its own writes (see ReconcileView)."""
        return dataclasses.replace(self, cache=ReconcileView(self.cache, key))


def wrote(ctx: Context, key: ResourceKey, kind: str, response: dict | None, api_version: str | None = None) -> None:
    """key's reconcile wrote an object: later reads of this reconcile see the response, and key's next
    reconcile waits until the informers delivered it."""
    if not response:
        return
    ctx.expectations.wrote(key, kind, response)
    if isinstance(ctx.cache, ReconcileView):
        ctx.cache.wrote(kind, {"apiVersion": api_version or response.get("apiVersion"), "kind": kind, **response})


def deleted(ctx: Context, key: ResourceKey, kind: str, namespace: str, name: str) -> None:
    ctx.expectations.deleted(key, kind, namespace, name)
    if isinstance(ctx.cache, ReconcileView):
        ctx.cache.deleted(kind, namespace, name)


class InvalidSpec(ValueError):
    """The spec cannot be acted on; only a spec change helps."""


def typed_spec(body: dict):
    """The spec as the models read it. The API server enforced the same rules, so this fails only when
    the installed CRDs are older than the operator: reported on the resource, not retried forever."""
    resource, problems = validate_document(body)
    if problems:
        raise InvalidSpec("; ".join(map(str, problems)))
    return resource.spec


def report_invalid(ctx: Context, kind: str, body: dict, message: str) -> None:
    previous = {k: v for k, v in (body.get("status") or {}).items()
                if k not in ("conditions", "phase", "observedGeneration")}
    conditions = [Cond("Ready", False, "InvalidSpec", message), Cond("Reconciling", False, "InvalidSpec"),
                  Cond("Stalled", True, "InvalidSpec", message)]
    write_status(ctx, kind, body, previous, "Stalled", conditions)


def owner_of(kind: str, body: dict) -> Owner:
    meta = body["metadata"]
    return Owner(kind, meta["name"], meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 1),
                 annotations=dict(meta.get("annotations") or {}))


def is_subset(intent: Any, live: Any) -> bool:
    """True when every field of the intent already has that value in the live object
    (the API server omits empty maps and lists, so those match an absent field)."""
    if intent in ({}, []) and live is None:
        return True
    if isinstance(intent, dict):
        return isinstance(live, dict) and all(is_subset(v, live.get(k)) for k, v in intent.items())
    if isinstance(intent, list):
        return isinstance(live, list) and len(intent) == len(live) and all(map(is_subset, intent, live))
    return intent == live


def owns_spec_field(obj: dict, field_name: str) -> bool:
    """Whether our field manager owns spec.<field_name> of a live object."""
    return any(entry.get("manager") == FIELD_MANAGER and f"f:{field_name}" in (entry.get("fieldsV1") or {}).get("f:spec", {})
               for entry in (obj["metadata"].get("managedFields") or []))


def controlled_by(child: dict, uid: str) -> bool:
    controller = controller_reference(child)
    return controller is not None and controller[2] == uid


class PredecessorsChild(RuntimeError):
    """A child found by name belongs to an earlier resource of the same kind and name: retried."""


def predecessor_controls(controller: ControllerRef | None, key: ResourceKey, uid: str) -> bool:
    """Whether a child's controller is another resource of key's kind (one deleted before key's resource was
    created under its name)."""
    return controller is not None and controller[:2] == (API_VERSION, key[0]) and controller[2] != uid


def job_finished(job: dict) -> bool:
    return true_condition(job, "Complete") is not None or true_condition(job, "Failed") is not None


def with_intent_hash(obj: dict) -> dict:
    """The intent, annotated with its own hash: a later intent that drops a field differs from it even
    though it is still a subset of the live object."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    # A hash given already stands: the intent is the live object's unchanged (a canary's stable Deployment).
    annotations = {**annotations, INTENT_HASH_ANNOTATION: annotations.get(INTENT_HASH_ANNOTATION) or short_hash(obj)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def up_to_date(intent: dict, live: dict | None) -> bool:
    """Same intent as last applied, and nobody changed a field of it since."""
    return live is not None and is_subset(intent, live)


# Kinds that other children name (a pod mounts a ConfigMap, claims a PVC, runs as a ServiceAccount): they are
# applied before the rest, so that nothing starts while what it refers to is still missing.
REFERENCED_KINDS = frozenset({"ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim"})


def _concurrently(ctx: Context, calls: list[Callable[[], Any]]) -> list[tuple[Any, Exception | None]]:
    """Run the calls on the context's writer pool (serially without one); every call runs to its end, and
    each result or error comes back in the calls' order."""
    def outcome(call):
        try:
            return call(), None
        except Exception as err:  # noqa: BLE001 - returned to the caller, which raises the first
            return None, err
    if ctx.writers is None or len(calls) < 2:
        return [outcome(call) for call in calls]
    return [future.result() for future in [ctx.writers.submit(outcome, call) for call in calls]]


def _apply_one(ctx: Context, obj: dict, live: dict | None) -> dict | None:
    """The API server's response, or None for a Job kept as it started."""
    try:
        return ctx.kube.apply(obj)
    except KubeError as err:
        if obj["kind"] == "Job" and err.status == 422 and live is not None:
            # A Job's pod template is immutable: a run keeps the template it started with.
            log.info("kept %s/%s as it started: %s", obj["kind"], obj["metadata"]["name"], err.message)
            return None
        raise


def apply_children(ctx: Context, key: ResourceKey, owner: Owner, objects: list[dict],
                   keep: Callable[[dict], bool] = lambda child: False) -> None:
    """Apply what differs from the live children; delete our children that are no longer rendered
    (except those `keep` protects, such as finished Jobs left for their TTL).

    The writes of one step go out together on the writer pool (a reconcile no longer waits on its round
    trips one after another): first the kinds others refer to, then the rest, then the prunes. Every write
    of a step completes before the first error, in render order, is raised: what succeeded is recorded,
    and the caller reports nothing as done."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
    intents = [(obj, ctx.cache.child(key, obj["kind"], obj["metadata"]["name"])) for obj in map(with_intent_hash, objects)]
    pending = [(obj, live) for obj, live in intents if not up_to_date(obj, live)]
    first = [(obj, live) for obj, live in pending if obj["kind"] in REFERENCED_KINDS]
    rest = [(obj, live) for obj, live in pending if obj["kind"] not in REFERENCED_KINDS]
    for step in (first, rest):
        results = _concurrently(ctx, [lambda obj=obj, live=live: _apply_one(ctx, obj, live) for obj, live in step])
        for (obj, _), (applied, _err) in zip(step, results, strict=True):
            if applied is not None:
                ctx.metrics.applies.labels(obj["kind"]).inc()
                wrote(ctx, key, obj["kind"], applied, obj["apiVersion"])
        _raise_first(results)
    prunes = [(api_version, kind, child["metadata"]["name"])
              for (api_version, kind) in CHILD_KINDS for child in ctx.cache.children(key, kind)
              if (kind, child["metadata"]["name"]) not in wanted and controlled_by(child, owner.uid)
              and not keep(child) and not child["metadata"].get("deletionTimestamp")]
    results = _concurrently(ctx, [lambda a=a, k=k, n=n: ctx.kube.delete(a, k, owner.namespace, n) for a, k, n in prunes])
    for (_, kind, name), (_, err) in zip(prunes, results, strict=True):
        if err is None:
            deleted(ctx, key, kind, owner.namespace, name)
            log.info("pruned %s %s/%s of %s %s", kind, owner.namespace, name, owner.kind, owner.name)
    _raise_first(results)


def _raise_first(results: list[tuple[Any, Exception | None]]) -> None:
    for _, err in results:
        if err is not None:
            raise err


def live_child(ctx: Context, key: ResourceKey, api_version: str, kind: str, name: str) -> dict | None:
    """A child as it is now. The cache answers when it has the child; its *absence* from the cache is
    confirmed with the API server, because decisions taken on "does not exist yet" are destructive
    (start at minReplicas, create a Job suspended) when the child does exist. What the GET returns is seen
    by the rest of this reconcile only (ReconcileView): the informer delivers it to the cache."""
    cached = ctx.cache.child(key, kind, name)
    if cached is not None:
        return cached
    live = ctx.kube.get(api_version, kind, key[1], name)
    if live is None:
        return None
    live = {"apiVersion": api_version, "kind": kind, **live}
    owner = ctx.cache.resource(key)
    if owner is not None and predecessor_controls(controller_reference(live), key, owner["metadata"]["uid"]):
        # Not in the cache yet; the next reconcile waits for it to be deleted (incarnations.py).
        raise PredecessorsChild(f"{kind} {name} belongs to a deleted {key[0]} of the same name")
    if isinstance(ctx.cache, ReconcileView):
        ctx.cache.wrote(kind, live)
        return ctx.cache.child(key, kind, name)
    return live


def pods_of(ctx: Context, key: ResourceKey, component: str, extra_labels: dict[str, str] | None = None) -> list[dict]:
    wanted = {COMPONENT_LABEL: component, **(extra_labels or {})}
    return [p for p in ctx.cache.children(key, "Pod")
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]


# A pod starting normally is Pending for seconds: its events are looked at only once it has been Pending
# this long (a List per reconcile for every starting pod was a round trip on each of a burst's reconciles).
EVENTS_AFTER_PENDING_SECONDS = 10.0


def warning_events_if_needed(ctx: Context, namespace: str, pods: list[dict],
                             now: datetime | None = None) -> dict[str, list[dict]]:
    """Events are read only for pods that are neither Ready nor explained by their own status, and have been
    Pending for EVENTS_AFTER_PENDING_SECONDS; the owner of a younger one is looked at again when it is due."""
    now = now or datetime.now(timezone.utc)
    overdue: list[str] = []
    for pod in pods:
        if pod_problem(pod) is not None or pod_ready(pod) or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        pending_for = _age_seconds(pod, now)
        if pending_for >= EVENTS_AFTER_PENDING_SECONDS:
            overdue.append(pod["metadata"]["name"])
        elif (owner := owner_key_of(pod)) is not None:
            ctx.queue.add(owner, delay=EVENTS_AFTER_PENDING_SECONDS - pending_for)
    return ctx.kube.warning_events(namespace, overdue) if overdue else {}


def _age_seconds(obj: dict, now: datetime) -> float:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return float("inf")
    return (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()


def merge_patch(previous: dict, new: dict) -> dict:
    """The JSON merge patch from previous to new: keys gone are nulled, at every depth (status.rollout)."""
    patch = {k: None for k in previous if k not in new}
    for k, v in new.items():
        old = previous.get(k)
        patch[k] = merge_patch(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return patch


# A status change that moves no condition (replica counts while pods start, one by one) is written at most
# this often per resource: the last count lands with the next condition change or when the wait is over.
PROGRESS_WRITE_INTERVAL_SECONDS = 5.0
_COUNT_FIELDS = frozenset({"replicas", "readyReplicas", "desiredReplicas", "replicaSummary"})


def progress_only(previous: dict, new: dict) -> bool:
    """Only replica counts (and condition messages that repeat them) differ: no condition or phase moved."""
    changed = {k for k in previous.keys() | new.keys() if previous.get(k) != new.get(k)}
    if not changed <= _COUNT_FIELDS | {"conditions"}:
        return False

    def shape(conditions: list[dict] | None) -> list[tuple]:
        return [(c.get("type"), c.get("status"), c.get("reason")) for c in conditions or []]
    return shape(previous.get("conditions")) == shape(new.get("conditions"))


def forget(ctx: Context, key: ResourceKey) -> None:
    """Drop everything the operator keeps about a resource that is gone: called by the worker that finds the
    key absent from the cache (never by the event handler, whose clean-up a reconcile still running on the
    key would undo)."""
    ctx.queue.forget(key)
    ctx.metrics.forget(*key)
    ctx.applied.forget(key)
    ctx.status_written_at.pop(key, None)
    ctx.expectations.forget(key)


def write_status(ctx: Context, kind: str, body: dict, fields: dict, phase: str, conditions: list[Cond]) -> bool:
    """Patch status only when it changed (progress alone at most every PROGRESS_WRITE_INTERVAL_SECONDS);
    announce condition changes as the event policy says. Returns whether it wrote."""
    meta = body["metadata"]
    previous = body.get("status") or {}
    generation = meta.get("generation", 1)
    merged = merge(previous.get("conditions"), conditions, generation, now_iso())
    new = {k: v for k, v in {**fields, "observedGeneration": generation, "phase": phase, "conditions": merged}.items()
           if v is not None}
    ready = next((c.get("status") == "True" for c in merged if c.get("type") == "Ready"), None)
    ctx.metrics.set_phase(kind, meta["namespace"], meta["name"], phase, ready)
    if new == previous:
        return False
    key = (kind, meta["namespace"], meta["name"])
    if progress_only(previous, new):
        wait = ctx.status_written_at.get(key, float("-inf")) + PROGRESS_WRITE_INTERVAL_SECONDS - time.monotonic()
        if wait > 0:
            ctx.queue.add(key, delay=wait)
            return False
    patch = merge_patch(previous, new)
    updated = ctx.kube.patch_status(kind, meta["namespace"], meta["name"], patch)
    ctx.metrics.status_writes.labels(kind).inc()
    ctx.status_written_at[key] = time.monotonic()
    wrote(ctx, key, kind, updated)
    for event in condition_events(previous.get("conditions"), merged):
        try:
            ctx.kube.post_event(body, event.type, event.reason, event.message)
        except KubeError as err:
            if not err.namespace_terminating:
                log.warning("could not post event on %s %s/%s: %s", kind, meta["namespace"], meta["name"], err)
    return True
