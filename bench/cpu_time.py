"""CPU time of the processes under test, read from /proc: how much each one spends per request."""

from __future__ import annotations

import os
import resource
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uWSGI's master and workers; nginx's master and worker)."""
    pids, index = [pid], 0
    while index < len(pids):
        current = pids[index]
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        pids.extend(int(child) for child in children)
        index += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU of this process's waited-for children: wrk, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stolen_fraction(before: list[int], after: list[int]) -> float:
    """Share of the machine's CPU time taken by the hypervisor between two `cpu_counters()` readings."""
    deltas = [later - earlier for earlier, later in zip(before, after, strict=True)]
    total = sum(deltas)
    return deltas[7] / total if total > 0 else 0.0


def cpu_counters() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as file:
        return [int(value) for value in file.readline().split()[1:]]
