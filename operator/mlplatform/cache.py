"""What the watches have seen: our custom resources and their children, kept current by kopf's
event stream, so a reconcile reads children without listing them from the API server."""

from __future__ import annotations

import threading
from collections import defaultdict

from .render.common import OWNER_LABEL

ResourceKey = tuple[str, str, str]  # (kind, namespace, name)


def owner_key_of(child: dict) -> ResourceKey | None:
    """From the owner label <kind>.<name> that every child and every pod of ours carries."""
    meta = child.get("metadata") or {}
    value = (meta.get("labels") or {}).get(OWNER_LABEL)
    if not value or "." not in value:
        return None
    kind_lower, _, name = value.partition(".")
    kind = {"featureview": "FeatureView", "modeldeployment": "ModelDeployment", "trainingjob": "TrainingJob"}.get(kind_lower)
    return (kind, meta.get("namespace"), name) if kind else None


class Cache:
    def __init__(self):
        self._lock = threading.Lock()
        self._resources: dict[ResourceKey, dict] = {}
        # owner -> child kind -> child name -> body
        self._children: dict[ResourceKey, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))

    def put_resource(self, kind: str, body: dict) -> ResourceKey:
        key = (kind, body["metadata"]["namespace"], body["metadata"]["name"])
        with self._lock:
            self._resources[key] = body
        return key

    def drop_resource(self, key: ResourceKey) -> None:
        with self._lock:
            self._resources.pop(key, None)

    def resource(self, key: ResourceKey) -> dict | None:
        with self._lock:
            return self._resources.get(key)

    def resources(self, kind: str, namespace: str) -> list[dict]:
        with self._lock:
            return [b for (k, ns, _), b in self._resources.items() if k == kind and ns == namespace]

    def put_child(self, kind: str, body: dict, deleted: bool = False) -> ResourceKey | None:
        owner = owner_key_of(body)
        if owner is None:
            return None
        name = body["metadata"]["name"]
        with self._lock:
            if deleted:
                self._children[owner][kind].pop(name, None)
            else:
                self._children[owner][kind][name] = body
        return owner

    def children(self, owner: ResourceKey, kind: str) -> list[dict]:
        with self._lock:
            return list(self._children.get(owner, {}).get(kind, {}).values())

    def child(self, owner: ResourceKey, kind: str, name: str) -> dict | None:
        with self._lock:
            return self._children.get(owner, {}).get(kind, {}).get(name)
