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


def test_due_keys_go_out_by_priority_then_in_the_order_they_fell_due():
    clock = Clock()
    queue = WorkQueue(clock)
    for key in ("new-1", "new-2", "new-3"):
        queue.add(key)
        clock.now += 1
    queue.add("progress", priority=1)
    queue.add("later", delay=5, priority=1)
    assert [queue.get(timeout=0) for _ in range(4)] == ["progress", "new-1", "new-2", "new-3"]
    assert queue.get(timeout=0) is None  # "later" is not due yet, whatever its priority
    clock.now += 5
    assert queue.get(timeout=0) == "later"


def test_a_pending_key_takes_the_higher_priority_and_is_processed_once():
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("a")
    queue.add("b")
    queue.add("b", priority=1)  # promoted in place: one request
    queue.add("b")  # a lower priority does not demote it
    assert [queue.get(timeout=0) for _ in range(3)] == ["b", "a", None]


def test_a_key_added_while_processed_keeps_its_priority_for_the_next_round():
    queue = WorkQueue(Clock())
    queue.add("a")
    queue.add("b")
    assert queue.get(timeout=0) == "a"
    queue.add("a", priority=1)
    queue.done("a")
    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) == "b"


def test_a_discarded_key_is_not_handed_out_and_can_be_added_again():
    queue = WorkQueue(Clock())
    queue.add("a", priority=1)
    queue.add("b")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    queue.add("c", priority=1)
    queue.discard("c")
    assert queue.get(timeout=0) == "b"
    queue.add("c")
    assert queue.get(timeout=0) == "c"
    assert queue.due_count() == 0
