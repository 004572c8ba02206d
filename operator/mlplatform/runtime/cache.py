"""What the watches have seen: our custom resources and their children, kept current by the informers,
so a reconcile reads children without listing them from the API server.

Objects are stored trimmed to what decisions read (see `trim`): managedFields only as far as our own
field manager's top-level spec fields, no kubectl last-applied copy, pods without their spec and with the
status fields the pod checks read. Our custom resources are kept as dicts, compacted: every map key and
short string is one shared interned object (thousands of objects repeat the same keys, label values and
condition words); they are read on every reconcile and every metrics scrape. Children and pods, most of
the cache, are kept packed (see `Packed`) and decoded when a reconcile reads them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Iterable

from ..api import KINDS
from ..labels import LAST_APPLIED_ANNOTATION, OWNER_LABEL

ResourceKey = tuple[str, str, str]  # (kind, namespace, name)
ObjectKey = tuple[str, str]  # (namespace, name) within one kind

# lower-case kind (as in the owner label) -> kind, for every custom resource kind of the API
RESOURCE_KINDS = {kind.singular: kind.kind for kind in KINDS.values()}
# Decisions read which of a child's spec fields our field managers own (replicas, suspend).
_OWNERSHIP_READ_FOR = ("Deployment", "Job")
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "labels", "annotations", "ownerReferences")
# What status/pods.py and the run reports read of a pod's status (addresses, images, QoS are not read).
_KEPT_POD_STATUS = ("phase", "reason", "message", "conditions", "containerStatuses", "initContainerStatuses",
                    "startTime")
_KEPT_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState")
_INTERNED_MAX_LEN = 64
# How long the resourceVersion of a DELETED event is remembered: long enough for the writes a reconcile
# made just before the deletion to be recognised as seen (see `seen`).
TOMBSTONE_SECONDS = 120.0


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
        return {"apiVersion": "v1", "kind": "Pod", "metadata": kept, "status": _pod_status(obj.get("status") or {})}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": kept}


# Changes the API server makes that no decision reads: an object whose change touches only these is stored,
# but its owner is not reconciled for it (see `decision_fingerprint`). Of a Deployment's conditions, type, status
# and reason are read (a canary's ProgressDeadlineExceeded; its message changes with them), not the texts and
# times it refreshes on every update; a pod that is scheduled is, to every decision, a pod still pending.
_UNREAD_ANNOTATIONS = {"Deployment": ("deployment.kubernetes.io/revision",)}
_UNREAD_CONDITION_FIELDS = {"Deployment": ("lastUpdateTime", "lastTransitionTime", "message")}


def decision_fingerprint(kind: str, body: dict) -> int:
    """A hash of what decisions may read of a stored child: equal before and after a change, the change
    cannot alter any reconcile's outcome."""
    meta = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}
    unread = _UNREAD_ANNOTATIONS.get(kind)
    if unread and meta.get("annotations"):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in unread}
    view = {**body, "metadata": meta}
    status = body.get("status")
    if isinstance(status, dict) and status.get("conditions"):
        conditions = status["conditions"]
        if kind == "Pod":
            conditions = [c for c in conditions if not (c.get("type") == "PodScheduled" and c.get("status") == "True")]
        dropped = _UNREAD_CONDITION_FIELDS.get(kind, ())
        view["status"] = {**status, "conditions": [{k: v for k, v in c.items() if k not in dropped} for c in conditions]}
    return hash(json.dumps(view, sort_keys=True, separators=(",", ":")))


def _as_int(version: str | None) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Change:
    """One object that appeared, changed or went away (from a relist, a child's head only: apiVersion,
    kind, metadata)."""

    kind: str
    obj: dict
    deleted: bool
    material: bool = True  # False: only fields no decision reads changed (see `decision_fingerprint`)


def _untrimmed(kind: str, obj: dict, managers: tuple[str, ...]) -> dict:
    return obj


ControllerRef = tuple[str, str, str]  # (apiVersion, kind, uid) of the owner reference marked controller


