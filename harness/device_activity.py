"""Queued device work of the frozen side, kept out of the reference's timed windows (issue 27).

Freezing (harness.freezing) stops the side not being timed on the host only: kernels it queued before the
freeze keep running. Measured on an H200: a process that queued 3.27 s of matrix products and was then
SIGSTOPped kept the GPU busy 3.42 s, and another process's loop ran 2.23x slower meanwhile (1.00x once NVML
read the device idle); beside an idle saboteur the reference's timed passes were 2.2-2.6x slower.

So, around each guarded window, with the other side already frozen:
- before it opens, `DeviceActivity.wait_drained` polls NVML until the device is drained, bounded
  (`max_wait_s`, then the window is timed anyway and the timeout counted);
- after it, `DeviceActivity.check_window` reads the per-process samples that cover the window and names
  every process other than the timed side that was busy on the device during it (a dirty window).

Rules (P: NVML's sample period, 200 ms on the H200, 1/6 s to 1 s by product: learned from the spacing of a
busy pid's samples, 1 s until then; a sample's timestamp is the end of its period, on the host's wall
clock, in microseconds):
- drained: at a poll at host time r >= freeze + P (and a margin of P / 4 for publication), the last
  period (the one ending in (r - P, r]) was idle and no process but the timed side has a busy sample
  stamped in (r - P - margin, r]. Idle is read from the device utilization
  (0 %: no kernel ran over the whole period; the timed side is idle while we wait, so any kernel would be
  someone else's), or, where the device utilization cannot be read, from the per-process samples alone
  (a busy process gets a sample every period: none from anyone else in the last one). The period may
  have begun before the freeze: that is sound, since the frozen side cannot queue anything after it, so
  an idle stretch from the freeze to the period's end means its queue was already empty.
- dirty: a sample of a pid that is not the timed side's, busy (sm or memory utilization above 0), whose
  period overlaps the window (timestamp after the window's start and less than P after its end). The
  check waits, bounded, until the period holding the window's end has been published.

Polling is on demand, not a background thread: NVML keeps its samples and hands over everything newer
than the last timestamp seen, so reading only while the harness waits anyway (before and after a guarded
window, the team frozen) loses nothing, and no poller competes with the timed unit for the host's CPU.

Only the reference's scored windows (its first-sight blocks and every later round) are guarded. The
reference is harness code whose replies are concrete: its device work is done when its predictions are in
the host's hands, so it leaves nothing queued into the team's windows. Warm-up windows are not guarded:
they do not enter T. Cost: at least 1.25 periods before a guarded window (more while queued work drains,
at most `max_wait_s`) and 1.25 after it (the window's last period published, the team still frozen),
about 0.5 s a guarded window on the H200, recorded on the row (`device_drain`: wait_s, check_wait_s).
A dirty window is timed again at most RETRIES times; once one stayed dirty through them all (another
process holds the device for good), later dirty windows are kept at once and the drain waits are cut to
a few periods, so a busy box costs a bounded time and a flagged row, not hours.

Not covered: work NVML does not attribute to a process (the dirty check cannot name it, though the device
utilization still holds the drain wait back), activity shorter than NVML reports within a period, and
boxes where NVML gives no per-process samples (MIG, vGPU, no NVML, pids not visible from the harness's
pid namespace): there the row says `checked: False` with why, and the run is flagged (drain_reasons, the
wording of this check's flags).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

UNLEARNED_PERIOD_S = 1.0        # NVML's sample period is 1/6 s to 1 s by product: the longest until learned
MARGIN = 0.25                   # of a period: a sample is published a little after its period ends
POLL_FRACTION = 0.125           # of a period between polls while waiting
MAX_WAIT_S = 10.0               # the drain wait's bound (the measured saboteur queued 3.4 s)
RETRIES = 3                     # a dirty reference window is timed again at most this many times
PERSISTENT_WAIT_PERIODS = 4     # the drain wait's bound, in periods, once a window stayed dirty through the retries
NOT_FOUND, NOT_SUPPORTED = 6, 3   # NVML_ERROR_NOT_FOUND, NVML_ERROR_NOT_SUPPORTED (nvml.h)
KEEP_S = 60.0                   # seconds of samples the log keeps (a window and its periods need far less)


class ActivityUnreadable(Exception):
    """NVML cannot give what the drain check needs; the message says why."""


@dataclass(frozen=True)
class ProcessSample:
    """One per-process utilization sample: the period ending at `at_s` (host wall clock, seconds)."""

    pid: int
    at_s: float
    sm: int
    mem: int

    @property
    def busy(self) -> bool:
        return self.sm > 0 or self.mem > 0


@dataclass(frozen=True)
class DrainWait:
    drained: bool
    waited_s: float
    busy_pids: dict[int, int]          # pid: highest sm % seen from others while waiting


@dataclass(frozen=True)
class WindowCheck:
    dirty: bool
    busy_pids: dict[int, int]          # pid: highest sm % in the periods that cover the window
    waited_s: float


def _error_code(exc: Exception) -> int | None:
    return getattr(exc, "value", None)


def sample_period_s(samples: Iterable[ProcessSample]) -> float | None:
    """NVML's sample period, from the spacing of one pid's consecutive samples while it stayed busy (one
    sample a period: the shortest spacings; longer ones are periods it was idle in); None before three such
    spacings were seen."""
    stamps: dict[int, set[float]] = {}
    for sample in samples:
        stamps.setdefault(sample.pid, set()).add(sample.at_s)
    spacings = []
    for times in stamps.values():
        ordered = sorted(times)
        spacings += [b - a for a, b in zip(ordered, ordered[1:]) if 0.01 < b - a <= UNLEARNED_PERIOD_S * 2]
    if len(spacings) < 3:
        return None
    shortest = min(spacings)
    return statistics.median(s for s in spacings if s <= shortest * 1.2)


class DeviceActivity:
    """NVML's per-process and device utilization, read on demand into a host-side log (`samples`,
    `readings`). `nvml` is the pynvml module or a stand-in; `clock` the host's wall clock in seconds (NVML
    stamps samples with it); `sleep` waits."""

    def __init__(self, nvml: Any, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 max_wait_s: float = MAX_WAIT_S):
        self.nvml, self.clock, self.sleep = nvml, clock, sleep
        self.period_s, self.period_learned, self.max_wait_s = UNLEARNED_PERIOD_S, False, max_wait_s
        self.samples: list[ProcessSample] = []
        self.readings: list[tuple[float, int]] = []        # (host time, device utilization %)
        self.fresh: list[ProcessSample] = []                # the samples the last poll added (harness.time_split)
        self.device_utilization = True                    # False where NVML cannot read it (MIG, say)
        try:
            nvml.nvmlInit()
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:
            raise ActivityUnreadable(f"NVML does not answer ({exc})") from None
        if not self.handles:
            raise ActivityUnreadable("NVML sees no GPU")
        self.last_seen = [0] * len(self.handles)

    @classmethod
    def open(cls, nvml: Any = None, **options: Any) -> "DeviceActivity":
        """On the real NVML unless `nvml` is given; ActivityUnreadable where it cannot be used."""
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                raise ActivityUnreadable("nvidia-ml-py is not installed (pip install 'lightlm-harness[gpu]')") from None
        return cls(nvml, **options)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    def compute_pids(self) -> set[int]:
        """Every pid NVML lists with a compute context, on any GPU."""
        try:
            return {int(p.pid) for h in self.handles for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)}
        except Exception as exc:
            raise ActivityUnreadable(f"NVML cannot list the GPU's processes ({exc})") from None

    def focus(self, pids: set[int]) -> None:
        """Watch only the GPUs on which any of `pids` has a compute context (the timed side's): on a box of
        several GPU slots, another slot's workers are busy on their own GPU, which slows nobody here."""
        try:
            mine = [i for i, h in enumerate(self.handles)
                    if {int(p.pid) for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)} & pids]
        except Exception as exc:
            raise ActivityUnreadable(f"NVML cannot list the GPU's processes ({exc})") from None
        if mine:
            self.handles = [self.handles[i] for i in mine]
            self.last_seen = [self.last_seen[i] for i in mine]

    def poll(self) -> float:
        """New per-process samples and the device utilization, into the log; the host time of the poll."""
        now = self.clock()
        self.fresh = []
        for index, handle in enumerate(self.handles):
            try:
                found = self.nvml.nvmlDeviceGetProcessUtilization(handle, self.last_seen[index])
            except Exception as exc:
                if _error_code(exc) == NOT_FOUND:      # no sample newer than the last seen
                    found = []
                elif _error_code(exc) == NOT_SUPPORTED:
                    raise ActivityUnreadable("NVML gives no per-process utilization on this GPU (MIG or "
                                             "vGPU?)") from None
                else:
                    raise ActivityUnreadable(f"NVML per-process utilization failed ({exc})") from None
            for sample in found:
                stamp = int(sample.timeStamp)
                self.last_seen[index] = max(self.last_seen[index], stamp)
                self.fresh.append(ProcessSample(int(sample.pid), stamp / 1e6, int(sample.smUtil),
                                                int(sample.memUtil)))
        self.samples.extend(self.fresh)
        if not self.period_learned:
            learned = sample_period_s(self.samples)
            if learned is not None:
                self.period_s, self.period_learned = learned, True
        if self.samples and self.samples[0].at_s < now - KEEP_S:       # older ones are never asked for
            self.samples = [s for s in self.samples if s.at_s >= now - KEEP_S]
            self.readings = [r for r in self.readings if r[0] >= now - KEEP_S]
        if self.device_utilization:
            try:
                busiest = max(int(self.nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self.handles)
                self.readings.append((now, busiest))
            except Exception as exc:
                if _error_code(exc) != NOT_SUPPORTED:
                    raise ActivityUnreadable(f"NVML device utilization failed ({exc})") from None
                self.device_utilization = False
        return now

    def others_busy(self, since: float, until: float, timed: set[int]) -> dict[int, int]:
        """pid: highest sm % of busy samples from pids not in `timed` whose period ends in (since, until]."""
        found: dict[int, int] = {}
        for sample in self.samples:
            if sample.busy and sample.pid not in timed and since < sample.at_s <= until:
                found[sample.pid] = max(found.get(sample.pid, 0), sample.sm)
        return found

    def _last_period_idle(self, now: float, timed: set[int]) -> bool:
        if self.others_busy(now - self.period_s * (1 + MARGIN), now, timed):
            return False
        if self.device_utilization:
            return bool(self.readings) and self.readings[-1][0] == now and self.readings[-1][1] == 0
        return True

    def wait_drained(self, frozen_at: float, timed: Iterable[int], bound_s: float | None = None) -> DrainWait:
        """Poll until the device is drained (module docstring) or `bound_s` (default `max_wait_s`) after the
        freeze passes."""
        timed = set(timed)
        bound_s = self.max_wait_s if bound_s is None else bound_s
        started = self.clock()
        busy: dict[int, int] = {}
        while True:
            now = self.poll()
            earliest = frozen_at + self.period_s * (1 + MARGIN)      # the period may just have been learned
            for pid, sm in self.others_busy(frozen_at, now, timed).items():
                busy[pid] = max(busy.get(pid, 0), sm)
            if now >= earliest and self._last_period_idle(now, timed):
                return DrainWait(True, now - started, busy)
            if now >= frozen_at + bound_s:
                return DrainWait(False, now - started, busy)
            self.sleep(max(self.period_s * POLL_FRACTION, min(earliest - now, self.period_s * POLL_FRACTION * 4)))

    def check_window(self, start: float, end: float, timed: Iterable[int]) -> WindowCheck:
        """Whether a process other than `timed` was busy on the device between `start` and `end` (host
        times): waits until the period holding `end` is published, at most a period and a margin more."""
        timed = set(timed)
        started = self.clock()
        now = self.poll()
        while now < end + self.period_s * (1 + MARGIN):
            self.sleep(min(end + self.period_s * (1 + MARGIN) - now, self.period_s * POLL_FRACTION * 4))
            now = self.poll()
        busy = self.others_busy(start, end + self.period_s, timed)
        return WindowCheck(bool(busy), busy, now - started)


@dataclass
class DrainRecord:
    """What guarding cost over a task and what it found: the timing record's `device_drain`."""

    checked: bool = False
    why_not: str = ""
    applicable: bool = True
    waits: int = 0
    wait_s: float = 0.0
    max_wait_s: float = 0.0
    check_wait_s: float = 0.0
    timeouts: int = 0
    guarded_windows: int = 0
    discarded_windows: int = 0
    dirty_after_retries: int = 0
    dirty: list[dict[str, Any]] = field(default_factory=list)     # figures of each window kept dirty
    busy_while_draining: dict[str, int] = field(default_factory=dict)   # pid: highest sm % seen while waiting
    period_s: float = 0.0            # NVML's sample period the rules used (learned, or the 1 s fallback)
    period_learned: bool = False
    retries: int = RETRIES

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self), dirty=list(self.dirty), busy_while_draining=dict(self.busy_while_draining))


