"""What the watches have seen: our custom resources and their children, kept current by the informers,
so a reconcile reads children without listing them from the API server.

Objects are stored trimmed to what decisions read (see `trim`): managedFields only as far as our own
field manager's top-level spec fields, no kubectl last-applied copy, pods without their spec and with the
status fields the pod checks read; and compacted: every map key and short string is one shared
interned object (thousands of objects repeat the same keys, label values and condition words).
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from .labels import LAST_APPLIED_ANNOTATION, OWNER_LABEL

ResourceKey = tuple[str, str, str]  # (kind, namespace, name)
ObjectKey = tuple[str, str]  # (namespace, name) within one kind

RESOURCE_KINDS = {"featureview": "FeatureView", "modeldeployment": "ModelDeployment", "trainingjob": "TrainingJob"}
# Decisions read which of a child's spec fields our field managers own (replicas, suspend).
_OWNERSHIP_READ_FOR = ("Deployment", "Job")
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "labels", "annotations", "ownerReferences")
# What status/pods.py and the run reports read of a pod's status (addresses, images, QoS are not read).
_KEPT_POD_STATUS = ("phase", "reason", "message", "conditions", "containerStatuses", "initContainerStatuses",
                    "startTime")
_KEPT_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState")
_INTERNED_MAX_LEN = 64


def compact(value):
    """The same value with every map key and short string interned: one shared str per distinct text."""
    if isinstance(value, dict):
        return {sys.intern(k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERNED_MAX_LEN:
        return sys.intern(value)
    return value


def _pod_status(status: dict) -> dict:
    kept = {k: status[k] for k in _KEPT_POD_STATUS if k in status}
    for field in ("containerStatuses", "initContainerStatuses"):
        if field in kept:
            kept[field] = [{k: c[k] for k in _KEPT_CONTAINER_STATUS if k in c} for c in kept[field]]
    return kept


def owner_key_of(child: dict) -> ResourceKey | None:
    """From the owner label <kind>.<name> that every child and every pod of ours carries."""
    meta = child.get("metadata") or {}
    value = (meta.get("labels") or {}).get(OWNER_LABEL)
    if not value or "." not in value:
        return None
    kind_lower, _, name = value.partition(".")
    kind = RESOURCE_KINDS.get(kind_lower)
    return (kind, meta.get("namespace"), name) if kind else None


def trim(kind: str, obj: dict, managers: tuple[str, ...]) -> dict:
    """The object as the cache keeps it. `managers`: the field managers whose ownership decisions read."""
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    if LAST_APPLIED_ANNOTATION in (kept.get("annotations") or {}):
        kept["annotations"] = {k: v for k, v in kept["annotations"].items() if k != LAST_APPLIED_ANNOTATION}
    if kind in _OWNERSHIP_READ_FOR:
        kept["managedFields"] = [
            {"manager": entry["manager"], "operation": entry.get("operation"),
             "fieldsV1": {"f:spec": {field: {} for field in ((entry.get("fieldsV1") or {}).get("f:spec") or {})}}}
            for entry in meta.get("managedFields") or [] if entry.get("manager") in managers]
    if kind == "Pod":
        return compact({"apiVersion": "v1", "kind": "Pod", "metadata": kept, "status": _pod_status(obj.get("status") or {})})
    return compact({**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": kept})


def _version(obj: dict) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Change:
    """One object that appeared, changed or went away."""

    kind: str
    obj: dict
    deleted: bool


def _untrimmed(kind: str, obj: dict, managers: tuple[str, ...]) -> dict:
    return obj


class Cache:
    def __init__(self, managers: tuple[str, ...] = (), trimmed: bool = True):
        """trimmed=False keeps whole objects: only the memory benchmark's baseline uses it."""
        self._lock = threading.Lock()
        self._managers = managers
        self._trim = trim if trimmed else _untrimmed
        self._objects: dict[str, dict[ObjectKey, dict]] = defaultdict(dict)
        # owner -> child kind -> child name -> body: an index over the children's stores
        self._children: dict[ResourceKey, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))

    # -- written by the informers (and by apply responses) -------------------------------------

    def upsert(self, kind: str, obj: dict) -> Change | None:
        """Store an object; an older version than the one stored is ignored (None)."""
        body = self._trim(kind, obj, self._managers)
        key = (body["metadata"].get("namespace"), body["metadata"]["name"])
        with self._lock:
            stored = self._objects[kind].get(key)
            if stored is not None and (_version(stored) or 0) > (_version(body) or 0):
                return None
            self._store(kind, key, body)
        return Change(kind, body, False)

    def remove(self, kind: str, obj: dict) -> Change:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), meta["name"])
        with self._lock:
            body = self._objects[kind].pop(key, None) or self._trim(kind, obj, self._managers)
            self._unindex(kind, key, body)
        return Change(kind, body, True)

    def replace(self, kind: str, objects: Iterable[dict]) -> list[Change]:
        """A full listing of one kind replaces what was stored: objects gone from it are dropped (a watch
        gap sends no DELETED for them). Returns what appeared, changed or went away."""
        fresh = {}
        for obj in objects:
            body = self._trim(kind, obj, self._managers)
            fresh[(body["metadata"].get("namespace"), body["metadata"]["name"])] = body
        changes = []
        with self._lock:
            before = self._objects[kind]
            for key, body in before.items():
                if key not in fresh:
                    changes.append(Change(kind, body, True))
                    self._unindex(kind, key, body)
            self._objects[kind] = {}
            for key, body in fresh.items():
                old = before.get(key)
                if old is None or old["metadata"].get("resourceVersion") != body["metadata"].get("resourceVersion"):
                    changes.append(Change(kind, body, False))
                self._store(kind, key, body)
        return changes

    def _store(self, kind: str, key: ObjectKey, body: dict) -> None:
        self._objects[kind][key] = body
        owner = owner_key_of(body)
        if owner is not None and kind not in RESOURCE_KINDS.values():
            self._children[owner][kind][key[1]] = body

    def _unindex(self, kind: str, key: ObjectKey, body: dict) -> None:
        owner = owner_key_of(body)
        if owner is None or owner not in self._children:
            return
        self._children[owner][kind].pop(key[1], None)
        if not any(self._children[owner].values()):
            del self._children[owner]

    # -- read by the reconcilers ---------------------------------------------------------------

    def resource(self, key: ResourceKey) -> dict | None:
        kind, namespace, name = key
        with self._lock:
            return self._objects[kind].get((namespace, name))

    def resources(self, kind: str, namespace: str | None = None) -> list[dict]:
        with self._lock:
            return [b for (ns, _), b in self._objects[kind].items() if namespace is None or ns == namespace]

    def children(self, owner: ResourceKey, kind: str) -> list[dict]:
        with self._lock:
            return list(self._children.get(owner, {}).get(kind, {}).values())

    def child(self, owner: ResourceKey, kind: str, name: str) -> dict | None:
        with self._lock:
            return self._children.get(owner, {}).get(kind, {}).get(name)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(store) for kind, store in self._objects.items()}