def controller_reference(body: dict) -> ControllerRef | None:
    ref = next((r for r in (body.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)
    return (ref.get("apiVersion"), ref.get("kind"), ref.get("uid")) if ref else None


class Packed:
    """A stored child: its trimmed body as compressed JSON. A Deployment at 0 replicas takes 1.4 KiB
    instead of 11 KiB as dicts: at thousands of resources the children held most of the operator's memory.
    Each read decodes a fresh dict (~40 us), which a reconcile may change without touching the cache."""

    __slots__ = ("resource_version", "fingerprint", "controller", "_data")

    def __init__(self, kind: str, body: dict):
        self.resource_version = body["metadata"].get("resourceVersion")
        self.fingerprint = decision_fingerprint(kind, body)
        self.controller = controller_reference(body)  # read on every reconcile (incarnations.py): not decoded
        self._data = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)

    def open(self) -> dict:
        return json.loads(zlib.decompress(self._data))


Stored = dict | Packed


def _opened(stored: Stored | None) -> dict | None:
    return stored.open() if isinstance(stored, Packed) else stored


def _stored_version(stored: Stored) -> str | None:
    return stored.resource_version if isinstance(stored, Packed) else stored["metadata"].get("resourceVersion")


class Cache:
    def __init__(self, managers: tuple[str, ...] = (), trimmed: bool = True, clock=time.monotonic):
        """trimmed=False keeps whole objects as dicts: only the memory benchmark's baseline uses it."""
        self._lock = threading.Lock()
        self._clock = clock
        # (kind, namespace, name) -> resourceVersion of its DELETED event; oldest first in _tombstone_order
        self._tombstones: dict[tuple[str, str, str], int] = {}
        self._tombstone_order: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._managers = managers
        self._trim = trim if trimmed else _untrimmed
        self._packs = trimmed
        self._objects: dict[str, dict[ObjectKey, Stored]] = defaultdict(dict)
        # owner -> child kind -> child name -> stored body: an index over the children's stores
        self._children: dict[ResourceKey, dict[str, dict[str, Stored]]] = defaultdict(lambda: defaultdict(dict))

    # -- written by the informers only: a reconcile never stores what an API call returned --------

    def upsert(self, kind: str, obj: dict) -> Change | None:
        """Store an object; an older version than the one stored is ignored (None)."""
        body, packed = self._kept(kind, obj)
        key = (body["metadata"].get("namespace"), body["metadata"]["name"])
        with self._lock:
            stored = self._objects[kind].get(key)
            if stored is not None and _as_int(_stored_version(stored)) > _as_int(body["metadata"].get("resourceVersion")):
                return None
            self._store(kind, key, packed or body, owner_key_of(body))
        material = packed is None or not isinstance(stored, Packed) or stored.fingerprint != packed.fingerprint
        return Change(kind, body, False, material)

    def remove(self, kind: str, obj: dict) -> Change:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), meta["name"])
        with self._lock:
            body = _opened(self._objects[kind].pop(key, None)) or self._trim(kind, obj, self._managers)
            self._unindex(kind, key, body)
            self._bury(kind, key, _as_int(meta.get("resourceVersion")))
        return Change(kind, body, True)

    def _bury(self, kind: str, key: ObjectKey, version: int) -> None:
        now = self._clock()
        while self._tombstone_order and self._tombstone_order[0][0] < now - TOMBSTONE_SECONDS:
            _, old = self._tombstone_order.popleft()
            self._tombstones.pop(old, None)
        self._tombstones[(kind, *key)] = version
        self._tombstone_order.append((now, (kind, *key)))

    def replace(self, kind: str, objects: Iterable[dict]) -> list[Change]:
        """A full listing of one kind replaces what was stored: objects gone from it are dropped (a watch
        gap sends no DELETED for them). Returns what appeared, changed or went away."""
        fresh: dict[ObjectKey, tuple[Stored, dict]] = {}
        for obj in objects:
            body, packed = self._kept(kind, obj)
            # A relist at start yields every object as a change: a packed one's change carries its head
            # only (what enqueueing reads), so that thousands of bodies are never held decoded at once.
            head = body if packed is None else {k: body[k] for k in ("apiVersion", "kind", "metadata") if k in body}
            fresh[(body["metadata"].get("namespace"), body["metadata"]["name"])] = (packed or body, head)
        changes = []
        with self._lock:
            before = self._objects[kind]
            for key, stored in before.items():
                if key not in fresh:
                    body = _opened(stored)
                    changes.append(Change(kind, body, True))
                    self._unindex(kind, key, body)
            self._objects[kind] = {}
            for key, (stored, head) in fresh.items():
                old = before.get(key)
                if old is None or _stored_version(old) != _stored_version(stored):
                    changes.append(Change(kind, head, False))
                self._store(kind, key, stored, owner_key_of(head))
        return changes

    def _kept(self, kind: str, obj: dict) -> tuple[dict, Packed | None]:
        """The trimmed body, and its packed form for a child kind (a custom resource's body is compacted)."""
        body = self._trim(kind, obj, self._managers)
        if not self._packs:
            return body, None
        if kind in RESOURCE_KINDS.values():
            return compact(body), None
        return body, Packed(kind, body)

    def _store(self, kind: str, key: ObjectKey, stored: Stored, owner: ResourceKey | None) -> None:
        self._objects[kind][key] = stored
        if owner is not None and kind not in RESOURCE_KINDS.values():
            self._children[owner][kind][key[1]] = stored

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
            stored = self._objects[kind].get((namespace, name))
        return _opened(stored)

    def holds(self, key: ResourceKey) -> bool:
        kind, namespace, name = key
        with self._lock:
            return (namespace, name) in self._objects.get(kind, {})

    def resources(self, kind: str, namespace: str | None = None) -> list[dict]:
        with self._lock:
            stored = [b for (ns, _), b in self._objects[kind].items() if namespace is None or ns == namespace]
        return [_opened(b) for b in stored]

    def children(self, owner: ResourceKey, kind: str) -> list[dict]:
        with self._lock:
            stored = list(self._children.get(owner, {}).get(kind, {}).values())
        return [_opened(b) for b in stored]

    def child(self, owner: ResourceKey, kind: str, name: str) -> dict | None:
        with self._lock:
            stored = self._children.get(owner, {}).get(kind, {}).get(name)
        return _opened(stored)

    def child_controllers(self, owner: ResourceKey, kind: str) -> dict[str, ControllerRef | None]:
        """Name -> controller reference of each of owner's children of a kind, without decoding them."""
        with self._lock:
            stored = dict(self._children.get(owner, {}).get(kind, {}))
        return {name: b.controller if isinstance(b, Packed) else controller_reference(b) for name, b in stored.items()}

    def seen(self, kind: str, namespace: str, name: str, version: str | None) -> bool:
        """Whether the informers delivered that object at that resourceVersion, or a later one, or its deletion
        after it. version None: whether its deletion was delivered (it is absent or terminating)."""
        with self._lock:
            stored = self._objects[kind].get((namespace, name))
            buried = self._tombstones.get((kind, namespace, name))
        if version is None:
            return stored is None or bool(_opened(stored)["metadata"].get("deletionTimestamp"))
        wanted = _as_int(version)
        if stored is not None and _as_int(_stored_version(stored)) >= wanted:
            return True
        return buried is not None and buried >= wanted

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(store) for kind, store in self._objects.items()}


