"""A de-duplicating, delayed work queue (the shape of client-go's): one reconcile per key at a time,
a key added while it is being processed is processed once more afterwards, failures back off."""

from __future__ import annotations

import heapq
import threading
import time
from typing import Hashable

MAX_BACKOFF_SECONDS = 120.0
BASE_BACKOFF_SECONDS = 0.5


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._processing: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._counter = 0
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Ask for key to be processed after delay; an earlier request for the same key wins."""
        with self._cond:
            due = self._clock() + max(delay, 0.0)
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            self._counter += 1
            heapq.heappush(self._heap, (due, self._counter, key))
            self._cond.notify()

    def add_after_failure(self, key: Hashable) -> float:
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay = min(BASE_BACKOFF_SECONDS * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
        self.add(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next due key not being processed by another worker; None on timeout or shutdown."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, _, key = heapq.heappop(self._heap)
                    if self._due.get(key) != due:
                        continue  # superseded by an earlier request
                    del self._due[key]
                    if key in self._processing:
                        self._again.add(key)
                        continue
                    self._processing.add(key)
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)
            return None

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            again = key in self._again
            self._again.discard(key)
        if again:
            self.add(key)

    def discard(self, key: Hashable) -> None:
        """Drop pending work for a key whose object is gone."""
        with self._cond:
            self._due.pop(key, None)
            self._failures.pop(key, None)
            self._again.discard(key)

    def due_count(self) -> int:
        """Keys due now that no worker has taken (delayed ones not counted)."""
        with self._cond:
            now = self._clock()
            return sum(1 for due in self._due.values() if due <= now)

    def stats(self) -> tuple[int, float]:
        """(keys waiting, seconds the longest-waiting due key has been due)."""
        with self._cond:
            now = self._clock()
            overdue = [now - due for due in self._due.values() if due <= now]
            return len(self._due), max(overdue, default=0.0)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
