"""Where each side's time goes, read by the host (issue 30): per task and side, beside end-to-end time, the
device's busy share and the worker's CPU time during that side's timed windows.

Timed windows: the scored ones (round 0's first-sight blocks, their twins and spares included, and every
later round; a dirty reference window timed again counts each time it ran), each timed alone with the
other side frozen. A window's span runs from just before its untimed wake-up call to its last reply (the
wake-up is one tiny round trip). Warm-up windows are left out.

Device busy share, on a GPU: from NVML's per-process utilization samples, read by the host (the drain
check's reader, harness.device_activity) after each window. Per-process rather than the device's own
utilization samples because the two sides' windows follow each other closer than NVML's sample period
(200 ms on the H200): the first-sight round swaps sides every ~0.1 s, so a period's device-wide figure mixes
both sides, where a per-process sample says whose kernels ran. The pids are the host's list of the side's
processes (the backend's, never the worker's word; every process of its tree, so work moved into a child
counts), and the samples come from the driver: a team cannot bend the figure.

Rule (P: NVML's sample period, learned as the drain check learns it; a sample stamped e covers (e - P, e]):
a side was busy u = min(100, sum of its pids' sm %) / 100 of a period. Over the set of periods that overlap
any of the side's windows, busy_s = sum of u * P, and share = min(1, busy_s / wall_s), wall_s the windows'
summed wall time. Outside its windows a side is frozen or idle on the device (a reply in the host's hands
means its kernels ran), so the busy part of a period straddling a window's edge is the window's. Errors:
NVML's whole percents; the tail of the last warm-up window may share a period with round 0's first block
(at most one period a task).

CPU time, everywhere: user + system (of children reaped inside the tree too) of every host pid of the side,
read with psutil before and after each window; cpu_busy = cpu_s / wall_s, cores busy on average (a forward
on 4 threads can reach 4).

The side's own figure (`own`): an untimed pass (its first PROFILE_BATCHES batches) after the rounds, the
other side frozen, in which the worker installs hooks on its predictor's top-level torch modules
(harness.probe.forward_clock) and reports seconds inside their forward against seconds inside predict(). It
comes from the worker's process, which team code controls: shown marked as the side's own figure, never
used in a verdict. An untimed pass rather than hooks in the timed windows: hooks cost every forward a few
microseconds inside the timed unit, and the synchronize that makes a GPU forward's time its own would
change what is timed.

A figure that cannot be read is None with its reason in the side's `notes`, never a silent blank.
"""

from __future__ import annotations

import bisect
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from harness.device_activity import MARGIN, ActivityUnreadable, DeviceActivity, ProcessSample, watch_pids
from harness.freezing import FreezeLedger, timed_alone
from harness.worker_link import WorkerFailed, WorkerTimeout

PROFILE_BATCHES = 4         # batches of the untimed pass for a side's own figure: an indication, kept cheap
                            # (BERT-base's CMRC2018 batch takes seconds on a small CPU)


