import threading

import pytest

from mlplatform.cli import main as cli_main
from mlplatform.runtime.workers import (
    BASELINE_SECONDS,
    FAST_WRITE_SECONDS,
    MIN_WRITES,
    Load,
    RoundTrips,
    WorkerBounds,
    WorkerPool,
    desired_workers,
)

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
    (8, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=3.5), 7,
     "the API server saturated: one fewer, however many keys wait"),
    (8, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=2.5), 8,
     "the API server slower but not saturated: holds (no swing)"),
    (8, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=1.5), 12, "writes near their fastest: more"),
    (2, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=9.0), 2, "saturated: never below the minimum"),
    (4, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=9.0), 4,
     "saturated: not below the starting count (the API server's load is mostly others')"),
    (5, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=9.0), 4, "saturated: down to the starting count"),
    (3, Load(due_keys=300, busy_fraction=1.0, cpu_share=0.1, api_slowdown=9.0), 3,
     "below the starting count (the CPU gave them back): saturation holds it"),
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
    pool.adjust(due_keys=50)
    assert pool.active == 6
    thread.join(5)
    assert woke_active == [True]
    for i in range(4):
        pool.finished(i)
    clocks.wall += 1.0
    clocks.cpu += 0.95  # CPU bound: 6 -> 5, worker 5 parks again
    pool.adjust(due_keys=50)
    assert pool.active == 5
    assert pool.wait_until_active(5, timeout=0.01) is False
    assert pool.wait_until_active(4, timeout=0.01) is True


def test_round_trips_are_judged_against_the_fastest_window_of_the_last_minutes():
    clock = [0.0]
    trips = RoundTrips(clock=lambda: clock[0])

    def window(seconds: float, writes: int = MIN_WRITES) -> float:
        for _ in range(writes):
            trips.observe(seconds)
        clock[0] += 1
        return trips.slowdown()
    assert window(0.2) == pytest.approx(1.0)  # the first window is its own baseline
    assert window(0.8) == pytest.approx(4.0)
    assert window(0.1) == pytest.approx(1.0)  # a faster window is the new baseline
    assert window(0.3) == pytest.approx(3.0)
    assert window(9.0, writes=MIN_WRITES - 1) == 1.0  # too few writes to say anything
    clock[0] += BASELINE_SECONDS
    assert window(0.3) == pytest.approx(1.0)  # the fast windows aged out: the API server got slower for good
    assert window(0.002) == pytest.approx(0.002 / FAST_WRITE_SECONDS)  # under FAST_WRITE_SECONDS: as fast
    assert window(0.03) == pytest.approx(0.6)  # 30 ms after a 2 ms window: both are fast, no slowdown


def test_the_pool_reads_the_round_trips_into_its_load():
    clocks = Clocks()
    pool = pool_with(clocks)
    for seconds in [0.1] * MIN_WRITES:
        pool.round_trips.observe(seconds)
    clocks.wall += 1.0
    assert pool.adjust(due_keys=50).api_slowdown == pytest.approx(1.0)
    assert pool.active > BOUNDS.initial, "writes at their fastest and keys waiting: more workers"
    for seconds in [0.5] * MIN_WRITES:
        pool.round_trips.observe(seconds)
    clocks.wall += 1.0
    before = pool.active
    assert pool.adjust(due_keys=50).api_slowdown == pytest.approx(5.0)
    assert pool.active == before - 1


class _Response:
    status = 200

    def read(self) -> bytes:
        return b'{"metadata": {"name": "m", "resourceVersion": "7"}}'


class _ApiClient:
    def param_serialize(self, method, path, **_):
        return method, path, {}, None, None

    def call_api(self, *args, **kwargs):
        return _Response()


def test_the_kube_client_reports_the_round_trip_of_each_write_not_of_reads():
    from mlplatform.runtime.kube import Kube

    kube, reported = Kube(_ApiClient()), []
    kube.write_round_trip = reported.append
    kube.get("apps/v1", "Deployment", "ns", "m")
    assert reported == []
    kube.patch_status("ModelDeployment", "ns", "m", {"phase": "Ready"})
    assert len(reported) == 1 and reported[0] >= 0
