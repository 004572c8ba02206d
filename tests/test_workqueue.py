"""The work queue: de-duplication, delays, one worker per key, back-off."""

from __future__ import annotations

import threading

from mlplatform.runtime.workqueue import FIRST_IN_A_ROW, MAX_BACKOFF_SECONDS, WorkQueue


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


def test_a_child_changed_key_is_taken_before_keys_that_have_not_started():
    clock = Clock()
    queue = WorkQueue(clock)
    for name in ("new-1", "new-2", "new-3"):
        queue.add(name)
    clock.now += 1
    queue.add("started", first=True)
    assert [queue.get(timeout=0) for _ in range(4)] == ["started", "new-1", "new-2", "new-3"]


def test_the_first_lane_does_not_take_a_key_before_it_is_due():
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("started", delay=0.25, first=True)
    queue.add("new")
    assert queue.get(timeout=0) == "new"
    assert queue.get(timeout=0) is None
    clock.now += 0.25
    assert queue.get(timeout=0) == "started"


def test_a_stream_of_child_changes_lets_one_new_key_through_after_a_run_of_them():
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("new")
    for i in range(FIRST_IN_A_ROW + 2):
        queue.add(f"started-{i}", first=True)
    taken = [queue.get(timeout=0) for _ in range(FIRST_IN_A_ROW + 3)]
    assert taken.index("new") == FIRST_IN_A_ROW
    assert sorted(k for k in taken if k != "new") == sorted(f"started-{i}" for i in range(FIRST_IN_A_ROW + 2))


def test_a_queued_key_moves_to_the_first_lane_and_keeps_its_earliest_due_time():
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("other")
    queue.add("owner")
    queue.add("owner", delay=0.25, first=True)  # a child changed: the owner is already due, now in the first lane
    assert queue.get(timeout=0) == "owner"
    assert queue.get(timeout=0) == "other"
    assert queue.get(timeout=0) is None  # the owner's later entry was absorbed
    queue.add("key", first=True)
    queue.add("key")  # a plain request for a key of the first lane leaves it there
    queue.add("plain")
    assert queue.get(timeout=0) == "key"
    assert queue.due_count() == 1


def test_a_first_lane_key_added_while_processed_comes_back_in_the_first_lane():
    queue = WorkQueue()
    queue.add("owner")
    assert queue.get(timeout=0) == "owner"
    queue.add("owner", first=True)
    queue.add("new")
    assert queue.get(timeout=0) == "new"  # the owner is still being processed
    queue.add("new-2")
    queue.done("owner")
    assert queue.get(timeout=0) == "owner"
