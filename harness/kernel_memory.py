"""The worker's memory as the kernel accounts for it: its cgroup, read by the host.

Resident set size (/proc, per process) misses memory a team can hold without mapping it (a memfd, a tmpfs
or /dev/shm file read back a slice at a time), and a peak summed over the processes alive when it is read
misses a child that held its weights and exited. A cgroup's memory controller charges every page the
worker's whole tree touches, to the cgroup, for its life: anonymous memory once however many forks share
it, shmem (tmpfs, /dev/shm, memfd, SysV shared memory) whether mapped or not, file pages, and a peak that
keeps what exited children held. The team cannot touch these files: they are the host's, read on the host.

Both cgroup versions are read (Docker's cgroupfs driver on a kernel booted with cgroup v1 still puts each
container in a v1 memory cgroup):
- v2: memory.current, memory.stat (anon, file, shmem; file includes shmem there), memory.peak (Linux 5.19+;
  a write resets it for reads through the same open file from Linux 6.12; earlier, it is the peak since the
  cgroup was made; before 5.19 there is none, and memory.current is sampled: a lower bound);
- v1: memory.usage_in_bytes, memory.stat (total_rss, total_cache, total_shmem: hierarchical; cache includes
  shmem), memory.max_usage_in_bytes (reset by writing 0, where the host may write).
`held` is anon + shmem: what no reclaim takes back without swap (the worker's containers have none). File
pages are reported, not checked against the count: an honest load reads its weight file into the page cache,
and which cgroup a cached page is charged to depends on who read it first (the weight-file check covers
files the team ships; under Docker the only writable place, /tmp, is a tmpfs: shmem).

What the row says of a task's memory: memory_flags (the resident-memory checks of harness.crosscheck, then
the kernel's, then what could not be read) and kernel_notes.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.crosscheck import memory_reasons, reading_reasons

CGROUP_ROOT = Path("/sys/fs/cgroup")

V2_FILES = {"current": "memory.current", "peak": "memory.peak", "stat": "memory.stat"}
V1_FILES = {"current": "memory.usage_in_bytes", "peak": "memory.max_usage_in_bytes", "stat": "memory.stat"}
# memory.stat keys per version: (anon, file including shmem, shmem)
V2_STAT = ("anon", "file", "shmem")
V1_STAT = ("total_rss", "total_cache", "total_shmem")


@dataclass(frozen=True)
class MemoryCgroup:
    """One memory cgroup on the host: its folder and its version (1 or 2)."""

    path: Path
    version: int

    def file_path(self, key: str) -> Path:
        """The path of one of its files by role: current, peak or stat."""
        return self.path / (V2_FILES if self.version == 2 else V1_FILES)[key]

    def describe(self) -> str:
        return f"cgroup v{self.version} {self.path}"

    def reading(self) -> tuple[dict[str, int] | None, str]:
        """({current, anon, file, shmem, held}, '') now, or (None, why not). `file` leaves shmem out, `held`
        is anon + shmem."""
        try:
            current = int(_read(self.file_path("current")))
            stat = parse_stat(_read(self.file_path("stat")))
            anon, cache, shmem = (stat[key] for key in (V2_STAT if self.version == 2 else V1_STAT))
        except (OSError, ValueError, KeyError) as exc:
            return None, f"{self.describe()} could not be read ({type(exc).__name__}: {exc})"
        return {"current": current, "anon": anon, "file": max(0, cache - shmem), "shmem": shmem,
                "held": anon + shmem}, ""


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def parse_stat(text: str) -> dict[str, int]:
    """memory.stat's `key value` lines as a dict (lines that are not two fields, or not a number, skipped)."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def memory_cgroup_of(pid: int | None, root: Path = CGROUP_ROOT, proc: Path = Path("/proc")
                     ) -> tuple[MemoryCgroup | None, str]:
    """The memory cgroup process `pid` is in, as the host sees it (/proc/PID/cgroup): the v1 memory
    controller's where there is one, else the unified (v2) hierarchy's when it has the memory controller;
    (None, why) when neither can be read."""
    if not pid:
        return None, "no host pid for the worker"
    try:
        lines = (proc / str(pid) / "cgroup").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError as exc:
        return None, f"/proc/{pid}/cgroup could not be read ({exc.strerror or exc})"
    v1 = v2 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            v1 = parts[2]
        elif parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
    if v1 is not None and (root / "memory" / V1_FILES["current"]).exists():
        return _existing(MemoryCgroup(root / "memory" / v1.lstrip("/"), 1))
    if v2 is not None:
        unified = root if (root / "cgroup.controllers").exists() else root / "unified"
        group = MemoryCgroup(unified / v2.lstrip("/"), 2)
        if (group.path / V2_FILES["current"]).exists():
            return group, ""
        return None, (f"the worker's cgroup {group.path} has no memory controller (memory.current missing): "
                      "the kernel's memory accounting is not enabled for it")
    return None, f"/proc/{pid}/cgroup names no memory cgroup"


