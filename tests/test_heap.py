"""The C heap: glibc's malloc arenas capped unless the environment already says how many; the heap trimmed
once the operator is idle after work."""

import platform

import pytest

from mlplatform.runtime.heap import HeapTrimmer, limit_malloc_arenas, malloc_trim


def test_an_explicit_malloc_arena_max_is_left_to_glibc(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arenas_are_capped_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticks(trimmer: HeapTrimmer, clock: Clock, pattern: str) -> str:
    """One tick per second: 'w' working, '.' idle; returns where it trimmed ('T') or not ('-')."""
    out = ""
    for tick in pattern:
        clock.now += 1.0
        out += "T" if trimmer.observe(working=tick == "w") else "-"
    return out


def test_the_heap_is_trimmed_once_idle_after_work_and_not_again_until_more_work():
    clock, trims = Clock(), []
    trimmer = HeapTrimmer(lambda: trims.append(clock.now), clock=clock)
    # the start counts as work: trimmed after 5 idle seconds; idle after that trims nothing
    assert ticks(trimmer, clock, "....." + "." * 100) == "----T" + "-" * 100
    # a burst: trimmed 5 s after it ends (the last trim is over a minute old)
    assert ticks(trimmer, clock, "www" + "......") == "---" + "----T-"
    # another burst 2 s after that trim: idle 5 s later, but trimmed only a minute after the last trim
    assert ticks(trimmer, clock, "w" + "." * 60) == "-" + "-" * 57 + "T" + "-" * 2
    assert len(trims) == trimmer.trims == 3


def test_without_glibc_nothing_is_trimmed():
    clock = Clock()
    assert ticks(HeapTrimmer(None, clock=clock), clock, "w" + "." * 70) == "-" * 71


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_runs_on_glibc():
    trim = malloc_trim()
    assert trim is not None
    trim()
