"""The timekeeper: harness code in the host process that times workers it does not trust.

It owns the inputs, the batch schedule, the clock and the predictions. The timed unit is one batch's round
trip: from sending the pre-encoded batch to holding the whole reply in host memory (predict() end to end,
tokenization included, for the team and the reference alike). Decoding and checking happen after the clock
stops. Nothing a worker writes anywhere is read back; a worker's only influence is the bytes it replies.

Per task: both workers load (load round trip and the first call recorded apart), warm up on fresh inputs of
the same shapes (harness.timed_inputs) until each side's window time settles, then time rounds. A round is
one pass over every batch, in an order shuffled from the run seed, for the team and for the reference
(which goes first alternates, ABAB), so drift of the box falls on both. Nothing timed is ever repeated.
Round 0 is every real input's first sight, one pass, the two sides taking turns a block of batches at a
time: its predictions are the ones scored, and each real batch is timed beside two fresh inputs of its
shape (first sight too), the three calls in a random order, which the caching audit compares it with
(stats.caching_audit). Every later round is built exactly as round 0, a newly made pass of fresh inputs in
the real inputs' place (each batch's time is the mean of its three calls), so the team is timed in the
conditions of its first sight (time_later_round). While one side's block is timed, the other is frozen
(harness.freezing). Freezing stops the host side only: before each of the reference's scored blocks (in
round 0 and every later round) the host waits until the team's queued device work has drained,
and a window in which another process was busy on the device is discarded and timed again, a bounded
number of times (harness.device_activity). A warm-up that did not settle within warmup_max_s is timed anyway
and the row notes it (warmup_notes).
"""

from __future__ import annotations

import gc
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from harness import stats
from harness.device_activity import DrainGuard, DrainRecord, Verdict
from harness.freezing import FreezeLedger, timed_alone
from harness.probe import channel
from harness.progress import Progress, TimingEvent, no_progress, rounds_left
from harness.spec import Spec
from harness.time_split import SplitRecorder
from harness.tasks import get_task
from harness.worker_link import WorkerFailed, WorkerLink
from harness.worker_link import checked_reply as _reply
from harness.timed_inputs import Batch, FirstSightInputs, PassInputs, TaskInputs, named_for_people

MIN_WINDOW_S = 0.1
T = TypeVar("T")


@dataclass(frozen=True)
class TimingPlan:
    """Every [timing] setting of the spec, plus the run's seed and the limit it decides on: what the
    timekeeper, the measurement around it (harness.measurement) and the A/A row time by. Made from a spec by
    from_spec; the spec's wording of a row's flags may still cite [timing] itself."""

    run_seed: int
    rounds: int
    max_rounds: int
    warmup_min_s: float
    warmup_max_s: float
    settle_tolerance: float
    confidence: float
    min_speedup: float
    seed: int                             # the spec's seed, sent to both workers at load (not the run seed)
    caching_tolerance: float              # the caching audit's (harness.stats.caching_audit)
    threads: int                          # torch threads of both workers (0: the sandbox's CPUs on this box)
    target_half_width: float = 0.0        # on a GPU: each task's interval timed down to +-this (0: no target)
    target_half_width_cpu: float = 0.0    # the same on a CPU
    max_timing_s: float = math.inf        # no round is started that would end the task's rounds past this

    @classmethod
    def from_spec(cls, spec: Spec, run_seed: int) -> TimingPlan:
        """The plan of a run of `spec` drawn with `run_seed`: its [timing] section whole, and its min_speedup."""
        t = spec.timing
        return cls(run_seed=run_seed, rounds=t.rounds, max_rounds=t.max_rounds, warmup_min_s=t.warmup_min_s,
                   warmup_max_s=t.warmup_max_s, settle_tolerance=t.settle_tolerance, confidence=t.confidence,
                   min_speedup=spec.limits.min_speedup, seed=t.seed, caching_tolerance=t.caching_tolerance,
                   threads=t.threads, target_half_width=t.target_half_width,
                   target_half_width_cpu=t.target_half_width_cpu, max_timing_s=t.max_timing_s)

    def target_for(self, device: str) -> float:
        """The half-width target on `device` (the reference's word after load: our code): the CPU's where it
        says cpu or says nothing."""
        return self.target_half_width if device and device != "cpu" else self.target_half_width_cpu


