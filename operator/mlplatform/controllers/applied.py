"""What each resource's children were after our last apply, so a reconcile can skip rendering them.

Rendering (templates parsed into objects) was most of a reconcile's CPU at scale, spent mostly to find
that the children already match: a rollout delivers many child events per resource, each a reconcile.
A render reads only the resource's identity, generation (its spec), annotations and resolved model URI,
and the operator configuration, fixed for the process. A child changed behind our back has a new
metadata.generation (spec changes; status updates do not bump it) or, for kinds without a generation
(Service, ConfigMap), a new resourceVersion; a deleted child leaves the cache. So when the inputs and
every child's intent hash and version are as recorded, the render would change nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..labels import INTENT_HASH_ANNOTATION, short_hash
from ..render.common import Owner
from ..runtime.cache import Cache, ResourceKey

ChildState = tuple[str, str, str | None, str | None]  # kind, name, intent hash, version


def render_inputs(owner: Owner, *resolved: str | None) -> str:
    """A fingerprint of what a render of this resource reads, besides the configuration."""
    return short_hash([owner.uid, owner.generation, sorted(owner.annotations.items()), list(resolved)])


def _state(kind: str, name: str, live: dict) -> ChildState:
    meta = live.get("metadata") or {}
    version = meta.get("generation") or meta.get("resourceVersion")
    return (kind, name, (meta.get("annotations") or {}).get(INTENT_HASH_ANNOTATION), str(version))


@dataclass(frozen=True)
class _Applied:
    inputs: str
    children: tuple[ChildState, ...]


class AppliedChildren:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[ResourceKey, _Applied] = {}

    def unchanged(self, key: ResourceKey, inputs: str, cache: Cache) -> bool:
        """True when the last apply was for these inputs and every child is still as it left it."""
        with self._lock:
            applied = self._by_key.get(key)
        if applied is None or applied.inputs != inputs:
            return False
        for kind, name, intent, version in applied.children:
            live = cache.child(key, kind, name)
            if live is None or live["metadata"].get("deletionTimestamp") or \
                    _state(kind, name, live) != (kind, name, intent, version):
                return False
        return True

    def record(self, key: ResourceKey, inputs: str, objects: list[dict], live_now: dict[tuple[str, str], dict]) -> None:
        """After an apply of `objects`: their live state as the apply left it (apply_children's result)."""
        children = []
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            live = live_now.get((kind, name))
            if live is None:
                self.forget(key)
                return
            children.append(_state(kind, name, live))
        with self._lock:
            self._by_key[key] = _Applied(inputs, tuple(children))

    def forget(self, key: ResourceKey) -> None:
        with self._lock:
            self._by_key.pop(key, None)