@dataclass
class SideWindows:
    """One side's timed windows over a task: spans (host wall clock), CPU seconds, pids seen, notes."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_unread: str = ""
    pids: set[int] = field(default_factory=set)

    @property
    def wall_s(self) -> float:
        return sum(end - start for start, end in self.spans)


def cpu_seconds(pids: Iterable[int]) -> tuple[float, str]:
    """User + system seconds of `pids`, their reaped children's included (psutil); a process gone before it
    was read adds nothing. The second item says why a process could not be read ("" when all were)."""
    import psutil

    total, why = 0.0, ""
    for pid in sorted(set(pids)):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        except (psutil.AccessDenied, OSError) as exc:
            why = why or f"the CPU time of process {pid} cannot be read ({type(exc).__name__})"
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total, why


def busy_seconds(samples: Iterable[ProcessSample], pids: set[int], spans: Sequence[tuple[float, float]],
                 period_s: float) -> float:
    """Seconds the device was busy with `pids`' work over the periods that overlap any of `spans` (disjoint,
    in time order): each such period counts min(100, sum of the pids' sm %) percent of `period_s`."""
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    by_period: dict[int, int] = {}
    for sample in samples:
        if sample.pid not in pids:
            continue
        last = bisect.bisect_left(starts, sample.at_s) - 1        # the latest window opened before e
        if last >= 0 and ends[last] > sample.at_s - period_s:
            key = round(sample.at_s * 1e6)
            by_period[key] = by_period.get(key, 0) + sample.sm
    return sum(min(sm, 100) for sm in by_period.values()) / 100 * period_s


class SplitRecorder:
    """The timekeeper's handle on the split for one task: `start` once both models are loaded, `window(side)`
    around each timed window (the other side frozen), `finish` after the last round. `open_activity` opens
    NVML (harness.device_activity), `clock` is the host's wall clock NVML stamps samples with, `read_cpu`
    reads CPU seconds (cpu_seconds)."""

    def __init__(self, open_activity: Callable[[], DeviceActivity] = DeviceActivity.open,
                 clock: Callable[[], float] = time.time,
                 read_cpu: Callable[[Iterable[int]], tuple[float, str]] = cpu_seconds):
        self.open_activity, self.clock, self.read_cpu = open_activity, clock, read_cpu
        self.sides: dict[str, SideWindows] = {}
        self.pid_sources: dict[str, Callable[[], set[int]]] = {}
        self.activity: DeviceActivity | None = None
        self.samples: list[ProcessSample] = []
        self.device = ""
        self.device_unread = ""          # why the device share cannot be read on this GPU ("" when it can)

    def start(self, device: str, pid_sources: dict[str, Callable[[], set[int]]]) -> None:
        """Begin recording each side whose host pids `pid_sources[side]` returns. On a GPU (`device`, as the
        reference's worker resolved it) NVML must list the reference's processes among its compute
        processes: otherwise pids are not comparable (another pid namespace) and the share is not read."""
        self.device, self.pid_sources = device, pid_sources
        self.sides = {name: SideWindows() for name in pid_sources}
        if not device.startswith("cuda"):
            return
        try:
            activity = self.open_activity()
        except ActivityUnreadable as exc:
            self.device_unread = str(exc)
            return
        try:
            watch_pids(activity, set(pid_sources["reference"]()), "the reference's")
        except ActivityUnreadable as exc:
            activity.close()
            self.device_unread = str(exc)
            return
        self.activity = activity
        self.samples.extend(activity.fresh)

    def _pids(self, side: str) -> set[int]:
        try:
            pids = set(self.pid_sources[side]())
        except Exception:        # the side's processes could not be listed: its CPU reading says so
            pids = set()
        self.sides[side].pids |= pids
        return pids

    @contextmanager
    def window(self, side: str) -> Iterator[None]:
        """One timed window of `side`: its span, the CPU seconds of its processes across it, and NVML's new
        samples read right after it (the other side still frozen). An unknown side records nothing."""
        log = self.sides.get(side)
        if log is None:
            yield
            return
        pids = self._pids(side)
        before, why_before = self.read_cpu(pids)
        start = self.clock()
        yield
        end = self.clock()
        after, why_after = self.read_cpu(pids | self._pids(side))
        log.spans.append((start, end))
        log.cpu_s += max(0.0, after - before)          # a process reaped outside the tree takes its time away
        log.cpu_unread = log.cpu_unread or why_before or why_after or ("" if pids else "the side's processes are unknown")
        self._poll()

    def _poll(self) -> None:
        if self.activity is None:
            return
        try:
            self.activity.poll()
        except ActivityUnreadable as exc:
            self.device_unread = f"NVML failed during the run: {exc}"
            self.close()
            return
        self.samples.extend(self.activity.fresh)

    def finish(self) -> dict[str, dict[str, Any]]:
        """Each side's record (`side_record`), once the period holding the last window's end is published
        (a wait of at most a period and a margin)."""
        last_end = max((end for log in self.sides.values() for _, end in log.spans), default=None)
        if self.activity is not None and last_end is not None:
            publish = last_end + self.activity.period_s * (1 + MARGIN)
            while self.activity is not None and self.clock() < publish:
                self.activity.sleep(publish - self.clock())
                self._poll()
        records = {name: self.side_record(name) for name in self.sides}
        self.close()
        return records

    def side_record(self, side: str) -> dict[str, Any]:
        """The `time_split` keys of one side (README "Where the time goes")."""
        log = self.sides[side]
        wall = log.wall_s
        record: dict[str, Any] = {"windows": len(log.spans), "wall_s": wall, "cpu_s": None, "cpu_busy": None,
                                  "device_busy_s": None, "device_busy": None, "nvml_period_s": None, "notes": []}
        if not log.spans:
            record["notes"].append("no timed window was recorded")
            return record
        if log.cpu_unread:
            record["notes"].append(f"CPU time not read: {log.cpu_unread}")
        else:
            record.update(cpu_s=log.cpu_s, cpu_busy=log.cpu_s / wall if wall > 0 else None)
        if not self.device.startswith("cuda"):
            return record
        if self.activity is None and not self.device_unread:
            self.device_unread = "NVML was closed before the task ended"
        if self.device_unread:
            record["notes"].append(f"device busy share not read: {self.device_unread}")
            return record
        assert self.activity is not None
        if not self.activity.period_learned:
            record["notes"].append("device busy share not read: NVML's sample period was not learned (fewer than "
                                   "three busy periods seen)")
            return record
        busy = busy_seconds(self.samples, log.pids, log.spans, self.activity.period_s)
        record.update(device_busy_s=busy, device_busy=min(1.0, busy / wall) if wall > 0 else None,
                      nvml_period_s=self.activity.period_s)
        return record

    def close(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None


# -- the side's own figure: one untimed pass with hooks on its top-level torch modules -----------------------

def _seconds(value: Any) -> float | None:
    """A finite, non-negative number of seconds from a worker's reply, else None (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def own_figure(profiles: Sequence[Any]) -> dict[str, Any]:
    """The `own` record from the worker's `profile` replies (hostile bytes: each field checked): seconds
    inside predict() and inside the top-level modules' forward over the pass, their share, and the worker's
    note (no torch module found, say: then no share)."""
    predict_s = forward_s = 0.0
    notes: list[str] = []
    for profile in profiles:
        if not isinstance(profile, dict):
            return {"forward_share": None, "note": "the worker's profile reply is not an object"}
        note = profile.get("note")
        if isinstance(note, str) and note and note[:200] not in notes:
            notes.append(note[:200])
        predict, forward = _seconds(profile.get("predict_s")), _seconds(profile.get("forward_s"))
        if predict is None or forward is None:
            return {"forward_share": None, "note": "; ".join(notes[:3]) or "the worker's profile reply holds no "
                                                                            "valid seconds"}
        predict_s, forward_s = predict_s + predict, forward_s + forward
    share = min(1.0, forward_s / predict_s) if predict_s > 0 else None
    return {"predict_s": predict_s, "forward_s": forward_s, "forward_share": share, "note": "; ".join(notes[:3])}


def own_split_pass(links: dict[str, Any], batches: Sequence[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each side's own figure (own_figure) over one untimed pass of the first PROFILE_BATCHES of `batches`, that
    side alone (the others frozen). A side whose worker cannot answer (an image older than this harness, a predict() that raises)
    gets a note; a worker past its deadline or gone ends the task as any call would."""
    found: dict[str, dict[str, Any]] = {}
    for name, link in links.items():
        profiles = []
        try:
            with timed_alone([other for other in links.values() if other is not link], FreezeLedger()):
                for batch in batches[:PROFILE_BATCHES]:
                    _, reply = link.call("profile", batch=batch)
                    profiles.append(reply.get("profile"))
        except WorkerTimeout:
            raise
        except WorkerFailed as exc:
            found[name] = {"forward_share": None, "note": f"the worker could not report its own split: {exc}"[:300]}
            continue
        found[name] = own_figure(profiles)
    return found
