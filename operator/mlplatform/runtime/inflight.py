"""Applies that outlive their reconcile.

A worker waits a short while for a reconcile's applies; those still going then (a Service create, which the
API server serializes, takes a second under load while a Deployment takes 50 ms) are left to finish on the
writer pool, the reconcile ends there (WritesInFlight) and the worker takes the next key. Until they have
all completed the resource is not reconciled again (a key due meanwhile is deferred); then it is enqueued,
after a backoff if one failed, and that reconcile finds them in the cache (expectations) and writes the
status: a status is written only once every write it depends on went through.

How many resources may have writes left in flight is bounded (`limit`, kept equal to the active workers), so
the API-server limit on workers still bounds what the operator has in flight. Limit 0 (the default, and the
unit tests' fake API): every write is waited for.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any, Callable

from .cache import ResourceKey

log = logging.getLogger("mlplatform")

Results = list[tuple[Any, Exception | None]]


class WritesInFlight(Exception):
    """A reconcile ended with its applies still going; it goes on once they have completed."""

    def __init__(self, key: ResourceKey):
        super().__init__(f"writes of {key[0]} {key[1]}/{key[2]} still in flight")
        self.key = key


class InFlight:
    def __init__(self, limit: int = 0):
        self.limit = limit
        self._lock = threading.Lock()
        self._keys: set[ResourceKey] = set()

    def reserve(self, key: ResourceKey) -> bool:
        """Whether key may leave writes in flight (a place under the limit, now held by key)."""
        with self._lock:
            if len(self._keys) >= self.limit or key in self._keys:
                return False
            self._keys.add(key)
            return True

    def holds(self, key: ResourceKey) -> bool:
        """Whether key has writes in flight (it is reconciled again once they have completed)."""
        with self._lock:
            return key in self._keys

    def count(self) -> int:
        with self._lock:
            return len(self._keys)

    def when_settled(self, key: ResourceKey, futures: list[Future], settled: Callable[[Results], None]) -> None:
        """Once every future (each resolving to (result, error)) is done: release key's place, then call
        settled(results) on the writer thread that finished last. Never raises into the pool."""
        remaining = [len(futures)]
        count_lock = threading.Lock()

        def one_done(_future: Future) -> None:
            with count_lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            with self._lock:
                self._keys.discard(key)
            try:
                settled([future.result() for future in futures])
            except Exception:  # noqa: BLE001 - a callback's exception would vanish in the pool: log it
                log.exception("after the writes of %s %s/%s", *key)

        for future in futures:
            future.add_done_callback(one_done)
