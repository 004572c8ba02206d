"""Read-your-writes without writing the cache: what a reconcile wrote, remembered per resource key until the
informers have delivered it (KubeRay's expectations; controller-runtime waits for the written
resourceVersion the same way).

A reconcile records each write's resourceVersion (or a delete); the next reconcile of that key runs only
once the cache has seen every one of them, so it never decides on a cache older than its own writes. An API
response is never put into the cache: a response that arrives after the object's DELETED event would
bring a deleted object back (a ghost child, or a deleted custom resource fighting the garbage collector).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .cache import Cache, ResourceKey

log = logging.getLogger("mlplatform")

# A write the informers have not delivered after this long is given up on: the watch may be reconnecting,
# and a reconcile on a cache that lags is safe (applies are idempotent; absence is confirmed by a GET).
EXPECTATION_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Write:
    kind: str
    namespace: str
    name: str
    version: str | None  # None: a delete

    def describe(self) -> str:
        what = "deletion" if self.version is None else f"resourceVersion {self.version}"
        return f"{self.kind} {self.namespace}/{self.name} at {what}"


class Expectations:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[ResourceKey, dict[tuple[str, str, str], tuple[Write, float]]] = {}
        self._waiting: set[ResourceKey] = set()  # keys whose reconcile was put off until their writes arrive

    def wrote(self, key: ResourceKey, kind: str, obj: dict | None) -> None:
        """key's reconcile wrote obj (the API server's response, which carries the new resourceVersion)."""
        meta = (obj or {}).get("metadata") or {}
        if meta.get("resourceVersion"):
            self._expect(key, Write(kind, meta.get("namespace") or key[1], meta["name"], meta["resourceVersion"]))

    def deleted(self, key: ResourceKey, kind: str, namespace: str, name: str) -> None:
        self._expect(key, Write(kind, namespace, name, None))

    def _expect(self, key: ResourceKey, write: Write) -> None:
        with self._lock:
            self._pending.setdefault(key, {})[(write.kind, write.namespace, write.name)] = (write, self._clock())

    def unseen(self, key: ResourceKey, cache: Cache) -> list[Write]:
        """key's writes the cache has not seen yet; seen ones, and ones older than the timeout, are dropped."""
        with self._lock:
            pending = dict(self._pending.get(key) or {})
        if not pending:
            return []
        now = self._clock()
        waiting, done = [], []
        for ident, (write, at) in pending.items():
            if cache.seen(write.kind, write.namespace, write.name, write.version):
                done.append(ident)
            elif now - at > EXPECTATION_TIMEOUT_SECONDS:
                log.warning("the watch did not deliver %s within %.0fs of the write: reconciling %s %s/%s anyway",
                            write.describe(), EXPECTATION_TIMEOUT_SECONDS, *key)
                done.append(ident)
            else:
                waiting.append(write)
        with self._lock:
            entries = self._pending.get(key) or {}
            for ident in done:
                if entries.get(ident) is pending[ident]:  # not replaced by a newer write since
                    entries.pop(ident, None)
            if not entries:
                self._pending.pop(key, None)
        return waiting

    def wait(self, key: ResourceKey) -> None:
        """key's reconcile was put off for its unseen writes: `echo` says when the last one arrived."""
        with self._lock:
            self._waiting.add(key)

    def echo(self, key: ResourceKey, kind: str, namespace: str, name: str, version: str | None) -> tuple[bool, bool]:
        """Whether a delivered change is the echo of key's own write (that exact resourceVersion, or the
        deletion it asked for), which the reconcile that wrote it already saw: it cannot change the outcome.
        Also whether key was waiting for it and now waits for nothing (then it is due)."""
        ident = (kind, namespace, name)
        with self._lock:
            entries = self._pending.get(key) or {}
            write = entries.get(ident, (None, None))[0]
            if write is None or write.version != version:
                return False, False
            del entries[ident]
            if entries:
                return True, False
            self._pending.pop(key, None)
            due = key in self._waiting
            self._waiting.discard(key)
            return True, due

    def forget(self, key: ResourceKey) -> None:
        with self._lock:
            self._pending.pop(key, None)
            self._waiting.discard(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
