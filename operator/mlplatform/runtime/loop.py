"""One turn of the control loop: take a key, reconcile it, and decide what a failure means."""

from __future__ import annotations

import enum
import logging
import time

from ..controllers import CONTROLLERS
from ..controllers.base import Context, InvalidSpec, forget, report_invalid
from ..controllers.incarnations import waiting_for_predecessor
from ..render.common import RenderError
from .cache import RESOURCE_KINDS, Change, ResourceKey, owner_key_of
from .kube import KubeError
from .settled import reports_settled

log = logging.getLogger("mlplatform")

# Children change in bursts (a rollout touches pods many times a second): coalesce them.
CHILD_EVENT_DELAY_SECONDS = 0.25
# A key whose own writes the informers have not delivered yet is looked at again this soon (the events of
# those writes enqueue it too; this is the fallback).
UNSEEN_WRITES_RECHECK_SECONDS = 0.5


class Outcome(enum.Enum):
    DONE = "success"  # converged, or nothing left to do
    INVALID = "invalid"  # the spec cannot be acted on: reported on the resource; a spec change will retry
    GONE = "gone"  # the resource or its namespace is going away: nothing to converge
    WAITING = "waiting"  # its last writes, or its predecessor's children, not settled yet: reconciled once they are
    RETRY = "error"  # transient: retried with backoff


def classify(err: Exception) -> Outcome:
    """What a reconcile failure means for the key (table-tested)."""
    if isinstance(err, (InvalidSpec, RenderError)):
        return Outcome.INVALID
    if isinstance(err, KubeError) and err.namespace_terminating:
        return Outcome.GONE
    return Outcome.RETRY


def process(ctx: Context, key: ResourceKey) -> Outcome:
    """Reconcile one key; on failure, report or requeue as classify() says. Never raises."""
    kind = key[0]
    started = time.perf_counter()
    outcome = Outcome.DONE
    body = None
    try:
        body = ctx.cache.resource(key)
        if body is None:
            forget(ctx, key)
            outcome = Outcome.GONE
        elif ctx.expectations.unseen(key, ctx.cache):
            ctx.expectations.wait(key)
            ctx.queue.add(key, delay=UNSEEN_WRITES_RECHECK_SECONDS)
            outcome = Outcome.WAITING
        elif waiting_for_predecessor(ctx, key, body):
            outcome = Outcome.WAITING
        else:
            CONTROLLERS[kind].reconcile(ctx.reconciling(key), key, body)
    except Exception as err:  # noqa: BLE001 - every failure is classified, counted and logged
        outcome = classify(err)
        if outcome is Outcome.INVALID:
            try:
                report_invalid(ctx, kind, body, str(err))
            except Exception as report_err:  # noqa: BLE001
                outcome, err = classify(report_err), report_err
        if outcome is Outcome.RETRY:
            delay = ctx.queue.add_after_failure(key)
            ctx.metrics.errors.labels(kind).inc()
            log.warning("reconcile of %s %s/%s failed, retrying in %.1fs: %s", *key, delay, err,
                        exc_info=log.isEnabledFor(logging.DEBUG))
    if outcome is not Outcome.RETRY:
        ctx.queue.forget(key)
    ctx.metrics.reconciles.labels(kind, outcome.value).inc()
    ctx.metrics.latency.labels(kind).observe(time.perf_counter() - started)
    return outcome


def enqueue(ctx: Context, change: Change) -> None:
    """What to reconcile after the cache saw a change: the resource itself (also when deleted: the worker that
    finds it gone cleans up after it), its dependents, or a child's owner. The echo of a resource's own write
    (its status patch, a child it applied or pruned) does not enqueue it again: the reconcile that wrote it
    saw the response already. Its dependents still hear of it. Nor does a child's change that touched only
    what no decision reads (`Change.material`)."""
    meta = change.obj["metadata"]
    is_resource = change.kind in RESOURCE_KINDS.values()
    key = (change.kind, meta.get("namespace"), meta["name"]) if is_resource else owner_key_of(change.obj)
    if key is None:
        return
    version = None if change.deleted else meta.get("resourceVersion")
    echo, due = ctx.expectations.echo(key, change.kind, meta.get("namespace"), meta["name"], version)
    if due or (not echo and change.material):
        # A child that stopped progressing: its owner's status is a whole step behind, and it is taken before
        # resources that have not started (workqueue.py, settled.py).
        ctx.queue.add(key, delay=0.0 if due or is_resource else CHILD_EVENT_DELAY_SECONDS,
                      first=not is_resource and reports_settled(change.kind, change.obj))
    if is_resource:
        for dependent in CONTROLLERS[change.kind].dependents(ctx, key[1], key[2]):
            ctx.queue.add(dependent)


def keys_for(change: Change) -> list[ResourceKey]:
    """The keys a change concerns, found without the cache or the controllers (what a failed handler's
    change is re-enqueued under)."""
    meta = change.obj.get("metadata") or {}
    if change.kind in RESOURCE_KINDS.values():
        return [(change.kind, meta.get("namespace"), meta["name"])]
    owner = owner_key_of(change.obj)
    return [owner] if owner is not None else []