STOPPED_BY = ("done", "max_rounds", "max_timing_s")


@contextmanager
def host_gc_paused() -> Iterator[None]:
    """The host's automatic garbage collection off while a task is timed (collected first, untimed), as
    timeit does. The host once kept every pass's predictions (it now keeps one a side): a full collection walked
    them all, and one that starts inside a timed round trip is charged to that side. Measured with fake
    workers answering CLUENER-like predictions: full collections of 80 to 560 ms as the heap grew to a
    million objects, 6% of all collections inside a timed call, one of 146 ms in a team's call; on the H200
    one team call of CLUENER2020 took 128 and 139 ms against 2 ms in two runs, most of the demo team's
    interval. Garbage is still freed by reference counting; only cycles wait for the next collection."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rounds_stop(plan: TimingPlan, target: float, rounds: int, interval: stats.Interval, elapsed_s: float,
                last_round_s: float) -> str:
    """Why a task's rounds stop after `rounds` of them, or "" to time another: "done" when the verdict on the
    limit is decided and the interval is within `target` (or there is none), else "max_rounds" at the spec's
    most rounds, "max_timing_s" when another round as long as the last would end past the time cap."""
    if rounds < plan.rounds:
        return ""
    decided = stats.verdict(interval, plan.min_speedup) != "borderline"
    if decided and (target <= 0 or interval.half_width <= target):
        return "done"
    if rounds >= plan.max_rounds:
        return "max_rounds"
    if elapsed_s + last_round_s > plan.max_timing_s:
        return "max_timing_s"
    return ""


@dataclass
class SideTimes:
    """One worker on one task: per-round per-batch seconds (canonical batch order) and what it answered."""

    load_s: float = 0.0
    first_call_s: float = 0.0
    warmup_windows_s: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    predictions: list[list[dict[str, Any]]] = field(default_factory=list)   # [first sight's], the scored ones
    flanks_s: list[list[float]] = field(default_factory=list)   # per batch: its two fresh flanks' seconds
    passes: int = 0                  # timed passes, first sight included (fresh passes: checked, then dropped)


@dataclass
class FirstSight:
    """One side's round 0: per batch (canonical order) the real input's seconds, the predictions (checked
    against the masked batches), and the seconds of its two fresh flanks."""

    seconds: list[float]
    predictions: list[dict[str, Any]]
    flanks_s: list[list[float]]


@dataclass
class TaskTimes:
    team: SideTimes
    reference: SideTimes
    orders: list[list[int]]
    warmup_settled: bool
    warmup_s: float
    box: list[dict[str, Any]]
    interval: stats.Interval | None = None
    freezing: FreezeLedger = field(default_factory=FreezeLedger)
    first_sight_block: int = 0       # batches per turn in round 0 (first_sight_round)
    target_half_width: float = 0.0   # the target that applied (TimingPlan.target_for the device); 0: none
    timing_s: float = 0.0            # seconds of rounds, from round 0's start to the last round's end
    stopped_by: str = ""             # why rounds stopped (STOPPED_BY)
    drain: DrainRecord = field(default_factory=lambda: DrainRecord(why_not="no drain guard", applicable=False))
    phase_s: dict[str, float] = field(default_factory=dict)   # wall seconds: load, warmup, first_sight, rounds
    time_split: dict[str, dict[str, Any]] = field(default_factory=dict)   # side: its split (harness.time_split)

    @property
    def half_width(self) -> float | None:
        return self.interval.half_width if self.interval else None

    @property
    def half_width_met(self) -> bool | None:
        """Whether the interval reached the target; None without a target."""
        if self.target_half_width <= 0 or self.half_width is None:
            return None
        return self.half_width <= self.target_half_width

    def interval_record(self) -> dict[str, Any]:
        """The half-width keys of the task's timing record (timing_capped: stopped by the time cap)."""
        return {"half_width": self.half_width, "target_half_width": self.target_half_width,
                "half_width_met": self.half_width_met, "timing_capped": self.stopped_by == "max_timing_s",
                "timing_s": self.timing_s, "rounds_stopped_by": self.stopped_by}


