"""How many reconciles run at once: as many as the queue has work for while they wait on the API server,
fewer once the operator's own CPU or the API server is the limit.

A reconcile spends most of its time waiting on round trips (applies, the status patch, an Event); its Python
work needs the one core the GIL gives the process. So while keys wait and the process is below that core,
more workers in flight finish more reconciles per second; near it, another thread only queues for the GIL
and lengthens every reconcile. The API server has a limit of its own: once it is saturated, another request
in flight only waits in it (its writes take longer, none more finish) and takes its share from the controllers
that make our pods Ready. So the writes' round trips are measured too, against the fastest recent ones, and
workers the queue added are given back (not those the pool started with: see desired_workers).
`desired_workers` is that decision as a pure function; `WorkerPool` samples the queue, the process's CPU time
and the round trips once a second and applies it. Threads are started up to the maximum once; the ones above
the active count park until they are needed again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

# Process CPU seconds per wall second (1.0: one whole core) at which the operator counts as CPU bound, and
# below which another worker may be added: between the two the count holds, so it does not swing every second.
CPU_BOUND_SHARE = 0.8
CPU_ROOM_SHARE = 0.6
# Below this share of their time in reconciles, with no key waiting, workers are more than the work needs.
IDLE_BUSY_FRACTION = 0.5
ADJUST_EVERY_SECONDS = 1.0
# A window's mean write round trip over the fastest window mean of the last BASELINE_SECONDS: from
# API_SATURATED_SLOWDOWN the API server counts as saturated (one worker fewer); below API_ROOM_SLOWDOWN it has
# room for more (between the two the count holds). A window with fewer writes than MIN_WRITES says nothing.
API_SATURATED_SLOWDOWN = 3.0
API_ROOM_SLOWDOWN = 2.0
BASELINE_SECONDS = 600.0
MIN_WRITES = 5
# Round trips under this count as this fast: a few milliseconds more on a quiet API server is not saturation.
FAST_WRITE_SECONDS = 0.05


@dataclass(frozen=True)
class WorkerBounds:
    minimum: int
    initial: int
    maximum: int

    def problems(self) -> list[str]:
        found = []
        if self.minimum < 1:
            found.append(f"--min-workers: found {self.minimum}; allowed: 1 or more")
        if not self.minimum <= self.initial <= self.maximum:
            found.append(f"--workers: found {self.initial}; allowed: from --min-workers ({self.minimum}) "
                         f"to --max-workers ({self.maximum})")
        return found


@dataclass(frozen=True)
class Load:
    """One sampling window."""

    due_keys: int  # keys ready to be reconciled that no worker has taken
    busy_fraction: float  # of the active workers' time, the share spent in reconciles
    cpu_share: float  # the process's CPU seconds per wall second
    api_slowdown: float = 1.0  # the window's mean write round trip over the recent fastest (1.0: unknown)


def desired_workers(active: int, load: Load, bounds: WorkerBounds) -> int:
    """The active worker count for the next window (table-tested)."""
    if load.cpu_share >= CPU_BOUND_SHARE:
        wanted = active - 1  # CPU is the limit: another thread would only wait for the GIL
    elif load.api_slowdown >= API_SATURATED_SLOWDOWN:
        # The API server is the limit: another request would only wait in it. Not below the count the pool
        # started with: the limit undoes what the queue added; below it, our queue waits for an API server
        # whose load is mostly others' (the controllers making pods Ready), and our keys' latency grows.
        wanted = max(active - 1, min(active, bounds.initial))
    elif load.due_keys > 0 and load.cpu_share < CPU_ROOM_SHARE and load.api_slowdown < API_ROOM_SLOWDOWN:
        wanted = active + min(load.due_keys, max(1, active // 2))  # round trips are the limit: more in flight
    elif load.due_keys == 0 and load.busy_fraction < IDLE_BUSY_FRACTION and active > bounds.initial:
        wanted = active - 1  # nothing waits and workers idle: back toward the count it started with
    else:
        wanted = active
    return max(bounds.minimum, min(bounds.maximum, wanted))


class RoundTrips:
    """The writes' round trips to the API server (the Kube client reports each), as each window's slowdown:
    its mean over the fastest window mean of the last BASELINE_SECONDS."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._count, self._seconds = 0, 0.0
        self._means: deque[tuple[float, float]] = deque()  # (when, window mean)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._count += 1
            self._seconds += seconds

    def slowdown(self) -> float:
        """The window since the last call, then a new window."""
        now = self._clock()
        with self._lock:
            count, seconds = self._count, self._seconds
            self._count, self._seconds = 0, 0.0
        if count < MIN_WRITES:
            return 1.0
        mean = seconds / count
        while self._means and self._means[0][0] < now - BASELINE_SECONDS:
            self._means.popleft()
        self._means.append((now, mean))
        return mean / max(min(m for _, m in self._means), FAST_WRITE_SECONDS)


class WorkerPool:
    """The active count, the busy time workers report, and the parking of workers above the count."""

    def __init__(self, bounds: WorkerBounds, clock=time.monotonic, cpu_clock=time.process_time,
                 round_trips: RoundTrips | None = None):
        self.bounds = bounds
        self.round_trips = round_trips or RoundTrips(clock)
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._cond = threading.Condition()
        self._active = bounds.initial
        self._busy_since: dict[int, float] = {}
        self._busy_seconds = 0.0  # reconciles finished in this window
        self._window_start = clock()
        self._cpu_at_window_start = cpu_clock()
        self.busy_seconds_total = 0.0

    @property
    def active(self) -> int:
        return self._active

    def wait_until_active(self, index: int, timeout: float) -> bool:
        """Whether worker `index` may take a key now; parks it up to `timeout` while it may not."""
        with self._cond:
            if index >= self._active:
                self._cond.wait(timeout)
            return index < self._active

    def started(self, index: int) -> None:
        with self._cond:
            self._busy_since[index] = self._clock()

    def finished(self, index: int) -> None:
        with self._cond:
            since = self._busy_since.pop(index, None)
            if since is not None:
                spent = self._clock() - since
                self._busy_seconds += spent
                self.busy_seconds_total += spent

    def sample(self, due_keys: int) -> Load:
        """The window since the last sample, then a new window."""
        now, cpu = self._clock(), self._cpu_clock()
        with self._cond:
            wall = max(now - self._window_start, 1e-6)
            in_progress = sum(now - max(since, self._window_start) for since in self._busy_since.values())
            self.busy_seconds_total += in_progress
            busy = (self._busy_seconds + in_progress) / (wall * self._active)
            load = Load(due_keys=due_keys, busy_fraction=min(busy, 1.0), cpu_share=(cpu - self._cpu_at_window_start) / wall,
                        api_slowdown=self.round_trips.slowdown())
            self._busy_seconds = 0.0
            self._busy_since = {i: now for i in self._busy_since}
            self._window_start, self._cpu_at_window_start = now, cpu
        return load

    def adjust(self, due_keys: int) -> Load:
        """Sample the window and set the active count from it; returns the window's load."""
        load = self.sample(due_keys)
        wanted = desired_workers(self._active, load, self.bounds)
        with self._cond:
            if wanted != self._active:
                self._active = wanted
                self._cond.notify_all()
        return load
