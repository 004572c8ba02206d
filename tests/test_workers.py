import threading

import pytest

from mlplatform.cli import main as cli_main
from mlplatform.runtime.workers import Load, WorkerBounds, WorkerPool, desired_workers

BOUNDS = WorkerBounds(minimum=2, initial=4, maximum=12)


@pytest.mark.parametrize("active, load, expected, why", [
    (4, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.3), 6, "keys wait, CPU to spare: half as many again"),
    (8, Load(due_keys=2, busy_fraction=1.0, cpu_share=0.3), 10, "no more than the keys that wait"),
    (11, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.3), 12, "never above the maximum"),
    (12, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.3), 12, "at the maximum: stays"),
    (8, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.95), 7, "CPU bound: one fewer, keys waiting or not"),
    (2, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.95), 2, "never below the minimum"),
    (8, Load(due_keys=0, busy_fraction=0.1, cpu_share=0.05), 7, "idle: give one back"),
    (4, Load(due_keys=0, busy_fraction=0.0, cpu_share=0.0), 4, "idle at the starting count: stays there"),
    (8, Load(due_keys=0, busy_fraction=0.9, cpu_share=0.3), 8, "busy and keeping up: stays"),
    (8, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.7), 8, "near the CPU limit: holds (no swing)"),
    (8, Load(due_keys=300, busy_fraction=0.2, cpu_share=0.7), 8, "keys waiting are not idleness"),
    (1, Load(due_keys=1, busy_fraction=1.0, cpu_share=0.1), 2, "below the minimum (flag change): raised to it"),
])
def test_the_worker_count_follows_the_queue_and_the_cpu(active, load, expected, why):
    assert desired_workers(active, load, BOUNDS) == expected, why


def test_bounds_name_the_flag_that_is_out_of_range():
    assert WorkerBounds(2, 4, 12).problems() == []
    assert WorkerBounds(0, 4, 12).problems() == ["--min-workers: found 0; allowed: 1 or more"]
    assert WorkerBounds(2, 20, 12).problems() == ["--workers: found 20; allowed: from --min-workers (2) to --max-workers (12)"]


def test_the_cli_refuses_workers_outside_the_bounds(capsys):
    assert cli_main(["run", "--workers", "20", "--max-workers", "8"]) == 2
    assert "--workers: found 20; allowed: from --min-workers (2) to --max-workers (8)" in capsys.readouterr().err


class Clocks:
    def __init__(self):
        self.wall = 100.0
        self.cpu = 10.0


def pool_with(clocks: Clocks, bounds=BOUNDS) -> WorkerPool:
    return WorkerPool(bounds, clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)


def test_a_sample_measures_busy_time_and_cpu_share_over_the_window():
    clocks = Clocks()
    pool = pool_with(clocks)
    pool.started(0)
    clocks.wall += 0.5
    pool.finished(0)  # 0.5 s finished in the window
    pool.started(1)
    clocks.wall += 0.5  # worker 1 still busy: 0.5 s in progress counts too
    clocks.cpu += 0.25
    load = pool.sample(due_keys=7)
    assert load == Load(due_keys=7, busy_fraction=pytest.approx(1.0 / 4), cpu_share=pytest.approx(0.25))
    clocks.wall += 1.0
    pool.finished(1)  # only its second in the new window counts there
    assert pool.sample(0).busy_fraction == pytest.approx(1.0 / 4)
    assert pool.busy_seconds_total == pytest.approx(2.0)


def test_adjust_wakes_parked_workers_and_parks_the_ones_above_the_count():
    clocks = Clocks()
    pool = pool_with(clocks)
    parked = threading.Event()
    woke_active = []

    def worker_above_the_count():
        parked.set()
        woke_active.append(pool.wait_until_active(5, timeout=10))

    thread = threading.Thread(target=worker_above_the_count)
    thread.start()
    parked.wait(5)
    for i in range(4):
        pool.started(i)
    clocks.wall += 1.0  # all four busy, CPU to spare, keys waiting: 4 -> 6
    assert pool.adjust(due_keys=50) == 6
    thread.join(5)
    assert woke_active == [True]
    for i in range(4):
        pool.finished(i)
    clocks.wall += 1.0
    clocks.cpu += 0.95  # CPU bound: 6 -> 5, worker 5 parks again
    assert pool.adjust(due_keys=50) == 5
    assert pool.wait_until_active(5, timeout=0.01) is False
    assert pool.wait_until_active(4, timeout=0.01) is True
