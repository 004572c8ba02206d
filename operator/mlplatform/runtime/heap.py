"""The C heap under the Python objects: glibc's malloc, tuned for a process whose threads free a burst's
list pages and API responses. Arenas are capped (below); once the operator is idle after work, the pages glibc
still holds free go back to the system (malloc_trim). After a restart over 5,000 resources that trim gave back
~2 MiB of 168: most of what a burst leaves is Python's own small-object arenas, which it cannot reach. Not
glibc (musl, macOS): nothing to do."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from typing import Callable

log = logging.getLogger("mlplatform")

MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter
# A heap is trimmed once the operator has been idle this long after work (a burst, the initial lists)...
TRIM_AFTER_IDLE_SECONDS = 5.0
# ...and not more often than this: a trim walks the heap (milliseconds at 100 MiB).
TRIM_INTERVAL_SECONDS = 60.0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both are glibc's; AttributeError elsewhere
        return libc
    except (OSError, AttributeError, TypeError):
        return None


def limit_malloc_arenas() -> bool:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core): with the informer
    and worker threads each freeing list pages and API responses, freed memory stayed spread over arenas
    and RSS after a restart over 5,000 resources was 131 MiB instead of 119. MALLOC_ARENA_MAX set in the
    environment wins."""
    libc = _glibc()
    if "MALLOC_ARENA_MAX" in os.environ or libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0): every arena's free pages returned to the system (logged with the RSS it saved)."""
    libc = _glibc()
    if libc is None:
        return None

    def trim() -> None:
        before = resident_mib()
        libc.malloc_trim(0)
        log.info("heap trimmed after work: RSS %.0f -> %.0f MiB", before, resident_mib())
    return trim


class HeapTrimmer:
    """Trims the heap once the operator has gone idle after work, at most every TRIM_INTERVAL_SECONDS.
    `observe` is called on a steady tick with whether there was work since the last tick."""

    def __init__(self, trim: Callable[[], None] | None, clock: Callable[[], float] = time.monotonic):
        self._trim = trim
        self._clock = clock
        self._worked_since_trim = True  # the initial lists are work
        self._last_work = clock()
        self._last_trim = float("-inf")
        self.trims = 0

    def observe(self, working: bool) -> bool:
        """Whether this tick trimmed."""
        now = self._clock()
        if working:
            self._worked_since_trim, self._last_work = True, now
            return False
        if (self._trim is None or not self._worked_since_trim or now - self._last_work < TRIM_AFTER_IDLE_SECONDS
                or now - self._last_trim < TRIM_INTERVAL_SECONDS):
            return False
        self._trim()
        self._worked_since_trim, self._last_trim = False, now
        self.trims += 1
        return True
