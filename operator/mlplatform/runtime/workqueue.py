"""A de-duplicating, delayed work queue (the shape of client-go's): one reconcile per key at a time,
a key added while it is being processed is processed once more afterwards, failures back off.

Two lanes. A key added because one of its children reports a settled state (`first=True`; which changes,
settled.py says) is taken before due keys of the other lane: its resource has started and its status is a
step behind what its children show, while a key of the other lane (a new or edited resource, a rollout's
intermediate change, a timer, a failure's back-off) has not started or has nothing new to report. Under a
burst of new resources the status of those whose workloads are Ready is written then, not after every new
resource's first reconcile (a FIFO made a model's Ready wait behind the whole backlog twice). So that a
stream of child changes cannot hold the other lane back, after FIRST_IN_A_ROW keys of the first lane one due
key of the other is taken.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Hashable

MAX_BACKOFF_SECONDS = 120.0
BASE_BACKOFF_SECONDS = 0.5
FIRST_IN_A_ROW = 4


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heaps: dict[bool, list[tuple[float, int, Hashable]]] = {True: [], False: []}  # by lane (first?)
        self._due: dict[Hashable, tuple[float, bool]] = {}  # key -> (when due, in the first lane)
        self._processing: set[Hashable] = set()
        self._again: dict[Hashable, bool] = {}  # added while processed -> in the first lane
        self._failures: dict[Hashable, int] = {}
        self._counter = 0
        self._first_in_a_row = 0
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0, first: bool = False) -> None:
        """Ask for key to be processed after delay; an earlier request for the same key wins, and a key
        asked for in the first lane stays there."""
        with self._cond:
            due = self._clock() + max(delay, 0.0)
            if key in self._due:
                queued_due, queued_first = self._due[key]
                if queued_due <= due and (queued_first or not first):
                    return
                due, first = min(due, queued_due), first or queued_first
            self._due[key] = (due, first)
            self._counter += 1
            heapq.heappush(self._heaps[first], (due, self._counter, key))
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
        """The next due key not being processed by another worker (the first lane's before the other's);
        None on timeout or shutdown."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                key = self._take_due(now)
                if key is not None:
                    return key
                dues = [heap[0][0] for heap in self._heaps.values() if heap]
                wait = min(dues) - now if dues else None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)
            return None

    def _take_due(self, now: float) -> Hashable | None:
        other_first = self._first_in_a_row >= FIRST_IN_A_ROW
        for first in ((False, True) if other_first else (True, False)):
            key = self._pop_due(first, now)
            if key is not None:
                self._first_in_a_row = self._first_in_a_row + 1 if first else 0
                return key
        return None

    def _pop_due(self, first: bool, now: float) -> Hashable | None:
        heap = self._heaps[first]
        while heap and heap[0][0] <= now:
            due, _, key = heapq.heappop(heap)
            if self._due.get(key) != (due, first):
                continue  # superseded by an earlier request, or moved to the first lane
            del self._due[key]
            if key in self._processing:
                self._again[key] = self._again.get(key, False) or first
                continue
            self._processing.add(key)
            return key
        return None

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            again = self._again.pop(key, None)
        if again is not None:
            self.add(key, first=again)

    def discard(self, key: Hashable) -> None:
        """Drop pending work for a key whose object is gone."""
        with self._cond:
            self._due.pop(key, None)
            self._failures.pop(key, None)
            self._again.pop(key, None)

    def due_count(self) -> int:
        """Keys due now that no worker has taken (delayed ones not counted)."""
        with self._cond:
            now = self._clock()
            return sum(1 for due, _ in self._due.values() if due <= now)

    def stats(self) -> tuple[int, float]:
        """(keys waiting, seconds the longest-waiting due key has been due)."""
        with self._cond:
            now = self._clock()
            overdue = [now - due for due, _ in self._due.values() if due <= now]
            return len(self._due), max(overdue, default=0.0)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