def checked_predictions(task: str, batch: Batch, body: bytes, name: str, nonce: str) -> list[dict[str, Any]]:
    """The batch's predictions from a reply, checked against the task's format (after the clock stopped)."""
    output = _reply(body, name, nonce).get("predictions")
    if not isinstance(output, list):
        raise WorkerFailed(f"predict() returned {type(output).__name__}, expected a list of predictions", name)
    if len(output) != len(batch):
        raise WorkerFailed(f"predict() returned {len(output)} predictions for a batch of {len(batch)}", name)
    checker, keys = get_task(task).check_prediction, get_task(task).prediction_keys
    for example, prediction in zip(batch, output):
        if not isinstance(prediction, dict):
            raise WorkerFailed(f"invalid prediction for example {example['id']!r}: a {type(prediction).__name__}, "
                               "not an object", name)
        extra = sorted(str(key)[:40] for key in prediction if key not in keys)
        reason = (f"keys {extra[:5]} are not in {task}'s prediction format ({sorted(keys)})" if extra
                  else checker(prediction))
        if reason is None and prediction.get("id") != example["id"]:
            reason = f"id {prediction.get('id')!r} does not match the example's id {example['id']!r}"
        if reason:
            raise WorkerFailed(f"invalid prediction for example {example['id']!r}: {reason}", name)
    return output


def timed_pass(link: WorkerLink, task: str, batches: Sequence[Batch], frames: Sequence[bytes],
               order: Sequence[int]) -> tuple[list[float], list[dict[str, Any]]]:
    """One pass in `order`: seconds and predictions, both returned in canonical batch order."""
    seconds: list[float] = [0.0] * len(frames)
    replies: list[tuple[bytes, str]] = [(b"", "")] * len(frames)
    for index in order:
        seconds[index], body, nonce = link.round_trip(frames[index])
        replies[index] = (body, nonce)
    predictions = [p for batch, (body, nonce) in zip(batches, replies)
                   for p in checked_predictions(task, batch, body, link.name, nonce)]
    return seconds, predictions


def timed_window(link: WorkerLink, task: str, inputs: PassInputs, order: Sequence[int]) -> tuple[list[float], int]:
    """Passes over `inputs` in `order` (warm-up's), repeated until they last MIN_WINDOW_S together: each
    batch's mean seconds over the passes, and how many passes; predictions checked, then dropped. A 1 ms
    model is timed over a hundred calls a window, not one; a pass that already lasts 100 ms is a window by
    itself."""
    totals: list[float] = []
    passes = 0
    while not passes or sum(totals) < MIN_WINDOW_S:
        seconds, _ = timed_pass(link, task, inputs.batches, inputs.frames, order)
        totals = [t + s for t, s in zip(totals, seconds)] if totals else seconds
        passes += 1
    return [t / passes for t in totals], passes


def others(links: Sequence[WorkerLink], link: WorkerLink) -> list[WorkerLink]:
    return [other for other in links if other is not link]


