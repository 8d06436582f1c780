"""CPU sets written as the kernel and Docker write them ("0-3,5"), for the worker's and the box's reports.

Standard library only: the worker (in a team's environment) and the host (box snapshots, Docker limits, box
slots) write a CPU set the same way, so the two reports compare as text.
"""

from __future__ import annotations

import os


def cpuset_text(cpus: tuple[int, ...] | list[int]) -> str:
    """CPU numbers as the kernel and Docker write a CPU list: runs as a-b, separated by commas."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def own_cpu_set() -> str:
    """The CPUs this process may run on now (its affinity: a container's, a slot's or a cgroup's limit)."""
    return cpuset_text(sorted(os.sched_getaffinity(0)))
