"""The work queue: de-duplication, delays, one worker per key, back-off."""

from __future__ import annotations

import threading

from mlplatform.runtime.workqueue import MAX_BACKOFF_SECONDS, WorkQueue


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_duplicates_collapse_and_the_earliest_request_wins():
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("a", delay=10)
    queue.add("a", delay=5)
    queue.add("a", delay=30)
    assert queue.get(timeout=0) is None
    clock.now += 5
    assert queue.get(timeout=0) == "a"
    clock.now += 100
    assert queue.get(timeout=0) is None  # the later requests were absorbed


def test_a_key_is_never_processed_by_two_workers_and_is_redone_after():
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    assert queue.get(timeout=0.05) is None  # still being processed
    queue.done("a")
    assert queue.get(timeout=0.05) == "a"


def test_failures_back_off_exponentially_up_to_a_limit_and_success_forgets():
    queue = WorkQueue(Clock())
    delays = [queue.add_after_failure("a") for _ in range(12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and delays[-1] == MAX_BACKOFF_SECONDS
    queue.forget("a")
    assert queue.add_after_failure("a") == 0.5


def test_discard_and_shutdown():
    queue = WorkQueue()
    queue.add("gone")
    queue.discard("gone")
    assert queue.get(timeout=0.05) is None
    result = []
    waiter = threading.Thread(target=lambda: result.append(queue.get()))
    waiter.start()
    queue.shutdown()
    waiter.join(timeout=2)
    assert result == [None]
