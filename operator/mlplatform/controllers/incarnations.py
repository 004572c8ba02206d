"""A resource deleted and created again under the same name is a new owner. The children its predecessor
left (a Job of run 2, a Deployment) carry the same owner label and names, and the garbage collector removes
them only in its own time: until they are gone the new resource is not reconciled, so that it never takes a
predecessor's finished Job for its own run, nor applies its intent onto a predecessor's object."""

from __future__ import annotations

import logging

from ..runtime.cache import ResourceKey
from ..runtime.kube import CHILD_KINDS
from .base import Context, predecessor_controls

log = logging.getLogger("mlplatform")

# How soon a resource waiting for its predecessor's children is looked at again (their deletion events
# enqueue it too; this is the fallback).
PREDECESSOR_RECHECK_SECONDS = 1.0


def predecessors_children(ctx: Context, key: ResourceKey, uid: str) -> list[tuple[str, str, dict]]:
    """(apiVersion, kind, child) for each child under key's name controlled by another resource of key's kind.
    Runs before every reconcile: the controllers are read without decoding the children."""
    found = []
    for api_version, kind in CHILD_KINDS:
        for name, controller in ctx.cache.child_controllers(key, kind).items():
            if predecessor_controls(controller, key, uid) and (child := ctx.cache.child(key, kind, name)) is not None:
                found.append((api_version, kind, child))
    return found


def waiting_for_predecessor(ctx: Context, key: ResourceKey, body: dict) -> bool:
    """Delete what key's predecessor left (that incarnation only; its own dependents, pods and ReplicaSets,
    in the background: ours are told apart by their Job's UID) and say whether any of it is still there; the
    caller reconciles key only once nothing is."""
    left = predecessors_children(ctx, key, body["metadata"]["uid"])
    for api_version, kind, child in left:
        meta = child["metadata"]
        if not meta.get("deletionTimestamp"):
            log.info("%s %s/%s: deleting %s %s, left by a deleted %s of the same name", *key, kind, meta["name"], key[0])
            ctx.kube.delete(api_version, kind, key[1], meta["name"], uid=meta["uid"])
    if left:
        ctx.queue.add(key, delay=PREDECESSOR_RECHECK_SECONDS)
    return bool(left)
