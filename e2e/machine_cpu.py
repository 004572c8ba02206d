"""How busy the machine was over a benchmark phase: busy cores from /proc/stat, and each named process's share.

A phase's latency means little without it: on 2 cores, a phase that keeps both busy queues every request
(the API server's, the controllers', the operator's), and its p99 then says how long the overload lasted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    at: float                     # monotonic seconds
    machine_busy_s: float         # CPU seconds of every core not idle (nor waiting on I/O) since boot
    process_cpu_s: dict[str, float]


def machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - iowait - steal) / TICKS_PER_SECOND


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # exited
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def snapshot(pids: dict[str, int]) -> Snapshot:
    cpu = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
    return Snapshot(time.monotonic(), machine_busy_seconds(), {n: s for n, s in cpu.items() if s is not None})


def cores_between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Busy cores over the window: "machine" (all of it) and each process seen at both ends."""
    wall = max(after.at - before.at, 1e-6)
    cores = {"machine": round((after.machine_busy_s - before.machine_busy_s) / wall, 2)}
    for name, seconds in after.process_cpu_s.items():
        if name in before.process_cpu_s:
            cores[name] = round((seconds - before.process_cpu_s[name]) / wall, 2)
    return cores


def describe(cores: dict[str, float]) -> str:
    """'1.98 of 2 cores busy (kube-apiserver 1.10, kube-controller-manager 0.31, ...)'."""
    parts = sorted(((n, c) for n, c in cores.items() if n != "machine"), key=lambda nc: -nc[1])
    return (f"{cores.get('machine', float('nan')):.2f} of {os.cpu_count()} cores busy ("
            + ", ".join(f"{n} {c:.2f}" for n, c in parts) + ")")
