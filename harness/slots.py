"""Box slots: the share of a node that times one team at a time (`harness batch --engine ray`).

A node offers one slot by default: the whole box, the faithful "fixed GPU box". Several slots on one node are
opt-in (an 8-GPU box: one slot per GPU). Slot i of n is then one GPU (the i-th the node sees) and the i-th of n
equal, disjoint runs of the node's CPUs; the team's and the reference's workers both run inside it (Docker:
`cpuset_cpus` and the GPU by device request; the local backend: CPU affinity and CUDA_VISIBLE_DEVICES, which
every worker inherits). CPUs that do not divide evenly are left idle, so every slot is the same size.

How many slots a node offers is the count of the Ray resource it was started with (`ray start
--resources='{"harness_box_slot": N}'`); which slot a team gets is the first free one on its node, claimed
with a lock file (Ray already keeps at most N teams on the node at once). `harness doctor --slots N` shows the
layout this node would use and the `ray start` line for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SLOT_RESOURCE = "harness_box_slot"
CLAIM_WAIT_S = 60.0          # Ray keeps at most N teams on a node: a slot frees itself within moments


class SlotError(ValueError):
    """This node cannot offer the slots asked for; the message says why and what would work."""


@dataclass(frozen=True)
class Slot:
    index: int
    of: int
    cpus: tuple[int, ...]
    gpu: int | None = None

    @property
    def whole_box(self) -> bool:
        return self.of == 1

    def cpuset(self) -> str:
        return cpuset_text(self.cpus)

    def describe(self) -> str:
        gpu = f", GPU {self.gpu}" if self.gpu is not None else ""
        return f"slot {self.index + 1} of {self.of}: CPUs {self.cpuset()}{gpu}"

    def record(self) -> dict[str, object]:
        return {"slot": self.index, "slots": self.of, "cpu_set": self.cpuset(), "gpu_index": self.gpu}


def cpuset_text(cpus: tuple[int, ...] | list[int]) -> str:
    """CPU numbers as the kernel and Docker write a CPU list: runs as a-b, separated by commas."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


_NODE_CPUS: list[int] = []


def node_cpus() -> list[int]:
    """The CPUs this process could run on before any slot pinned it (its first affinity: a container's or a
    cgroup's limit included). A Ray worker process runs team after team, so the layout must not be read
    from a slot it was pinned to for an earlier team."""
    if not _NODE_CPUS:
        _NODE_CPUS.extend(sorted(os.sched_getaffinity(0)))
    return list(_NODE_CPUS)


def node_gpus() -> list[dict[str, object]]:
    """This node's GPUs as NVML lists them (index, name); [] without NVML or GPUs."""
    from harness.gpu import gpu_snapshot

    return [{"index": g["index"], "name": g["name"]} for g in gpu_snapshot()]


def slot_layout(count: int, cpus: list[int], gpus: list[int]) -> list[Slot]:
    """`count` equal slots over `cpus` and `gpus`. One slot is the whole box (every CPU, every GPU: gpu None).
    Several need a GPU each where the node has GPUs, and at least one CPU each."""
    if count < 1:
        raise SlotError(f"a node offers at least one slot, not {count}")
    if count == 1:
        return [Slot(0, 1, tuple(sorted(cpus)))]
    if count > len(cpus):
        raise SlotError(f"{count} slots need a CPU each; this node has {len(cpus)} ({cpuset_text(cpus)})")
    if gpus and count > len(gpus):
        raise SlotError(f"{count} slots need a GPU each; this node has {len(gpus)}: offer at most {len(gpus)}")
    width = len(cpus) // count
    ordered = sorted(cpus)
    return [Slot(i, count, tuple(ordered[i * width:(i + 1) * width]), gpus[i] if gpus else None)
            for i in range(count)]


def ray_start_line(count: int, head: str = "HEAD_ADDRESS:6379") -> str:
    """The command that makes this node offer `count` slots to the cluster whose head is at `head`."""
    resources = json.dumps({SLOT_RESOURCE: count})
    return f"ray start --address={head} --resources='{resources}'"


def claim_dir() -> Path:
    return Path(tempfile.gettempdir()) / "harness-slots"


@contextmanager
def claim(count: int, folder: Path | None = None, wait_s: float = CLAIM_WAIT_S,
          prefer: int | None = None) -> Iterator[int]:
    """The index of a slot no other team on this node holds, held until the block ends (an flock on a file
    per slot: the kernel frees it if this process dies). `prefer` is tried first: a process that held it
    last keeps its pinning and what it started inside it."""
    folder = folder or claim_dir()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    order = sorted(range(count), key=lambda index: index != prefer)      # `prefer` first, the rest in turn
    while True:
        for index in order:
            handle = open(folder / f"slot-{index}-of-{count}.lock", "a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() >= deadline:
            raise SlotError(f"all {count} slots of this node stayed taken for {wait_s:g} s: is another "
                            "harness using this node's slots outside Ray?")
        time.sleep(0.2)


def pin_process(slot: Slot) -> None:
    """Keep this process, every thread of it and every process it starts from now on inside `slot`: CPU
    affinity for each thread, CUDA_VISIBLE_DEVICES for what starts later (the local backend's workers)."""
    if slot.whole_box:
        return
    node_cpus()           # the node's CPUs, read before the first pinning
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), slot.cpus)
        except OSError:      # a thread that ended meanwhile
            pass
    if slot.gpu is not None:
        # slot.gpu is an NVML index (node_gpus); CUDA numbers GPUs fastest first unless told PCI bus order,
        # which is NVML's: without it a box of mixed GPUs would give a slot another slot's GPU
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