@contextmanager
def timed_window_of(link: WorkerLink, links: Sequence[WorkerLink], ledger: FreezeLedger,
                    guard: DrainGuard | None = None, split: SplitRecorder | None = None) -> Iterator[Verdict]:
    """`link` alone for one timed window: every other side frozen (harness.freezing), and `link` woken by an
    untimed round trip first. A process thawed a moment ago pays milliseconds on its first call (measured:
    a 0.1 ms model's first-sight pass 2 to 25 times its repeats without the wake-up, 1.5 to 2 with it), and
    a single-pass window, first sight above all, must not carry that into the caching audit.

    With a `guard`, the window opens only once the frozen side's queued device work has drained (bounded),
    and the yielded verdict says, after the window and before the thaw, whether another process was busy on
    the device during it (harness.device_activity). With a `split`, the window is one of `link`'s timed
    windows in the split of where its time goes (harness.time_split)."""
    verdict = Verdict()
    with timed_alone(others(links, link), ledger):
        if guard is not None:
            guard.before()
        with split.window(link.name) if split is not None else nullcontext():
            link.call("precision")
            yield verdict
        if guard is not None:
            guard.after(verdict)


def guarded_window(link: WorkerLink, links: Sequence[WorkerLink], ledger: FreezeLedger, guard: DrainGuard | None,
                   label: str, run: Callable[[], T], split: SplitRecorder | None = None) -> T:
    """run() timed alone (timed_window_of); with a guard, a window found dirty is discarded and run again, at
    most guard.retries times, then kept (the guard records it and the row is flagged)."""
    attempt = 0
    while True:
        with timed_window_of(link, links, ledger, guard, split) as verdict:
            result = run()
        if guard is None or not guard.retime(verdict, attempt, label):
            culprits = guard.frozen_busy(verdict) if guard is not None else []
            if culprits:
                raise WorkerFailed(f"the team's processes {culprits} kept the GPU busy while the reference was timed "
                                   f"({label}, {attempt + 1} attempt(s), each after waiting for the device to drain): "
                                   "device work queued before a freeze runs on and slows the other side", "team")
            return result
        attempt += 1


