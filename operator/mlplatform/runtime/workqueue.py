"""A de-duplicating, delayed work queue (the shape of client-go's): one reconcile per key at a time,
a key added while it is being processed is processed once more afterwards, failures back off.

Due keys go out by priority, then in the order they fell due (controller-runtime's priority queue has the same
idea). The loop gives a resource whose child changed (a Deployment turned available) a higher priority than a
resource created or edited: in a burst of 1,000 creations, a model whose pods are Ready is reported Ready at once,
instead of after every other model's first reconcile."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Hashable

MAX_BACKOFF_SECONDS = 120.0
BASE_BACKOFF_SECONDS = 0.5


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []  # requests not yet due (or not yet moved to _ready)
        self._due: dict[Hashable, float] = {}  # every pending request's due time, due or not
        self._priority: dict[Hashable, int] = {}  # every pending request's priority
        self._ready: dict[int, deque[Hashable]] = {}  # due keys by priority, in the order they fell due
        self._is_ready: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._again: dict[Hashable, int] = {}  # added while processed: its priority
        self._failures: dict[Hashable, int] = {}
        self._counter = 0
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0, priority: int = 0) -> None:
        """Ask for key to be processed after delay; an earlier request for the same key wins, and a pending
        request takes the higher of the two priorities."""
        with self._cond:
            due = self._clock() + max(delay, 0.0)
            if key in self._due:
                if priority > self._priority[key]:
                    self._priority[key] = priority
                    if key in self._is_ready:
                        self._ready.setdefault(priority, deque()).append(key)  # its old place is skipped
                if self._due[key] <= due:
                    self._cond.notify()
                    return
                self._is_ready.discard(key)
            self._due[key] = due
            self._priority[key] = max(priority, self._priority.get(key, priority))
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
                self._move_due(now)
                key = self._pop_ready()
                if key is not None:
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)
            return None

    def _move_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due or key in self._is_ready:
                continue  # superseded by an earlier request, or discarded
            self._is_ready.add(key)
            self._ready.setdefault(self._priority[key], deque()).append(key)

    def _pop_ready(self) -> Hashable | None:
        for priority in sorted(self._ready, reverse=True):
            keys = self._ready[priority]
            while keys:
                key = keys.popleft()
                if key not in self._is_ready or self._priority.get(key) != priority:
                    continue  # promoted (it is queued again higher up) or discarded
                self._is_ready.discard(key)
                del self._due[key], self._priority[key]
                if key in self._processing:
                    self._again[key] = max(priority, self._again.get(key, priority))
                    continue
                self._processing.add(key)
                return key
        return None

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            again = self._again.pop(key, None)
        if again is not None:
            self.add(key, priority=again)

    def discard(self, key: Hashable) -> None:
        """Drop pending work for a key whose object is gone."""
        with self._cond:
            self._due.pop(key, None)
            self._priority.pop(key, None)
            self._is_ready.discard(key)
            self._failures.pop(key, None)
            self._again.pop(key, None)

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