class ReconcileView:
    """The cache as one reconcile sees it: what the informers delivered, overlaid with that reconcile's own
    writes (the API server's responses) until it ends. Read-your-writes within a reconcile, without
    putting a response into the shared cache, where it could outlive a later DELETED event."""

    def __init__(self, cache: Cache, key: ResourceKey):
        self._cache = cache
        self._key = key
        # (kind, namespace, name) -> the object as this reconcile's write left it; None: deleted by it
        self._written: dict[tuple[str, str, str], dict | None] = {}

    def wrote(self, kind: str, obj: dict) -> None:
        """An object as this reconcile's write (or a GET of it) returned it."""
        meta = obj["metadata"]
        self._written[(kind, meta.get("namespace"), meta["name"])] = self._cache._trim(kind, obj, self._cache._managers)

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        self._written[(kind, namespace, name)] = None

    def resource(self, key: ResourceKey) -> dict | None:
        if key in self._written:
            return self._written[key]
        return self._cache.resource(key)

    def children(self, owner: ResourceKey, kind: str) -> list[dict]:
        cached = {c["metadata"]["name"]: c for c in self._cache.children(owner, kind)}
        for (written_kind, namespace, name), obj in self._written.items():
            if written_kind != kind or namespace != owner[1]:
                continue
            if obj is None:
                cached.pop(name, None)
            elif owner_key_of(obj) == owner:
                cached[name] = obj
        return list(cached.values())

    def child(self, owner: ResourceKey, kind: str, name: str) -> dict | None:
        ident = (kind, owner[1], name)
        if ident in self._written:
            obj = self._written[ident]
            return obj if obj is None or owner_key_of(obj) == owner else None
        return self._cache.child(owner, kind, name)

    def __getattr__(self, name: str):
        return getattr(self._cache, name)  # resources(), counts(), seen(), holds(): as the cache has them