def first_sight_round(links: dict[str, WorkerLink], names: Sequence[str], task: str, real: PassInputs,
                      beside: FirstSightInputs, order: Sequence[int], block: int, ledger: FreezeLedger,
                      warmed: Sequence[str] = (), guard: DrainGuard | None = None,
                      guarded: str = "reference", split: SplitRecorder | None = None,
                      label: str = "first-sight") -> dict[str, FirstSight]:
    """Round 0: every real batch seen once by each side, in `order`, the two sides taking turns a block of
    `block` batches at a time (which side opens a block alternates), each block timed alone with the other
    side frozen.

    Each real batch is timed beside its two flanks: fresh inputs of its shape, never seen (first sight as
    well), the three calls in the side's drawn order for that batch (beside.call_orders), a moment apart. The
    caching audit compares the real call with its flanks (stats.caching_audit): load that comes and goes on
    the box falls on the three calls alike, and a team that answers made-up inputs faster than real ones
    (it tells them apart and skips work) shows it there, under the same load.

    For the sides in `warmed` (a batch well under MIN_WINDOW_S), each batch's calls follow an untimed call on
    a spare, a fresh input of the same shape: every timed call comes right after a call of its own shape
    with other content, where without it the first came right after the other side's turn (caches cold). A
    side whose batch takes MIN_WINDOW_S or more (BERT-base on a CPU) is a window by itself and gets no spare.

    The `guarded` side's blocks are guarded by `guard` (guarded_window): a dirty block is timed again whole,
    spares and flanks included, which repeats inputs: fair for the reference (ours, no cache), never done for
    the team."""
    seen = {name: FirstSight([0.0] * len(real.frames), [], [[0.0, 0.0] for _ in real.frames]) for name in names}
    replies: dict[str, list[tuple[bytes, str]]] = {name: [(b"", "")] * len(real.frames) for name in names}
    for start in range(0, len(order), block):
        turn = names if (start // block) % 2 == 0 else names[::-1]
        for name in turn:
            def one_block() -> None:       # called right away, in this iteration, once per attempt
                for index in order[start:start + block]:
                    seen[name].seconds[index], seen[name].flanks_s[index], replies[name][index] = batch_beside_flanks(
                        links[name], task, beside, index, beside.call_orders[name][index], name in warmed, real)

            guarded_window(links[name], list(links.values()), ledger, guard if name == guarded else None,
                           f"{label} block {start // block}", one_block, split)
    for name in names:
        seen[name].predictions.extend(p for batch, (body, nonce) in zip(real.batches, replies[name])
                                      for p in checked_predictions(task, batch, body, links[name].name, nonce))
    return seen


def batch_beside_flanks(link: WorkerLink, task: str, beside: FirstSightInputs, index: int, call_order: Sequence[int],
                        spare: bool, real: PassInputs) -> tuple[float, list[float], tuple[bytes, str]]:
    """One real batch's first sight and its two flanks, in `call_order` (0: real, 1 and 2: the flanks), after
    an untimed spare when `spare`: (the real call's seconds, the flanks' seconds, the real reply undecoded).
    A flank's and a spare's reply is checked for the task's format right away (between calls, untimed)."""
    if spare:
        _, body, nonce = link.round_trip(beside.spares.frames[index])
        checked_predictions(task, beside.spares.batches[index], body, link.name, nonce)
    inputs = (real, *beside.flanks)
    seconds = [0.0] * len(inputs)
    real_reply = (b"", "")
    for which in call_order:
        seconds[which], body, nonce = link.round_trip(inputs[which].frames[index])
        if which == 0:
            real_reply = (body, nonce)
        else:
            checked_predictions(task, inputs[which].batches[index], body, link.name, nonce)
    return seconds[0], [seconds[which] for which in (1, 2) if which in call_order], real_reply


def per_batch_s(side: SideTimes, n_batches: int) -> float:
    """A side's seconds a batch from its last warm-up window (0 before any)."""
    return (side.warmup_windows_s[-1] if side.warmup_windows_s else 0.0) / max(n_batches, 1)


def first_sight_block(sides: Sequence[SideTimes], n_batches: int) -> int:
    """Batches per turn in the first-sight round: as many as the slower side runs in about MIN_WINDOW_S (from
    its last warm-up window), at least one: short enough that load coming and going on the box falls on both
    sides alike, long enough that freezing costs little beside it."""
    per_batch = max(per_batch_s(side, n_batches) for side in sides)
    return max(1, min(n_batches, int(MIN_WINDOW_S / per_batch) if per_batch > 0 else n_batches))


def first_sight_s(sides: dict[str, SideTimes], names: Sequence[str], warmed: Sequence[str], n_batches: int
                  ) -> float:
    """About how long the first-sight round takes (for progress only): per batch, the real input and its two
    flanks, and a spare first on a warmed side, at each side's warm-up pace."""
    return sum(per_batch_s(sides[name], n_batches) * n_batches * (4 if name in warmed else 3) for name in names)


def window_round_s(sides: Sequence[SideTimes], n_batches: int) -> float:
    """About how long a later round takes (for progress only, before one has): a window of at least
    MIN_WINDOW_S a side, or one pass where a pass is longer, at each side's warm-up pace."""
    return sum(max(MIN_WINDOW_S, per_batch_s(side, n_batches) * n_batches) for side in sides)


def round_event(task: str, plan: TimingPlan, times: TaskTimes, round_index: int, pace_s: float) -> TimingEvent:
    """Where the task stands after round `round_index`: rounds left at `pace_s` a round, or done."""
    if times.stopped_by:
        return TimingEvent(task, "done", times.timing_s, round=round_index, interval=times.interval,
                           target_half_width=times.target_half_width, stopped_by=times.stopped_by)
    left = rounds_left(len(times.orders), plan.rounds, plan.max_rounds, plan.max_timing_s, plan.min_speedup,
                       times.target_half_width, times.interval, times.timing_s, pace_s)
    return TimingEvent(task, "round", times.timing_s, round=round_index, interval=times.interval,
                       target_half_width=times.target_half_width, left=left)


def warm_up(links: Sequence[WorkerLink], task: str, warm: PassInputs, plan: TimingPlan, sides: Sequence[SideTimes],
            ledger: FreezeLedger | None = None, progress: Progress = no_progress) -> tuple[bool, float]:
    """Alternate warm-up windows until both sides' window time settles (after warmup_min_s, at most warmup_max_s).

    A window (timed_window) repeats whole passes over every warm-up batch (the same fresh inputs each time:
    warm-up is never counted), so every shape is seen, until it lasts at least MIN_WINDOW_S; its value is the mean seconds per pass. The other side is frozen meanwhile.
    `progress` hears of each pair of windows, after both (never inside one).
    """
    ledger = ledger if ledger is not None else FreezeLedger()
    started = time.monotonic()
    window = 0
    while True:
        pairs = list(zip(links, sides))
        for link, side in (pairs if window % 2 == 0 else pairs[::-1]):
            with timed_window_of(link, links, ledger):
                seconds, _ = timed_window(link, task, warm, range(len(warm.frames)))
            side.warmup_windows_s.append(sum(seconds))        # the window's mean pass
        window += 1
        elapsed = time.monotonic() - started
        progress(TimingEvent(task, "warm-up", elapsed, windows=window, warmup_max_s=plan.warmup_max_s))
        done = all(stats.settled(side.warmup_windows_s, plan.settle_tolerance) for side in sides)
        if done and elapsed >= plan.warmup_min_s:
            return True, elapsed
        if elapsed >= plan.warmup_max_s:
            return False, elapsed


def warmup_notes(record: Mapping[str, Any], warmup_max_s: float) -> list[str]:
    """The row's note when a task's warm-up stopped at the spec's warmup_max_s before both sides settled
    (warm_up; `warmup_settled` in the task's timing record): a state of the run, not a finding."""
    if record and not record.get("warmup_settled", True):
        return [f"warm-up did not settle within {warmup_max_s:g} s"]
    return []


def measure_task(team: WorkerLink, reference: WorkerLink, task: str, examples: Sequence[dict[str, Any]],
                 batch_size: int, plan: TimingPlan, loads: dict[str, dict[str, Any]],
                 box_snapshot: Callable[[], dict[str, Any]] = dict,
                 before_timing: Callable[[], None] = lambda: None,
                 after_load: Callable[[], None] = lambda: None, drain: DrainGuard | None = None,
                 clock: Callable[[], float] = time.monotonic, progress: Progress = no_progress,
                 split: SplitRecorder | None = None) -> TaskTimes:
    """Load both workers, warm them up, time interleaved rounds until the task's interval is decided and
    within the target half-width, or the rounds reach max_rounds or the time cap (rounds_stop).
    `after_load` runs once both models are loaded, before any call (the count and memory after load);
    `before_timing` right before the first timed round; `clock` times the rounds against the cap. `drain`
    guards the reference's scored windows against the team's queued device work (started here, on the device
    the reference's worker resolved, and closed on the way out). `progress` hears where the task stands
    (harness.progress), between timed windows only. `split` records where each side's time goes in its
    timed windows (harness.time_split), into the result's `time_split`."""
    try:
        return _measure_task(team, reference, task, examples, batch_size, plan, loads, box_snapshot,
                             before_timing, after_load, drain, clock, progress, split)
    finally:
        if drain is not None:
            drain.close()
        if split is not None:
            split.close()


def _measure_task(team: WorkerLink, reference: WorkerLink, task: str, examples: Sequence[dict[str, Any]],
                  batch_size: int, plan: TimingPlan, loads: dict[str, dict[str, Any]],
                  box_snapshot: Callable[[], dict[str, Any]], before_timing: Callable[[], None],
                  after_load: Callable[[], None], drain: DrainGuard | None,
                  clock: Callable[[], float], progress: Progress = no_progress,
                  split: SplitRecorder | None = None) -> TaskTimes:
    from harness import replies      # checks replies with this module's WorkerFailed: imported when used

    sides = {"team": SideTimes(), "reference": SideTimes()}
    links = {"team": team, "reference": reference}
    phase_s, phase_started = {}, time.monotonic()      # where the task's wall time went (the GPU day plans on it)
    progress(TimingEvent(task, "load"))
    for name in ("reference", "team"):
        sides[name].load_s, reply = links[name].call("load", **loads[name])
        links[name].environment = replies.environment(reply, name)
    phase_s["load"], phase_started = time.monotonic() - phase_started, time.monotonic()
    after_load()
    phase_s["after_load"], phase_started = time.monotonic() - phase_started, time.monotonic()
    if drain is not None:
        drain.start(str(reference.environment.get("device") or ""), reference.host_pids, team.host_pids)
    if split is not None:
        split.start(str(reference.environment.get("device") or ""), {name: links[name].host_pids for name in links})
    inputs = TaskInputs.for_task(examples, batch_size, plan.run_seed)
    ledger = FreezeLedger()
    try:
        settled, warmup_s = first_call_and_warm_up(links, task, inputs.warm, plan, sides, ledger, progress)
        before_timing()     # e.g. the reference's precision, verified right before the clock starts
        phase_s["warmup"], phase_started = time.monotonic() - phase_started, time.monotonic()
        times = TaskTimes(sides["team"], sides["reference"], [], settled, warmup_s, [], freezing=ledger,
                          target_half_width=plan.target_for(str(reference.environment.get("device") or "")),
                          phase_s=phase_s)
        return timed_rounds(links, task, inputs, plan, times, ledger, box_snapshot, drain, clock, progress, split)
    except WorkerFailed as exc:
        raise named_for_people(exc, inputs.shown(), examples) from None


def first_call_and_warm_up(links: dict[str, WorkerLink], task: str, warm: PassInputs, plan: TimingPlan,
                           sides: dict[str, SideTimes], ledger: FreezeLedger, progress: Progress) -> tuple[bool, float]:
    """Each side's first call (on the first warm-up batch), then warm-up until settled: (settled, seconds)."""
    for name in ("reference", "team"):
        with timed_window_of(links[name], list(links.values()), ledger):
            seconds, _ = timed_pass(links[name], task, warm.batches[:1], warm.frames[:1], [0])
        sides[name].first_call_s = seconds[0]
    return warm_up([links["team"], links["reference"]], task, warm, plan, [sides["team"], sides["reference"]],
                   ledger, progress)


def timed_rounds(links: dict[str, WorkerLink], task: str, inputs: TaskInputs, plan: TimingPlan, times: TaskTimes,
                 ledger: FreezeLedger, box_snapshot: Callable[[], dict[str, Any]], drain: DrainGuard | None,
                 clock: Callable[[], float], progress: Progress, split: SplitRecorder | None = None) -> TaskTimes:
    """Round 0 (first sight of the real inputs) and later rounds over fresh inputs, until rounds_stop says;
    each side's timed windows recorded in `split` (harness.time_split)."""
    sides = {"team": times.team, "reference": times.reference}
    n_batches = len(inputs.real.frames)
    rng = random.Random(f"{plan.run_seed}:{task}")
    phase_started = time.monotonic()
    started = round_ended = clock()
    if drain is not None:
        times.drain = drain.record
    while True:
        order = list(range(n_batches))
        rng.shuffle(order)
        times.orders.append(order)
        round_index = len(times.orders) - 1
        times.box.append({"round": round_index, **box_snapshot()})
        names = ("team", "reference") if round_index % 2 == 0 else ("reference", "team")
        if round_index == 0:      # first sight: each real input seen once, the scored predictions
            time_first_sight(links, names, task, inputs, order, sides, times, ledger, drain, rng, progress, split)
            times.phase_s["first_sight"], phase_started = time.monotonic() - phase_started, time.monotonic()
        else:
            time_later_round(links, names, task, inputs, order, sides, times, ledger, drain, rng, round_index, split)
        if len(times.orders) >= plan.rounds:
            times.interval = stats.speedup_interval([sides["team"].rounds], [sides["reference"].rounds],
                                                    confidence=plan.confidence, seed=plan.run_seed)
        now = clock()                                # once a round: the round's end (its interval included)
        times.timing_s, last_round_s, round_ended = now - started, now - round_ended, now
        if times.interval is not None:
            times.stopped_by = rounds_stop(plan, times.target_half_width, len(times.orders), times.interval,
                                           times.timing_s, last_round_s)
        progress(round_event(task, plan, times, round_index, last_round_s if round_index > 0 else
                             window_round_s(list(sides.values()), n_batches)))
        if times.stopped_by:
            times.phase_s["rounds"] = time.monotonic() - phase_started      # the later rounds and their intervals
            times.time_split = split.finish() if split is not None else {}
            return times


def time_first_sight(links: dict[str, WorkerLink], names: Sequence[str], task: str, inputs: TaskInputs,
                     order: Sequence[int], sides: dict[str, SideTimes], times: TaskTimes, ledger: FreezeLedger,
                     drain: DrainGuard | None, rng: random.Random, progress: Progress,
                     split: SplitRecorder | None = None) -> None:
    """Round 0 into `sides`: each side's real first sight (its round 0), flanks and scored predictions (their
    real ids given back)."""
    n_batches = len(inputs.real.frames)
    times.first_sight_block = first_sight_block(list(sides.values()), n_batches)
    warmed = [name for name in names if per_batch_s(sides[name], n_batches) < MIN_WINDOW_S]
    beside = inputs.make_first_sight(names, rng)
    progress(TimingEvent(task, "first sight", batches=n_batches, block=times.first_sight_block,
                         estimate_s=first_sight_s(sides, names, warmed, n_batches)))
    seen = first_sight_round(links, names, task, inputs.real, beside, order, times.first_sight_block, ledger,
                             warmed, drain, split=split)
    for name, first in seen.items():
        sides[name].rounds.append(first.seconds)
        sides[name].predictions.append(inputs.real_predictions(first.predictions))
        sides[name].flanks_s = first.flanks_s
        sides[name].passes += 1


def time_later_round(links: dict[str, WorkerLink], names: Sequence[str], task: str, inputs: TaskInputs,
                     order: Sequence[int], sides: dict[str, SideTimes], times: TaskTimes, ledger: FreezeLedger,
                     drain: DrainGuard | None, rng: random.Random, round_index: int,
                     split: SplitRecorder | None = None) -> None:
    """One later round, built exactly as round 0 (first_sight_round: the same blocks, each batch's three calls
    in a drawn order after an untimed spare) with a fresh pass in the real inputs' place. So the team is timed
    in the conditions of its first sight and cannot tell a later round from round 0 by its calls, and the
    later-rounds audit compares like with like: windows of hot repeated passes once read an honest 0.5 ms
    CPU model 1.46x faster than its first sight, and flagged it. A batch's time in the round is the mean of
    its calls (all fresh); the predictions are checked for the task's format and dropped."""
    n_batches = len(inputs.real.frames)
    # the reference (ours, no cache: nothing to audit) calls each batch's stand-in alone, no spare, no flanks:
    # a later round costs BERT-base on a CPU a third of round 0
    warmed = [name for name in names if name != "reference" and per_batch_s(sides[name], n_batches) < MIN_WINDOW_S]
    stand_in = inputs.make_stand_in()
    beside = inputs.make_first_sight(names, rng)
    if "reference" in beside.call_orders:
        beside.call_orders["reference"] = [[0] for _ in beside.call_orders["reference"]]
    seen = first_sight_round(links, names, task, stand_in, beside, order, times.first_sight_block, ledger,
                             warmed, drain, split=split, label=f"round {round_index}")
    for name, first in seen.items():
        sides[name].rounds.append([(s + sum(f)) / (1 + len(f)) for s, f in zip(first.seconds, first.flanks_s)])
        sides[name].passes += 1