def _existing(group: MemoryCgroup) -> tuple[MemoryCgroup | None, str]:
    if group.path.is_dir():
        return group, ""
    return None, f"{group.describe()} is not a folder on this host (another cgroup namespace?)"


SAMPLE_S = 0.05             # how often memory.current is read where the kernel keeps no peak


class PeakWatch:
    """The cgroup's peak memory since `start` (the whole tree's, children that exited included).

    v1: memory.max_usage_in_bytes, reset by writing 0. v2: memory.peak, kept open from `start`: a write
    resets it for reads through that open file (Linux 6.12+). Where the reset is refused the peak is the
    cgroup's since it was made (`note` says so: an upper bound on this stretch's). Where the file is missing
    (v2 before Linux 5.19) a thread samples memory.current every SAMPLE_S: a lower bound, said in `note`."""

    def __init__(self, group: MemoryCgroup):
        self.group, self.note, self._fd, self._sampler = group, "", None, None

    def start(self) -> None:
        """Begin a stretch: reset the peak to the usage now, or say in `note` why it could not be."""
        self.close()
        self.note = ""
        path = self.group.file_path("peak")
        if not path.exists():
            current = self.group.file_path("current")
            self._sampler = CurrentSampler(current)
            self.note = (f"a lower bound: {current.name} sampled every {SAMPLE_S * 1000:.0f} ms "
                         f"({self.group.describe()} has no {path.name}"
                         + (": Linux before 5.19 keeps no cgroup v2 peak)" if self.group.version == 2 else ")"))
            return
        try:
            self._fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except OSError:
                self._fd = None
                return
            self.note = f"not reset ({path} not writable by the host: {exc.strerror}): the peak since the cgroup began"
            return
        try:
            os.write(self._fd, b"0\n" if self.group.version == 1 else b"reset\n")
        except OSError as exc:
            self.note = f"not reset (the kernel refused: {exc.strerror}): the peak since the cgroup began"

    def read(self) -> tuple[int | None, str]:
        """(peak bytes since `start`, '') or (None, why not)."""
        if self._sampler is not None:
            peak = self._sampler.peak()
            return (peak, "") if peak is not None else (None, f"{self.group.file_path('current')} could not be sampled")
        if self._fd is None:
            return None, f"{self.group.file_path('peak')} could not be opened"
        try:
            return int(os.pread(self._fd, 64, 0).split()[0]), ""
        except (OSError, ValueError, IndexError) as exc:
            return None, f"{self.group.file_path('peak')} could not be read ({type(exc).__name__}: {exc})"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


class CurrentSampler:
    """The largest value a usage file showed since this began, read every SAMPLE_S by a daemon thread: the
    best a kernel without a peak file gives (what rose and fell between two reads is missed)."""

    def __init__(self, path: Path, every_s: float = SAMPLE_S):
        self.path, self.every_s, self._peak = path, every_s, None
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cgroup-current-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            value = int(_read(self.path))
        except (OSError, ValueError):
            return
        self._peak = value if self._peak is None else max(self._peak, value)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def peak(self) -> int | None:
        self._sample()
        return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


def worker_cgroup(name: str, pid: int | None = None) -> tuple[MemoryCgroup | None, str]:
    """A memory cgroup of its own for a local worker: a child of this process's (or `pid`'s) memory cgroup,
    where the box lets this user make one (root, or a delegated cgroup v2 subtree with the memory controller
    given to its children); (None, why not) elsewhere."""
    own, why = memory_cgroup_of(pid or os.getpid())
    if own is None:
        return None, why
    group = MemoryCgroup(own.path / name, own.version)
    try:
        group.path.mkdir()
    except OSError as exc:
        return None, f"no cgroup of its own: {own.path} is not writable here ({exc.strerror}; not delegated)"
    if not group.file_path("current").exists():
        remove_cgroup(group)
        return None, (f"no cgroup of its own: the memory controller is not given to the children of {own.path} "
                      "(its cgroup.subtree_control)")
    return group, ""