@dataclass
class Verdict:
    """One guarded window: dirty when a process other than the timed side was busy on the device in it."""

    dirty: bool = False
    busy_pids: dict[int, int] = field(default_factory=dict)
    drained: bool = True


def watch_pids(activity: "DeviceActivity", pids: set[int], whose: str) -> None:
    """Watch the GPU `pids` are listed on (focus) and take the first samples; ActivityUnreadable, naming `whose`
    processes, when the pids are unknown or NVML lists none of them (another pid namespace)."""
    if not pids:
        raise ActivityUnreadable(f"{whose} host pids are unknown")
    listed = activity.compute_pids()
    if not pids & listed:
        raise ActivityUnreadable(f"{whose} processes {sorted(pids)} are not among the GPU's compute processes "
                                 f"NVML lists {sorted(listed)} (another pid namespace?)")
    activity.focus(pids)
    activity.poll()


class DrainGuard:
    """The timekeeper's handle on the drain check for one task: `start` once both models are loaded,
    `before` right after the other side is frozen, `after` when the window ends (before the thaw), and
    `retime` to decide what to do with a dirty window. Where it cannot check (no GPU in use, no NVML, no
    per-process samples) it does nothing and its record says why."""

    def __init__(self, open_activity: Callable[[], DeviceActivity] = DeviceActivity.open, retries: int = RETRIES):
        self.open_activity, self.retries = open_activity, retries
        self.activity: DeviceActivity | None = None
        self.timed_pids: Callable[[], set[int]] = set
        self.frozen_pids: Callable[[], set[int]] = set
        self.record = DrainRecord(why_not="not started")
        self._frozen_at = self._opened_at = 0.0

    @property
    def active(self) -> bool:
        return self.activity is not None

    def start(self, device: str, timed_pids: Callable[[], set[int]],
              frozen_pids: Callable[[], set[int]] = set) -> None:
        """Begin guarding the side whose pids `timed_pids` returns, where `device` (the side's, as its worker
        resolved it) is a GPU and NVML can attribute its work; otherwise say why not. `frozen_pids`: the
        other side's (the team's), whose activity in a kept window is that side's failure (frozen_busy)."""
        self.frozen_pids = frozen_pids
        if not str(device).startswith("cuda"):
            self.record = DrainRecord(why_not=f"device {device or 'unknown'}: no device queue", applicable=False)
            return
        try:
            activity = self.open_activity()
        except ActivityUnreadable as exc:
            self.record = DrainRecord(why_not=str(exc))
            return
        try:
            watch_pids(activity, set(timed_pids()), "the timed side's")
        except ActivityUnreadable as exc:
            activity.close()
            self.record = DrainRecord(why_not=str(exc))
            return
        self.activity, self.timed_pids = activity, timed_pids
        self.record = DrainRecord(checked=True, period_s=activity.period_s, period_learned=activity.period_learned,
                                  retries=self.retries)

    def _fail(self, exc: ActivityUnreadable) -> None:
        self.record.checked = False
        self.record.why_not = f"NVML failed during the run, later windows not checked: {exc}"
        if self.activity is not None:
            self.activity.close()
        self.activity = None

    def before(self) -> None:
        """The other side was just frozen: wait until its queued device work has drained (bounded)."""
        if self.activity is None:
            return
        # once a window stayed dirty through every retry the activity is there for good (another process
        # holds the device): later waits are cut to a few periods, so the task's cost stays bounded
        bound = (min(self.activity.max_wait_s, self.activity.period_s * PERSISTENT_WAIT_PERIODS)
                 if self.record.dirty_after_retries else None)
        try:
            wait = self.activity.wait_drained(self.activity.clock(), self.timed_pids(), bound)
        except ActivityUnreadable as exc:
            self._fail(exc)
            return
        record = self.record
        record.waits += 1
        record.wait_s += wait.waited_s
        record.max_wait_s = max(record.max_wait_s, wait.waited_s)
        record.timeouts += not wait.drained
        for pid, sm in wait.busy_pids.items():
            record.busy_while_draining[str(pid)] = max(record.busy_while_draining.get(str(pid), 0), sm)
        record.period_s, record.period_learned = self.activity.period_s, self.activity.period_learned
        self._opened_at = self.activity.clock()

    def after(self, verdict: Verdict) -> None:
        """The window ended: fill `verdict` from the samples that cover it."""
        if self.activity is None:
            return
        try:
            check = self.activity.check_window(self._opened_at, self.activity.clock(), self.timed_pids())
        except ActivityUnreadable as exc:
            self._fail(exc)
            return
        self.record.guarded_windows += 1
        self.record.check_wait_s += check.waited_s
        verdict.dirty, verdict.busy_pids = check.dirty, check.busy_pids

    def retime(self, verdict: Verdict, attempt: int, label: str) -> bool:
        """Whether to discard a window and time it again: dirty and under the retry bound. A window still
        dirty after `retries` re-timings is kept and its figures recorded (the row is flagged); after one
        such window, later dirty ones are kept at once (the activity is persistent: retrying only costs)."""
        if not verdict.dirty:
            return False
        if attempt < self.retries and not self.record.dirty_after_retries:
            self.record.discarded_windows += 1
            return True
        self.record.dirty_after_retries += 1
        self.record.dirty.append({"window": label, "attempts": attempt + 1,
                                  "busy_pids": {str(pid): sm for pid, sm in verdict.busy_pids.items()}})
        return False

    def frozen_busy(self, verdict: Verdict) -> list[int]:
        """The frozen side's pids busy on the device in a window kept dirty: that side queued device work
        that ran on while it was frozen, through every re-timing. Only another process's activity (another
        slot's, a stranger's) is kept and flagged; the team's own is its failure, never a slower T_bert."""
        if not verdict.dirty:
            return []
        try:
            frozen = set(self.frozen_pids())
        except Exception:         # the side's processes could not be listed: judged by the flag alone
            return []
        return sorted(pid for pid in verdict.busy_pids if pid in frozen)

    def close(self) -> None:
        if self.activity is not None:
            self.activity.close()


def drain_reasons(record: Mapping[str, Any]) -> list[str]:
    """The row's flags from one task's timing record's `device_drain` (DrainRecord.as_dict): the drain check
    not run on a GPU (and why), or reference windows kept dirty after the re-timings (with their figures)."""
    drain = record.get("device_drain")
    if not drain or not drain.get("applicable", True):
        return []
    reasons = []
    if not drain.get("checked"):
        reasons.append("the team's queued device work was not kept out of the reference's windows "
                       f"(drain check not run: {drain.get('why_not') or 'unknown'})")
    if drain.get("dirty_after_retries"):
        figures = "; ".join(f"{d['window']}: pid(s) " + ", ".join(f"{pid} at {sm}% sm" for pid, sm in
                                                                 d["busy_pids"].items())
                            for d in drain.get("dirty", [])[:3])
        reasons.append(f"{drain['dirty_after_retries']} reference window(s) still had another process busy "
                       f"on the device after {drain.get('retries', RETRIES)} re-timings, kept ({figures})")
    return reasons