def move_into(group: MemoryCgroup, pid: int) -> str:
    """Move process `pid` (what it starts after follows it) into `group`; '' when done, else why not."""
    try:
        (group.path / "cgroup.procs").write_text(f"{pid}\n", encoding="ascii")
    except OSError as exc:
        return f"the worker could not be moved into {group.describe()} ({exc.strerror})"
    return ""


def remove_cgroup(group: MemoryCgroup, wait_s: float = 2.0) -> bool:
    """Remove a cgroup made by worker_cgroup once its processes are gone (its charges go to its parent): a
    killed process leaves it only once reaped, so a busy one is tried again for up to `wait_s`. False when it
    stays (a process still in it)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            group.path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


STAGES = ("baseline", "after_load", "before_passes", "after_passes")
STRETCHES = {"after_load": "load", "before_passes": "count", "after_passes": "passes"}   # the peak ending there
FORKED_NOTE = ("a forked worker is charged a copy of each of its fork server's pages it writes (the live-weight "
               "scan writes them all)")


class KernelLedger:
    """One worker's kernel readings over one task: its cgroup at the baseline (after prepare), right after
    load, after the host's count (before the passes) and after the passes, with the peak of each stretch
    between them (the watch is reset at each). What could not be read is said, never skipped. `forked`: a
    worker forked from a server shares its pages until it writes them (FORKED_NOTE)."""

    def __init__(self, group: MemoryCgroup | None, why: str = "", forked: bool = False, required: bool = True):
        self.group, self.why, self.forked, self.required = group, why, forked, required
        self.readings: dict[str, dict[str, int] | None] = {}
        self.peaks: dict[str, int | None] = {}
        self.peak_notes: dict[str, str] = {}
        self._watch = PeakWatch(group) if group is not None else None

    def mark(self, stage: str) -> None:
        """Read the cgroup at `stage` (one of STAGES); the peak of the stretch that ends here, and a new one
        begun (none after the passes)."""
        if self.group is None:
            return
        reading, why = self.group.reading()
        self.readings[stage] = reading
        if why:
            self.why = self.why or why
        if stage in STRETCHES:
            stretch = STRETCHES[stage]
            self.peaks[stretch], why = self._watch.read()
            self.peak_notes[stretch] = why or self._watch.note
        if stage == "after_passes":
            self._watch.close()
        else:
            self._watch.start()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def record(self, allowance: int) -> dict:
        """The readings as result.json keeps them, with the growths the checks use and the peak allowance."""
        read = {stage: self.readings.get(stage) for stage in STAGES}
        base, loaded, counted, passed = (read[stage] for stage in STAGES)
        peaks = [self.peaks.get(stretch) for stretch in STRETCHES.values()]
        return {"kernel_memory_source": self.group.describe() if self.group is not None else "",
                "kernel_memory_note": "" if self.group is not None and all(read.values()) else
                (self.why or "not read"),
                **{f"kernel_{stage}": reading for stage, reading in read.items()},
                **{f"kernel_peak_{stretch}_bytes": self.peaks.get(stretch) for stretch in STRETCHES.values()},
                "kernel_peak_note": "; ".join(f"{stretch}: {note}" for stretch, note in self.peak_notes.items()
                                              if note),
                "kernel_memory_required": self.required,
                "kernel_forked_note": FORKED_NOTE if self.forked else "",
                "kernel_held_load_growth_bytes": _growth(base, loaded, "held"),
                "kernel_held_passes_growth_bytes": _growth(counted, passed, "held"),
                "kernel_held_task_growth_bytes": None if self.forked else _growth(base, passed, "held"),
                "kernel_peak_passes_growth_bytes": transient_peak(self.peaks.get("passes"), counted, passed),
                "kernel_peak_task_growth_bytes": None if self.forked else _above(_max(*peaks), base),
                "peak_allowance_bytes": allowance}


def transient_peak(peak: int | None, before: dict | None, after: dict | None) -> int | None:
    """How far the peak of a stretch rose above the usage at its start, less the file pages the stretch added
    that are still cached at its end: a library's code read for the first time is charged to whoever reads it
    first and stays cached (a worker on a fresh box pays for it, one beside a warm cache does not), while
    weights inflated, or held by a child, and dropped again are not cached. None without the readings."""
    if peak is None or not before or not after:
        return None
    return peak - before["current"] - max(0, after["file"] - before["file"])


def _growth(before: dict | None, after: dict | None, key: str) -> int | None:
    return after[key] - before[key] if before and after else None


def _above(peak: int | None, reading: dict | None) -> int | None:
    return peak - reading["current"] if peak is not None and reading else None


def _max(*values: int | None) -> int | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def not_read(record: dict) -> str:
    return (f"memory not read from the kernel's accounting: {record['kernel_memory_note']} (the resident-memory "
            "checks ran alone)")


def kernel_notes(record: dict) -> list[str]:
    """What the row notes, not flags: the kernel's accounting not read where the backend cannot promise it (the
    local backend on a box that delegates no cgroup: a participant's laptop), and a forked worker's reading
    after the passes left unset against its baseline. The resident-memory checks ran in both cases."""
    notes = []
    if record.get("kernel_memory_note") and not record.get("kernel_memory_required", True):
        notes.append(not_read(record))
    if record.get("kernel_forked_note") and not record.get("kernel_memory_note"):
        notes.append(f"memory (kernel) after the passes not set against the baseline: {record['kernel_forked_note']}")
    return notes


def kernel_reasons(record: dict, explained: int, resident_slack: int) -> list[str]:
    """weights_unaccounted from the kernel's accounting: anon + shmem taken at load beyond the counted bytes
    past the resident slack; anon + shmem kept, or a peak reached, during the passes above what was there
    before them, past the task's peak allowance; anon + shmem held after the passes beyond the counted bytes
    past both (what team code took between load and the passes, while the host counted, included). A reading
    that could not be made is said (never passes in silence). Nothing for a record made before these
    readings existed."""
    if "kernel_memory_note" not in record:
        return []
    if record["kernel_memory_note"]:
        return [not_read(record)] if record.get("kernel_memory_required", True) else []
    reasons = []
    allowance = record.get("peak_allowance_bytes") or 0
    checks = (("kernel_held_load_growth_bytes", explained, resident_slack,
               "memory the kernel charges the worker's tree (anon + shmem) grew at load"),
              ("kernel_held_passes_growth_bytes", 0, allowance,
               "memory the kernel charges the worker's tree (anon + shmem) grew during the timed passes"),
              ("kernel_peak_passes_growth_bytes", 0, allowance,
               "kernel's peak of the worker's tree (children that exited included) during the timed passes rose"),
              ("kernel_held_task_growth_bytes", explained, resident_slack + allowance,
               "memory the kernel charges the worker's tree (anon + shmem) held after the passes"))
    for key, counted, slack, label in checks:
        value = record.get(key)
        if value is not None and value - counted > slack:
            beyond = (f"beyond the {counted / 2**20:,.1f} MiB the counted weights explain " if counted
                      else "above what it held before them ")
            reasons.append(f"weights_unaccounted: the {label} {(value - counted) / 2**20:,.0f} MiB {beyond}"
                           f"(allowed {slack / 2**20:.1f} MiB)")
    if record.get("kernel_peak_passes_bytes") is None:
        reasons.append(f"peak memory (kernel) not read: {record.get('kernel_peak_note') or 'unknown'}")
    elif record.get("kernel_peak_note"):
        reasons.append(f"peak memory (kernel): {record['kernel_peak_note']}")
    return reasons


def memory_flags(record: Mapping[str, Any]) -> list[str]:
    """weights_unaccounted when the worker's tree held more host memory than its counted weights explain, at
    load or at its peak during the passes, from one task's timing record: the resident readings
    (crosscheck.memory_reasons), the kernel's accounting (kernel_reasons, against the record's explained bytes
    and resident slack), then a peak or a baseline that could not be read (crosscheck.reading_reasons), never
    passed in silence."""
    return [*memory_reasons(record),
            *kernel_reasons(record, record.get("explained_bytes") or 0, record.get("resident_slack_bytes") or 0),
            *reading_reasons(record)]
