"""Where a task's timing stands, for whoever watches a long run: events and an estimate of the time left.

The timekeeper emits a TimingEvent between timed windows only (never inside one): when a task starts
loading, after each pair of warm-up windows, before the first-sight round, after each round and when the
rounds stop. Events are plain data with a one-line text; this module does no I/O and knows nothing of
rich (the CLI draws them: harness.console.TimingLines). The estimate is bounded by the plan: no more rounds
than max_rounds, no later round past max_timing_s, no warm-up past warmup_max_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from harness import stats

PHASES = ("load", "warm-up", "first sight", "round", "done")


@dataclass(frozen=True)
class RoundsLeft:
    """Rounds still to time and their seconds at the current pace: the expected figure and the plan's bound."""

    rounds: int
    seconds: float
    most_rounds: int
    most_seconds: float


@dataclass(frozen=True)
class TimingEvent:
    """One step of one task's timing; `elapsed_s` is the seconds spent in this phase so far."""

    task: str
    phase: str                               # one of PHASES
    elapsed_s: float = 0.0
    windows: int = 0                         # warm-up: windows each side has timed so far
    warmup_max_s: float = 0.0
    batches: int = 0                         # first sight: batches a side, in blocks of `block`
    block: int = 0
    estimate_s: float | None = None          # first sight: about this long (from the warm-up's windows)
    round: int = 0                           # round: the index of the round just timed (0: first sight)
    interval: stats.Interval | None = None   # the speedup's interval so far (after the plan's first rounds)
    target_half_width: float = 0.0           # 0: no target on this device
    left: RoundsLeft | None = None
    stopped_by: str = ""                     # done: timekeeper.STOPPED_BY
    team: str = ""                           # set by the pipeline; "" where no team is named
    task_number: int = 0                     # this task's place among the team's tasks (1-based; 0: unknown)
    tasks: int = 0

    def line(self) -> str:
        """The event in one line of plain text (no markup), e.g. 'alpha: csl (2/4): round 3, 1.83x ...'."""
        where = f"{self.task} ({self.task_number}/{self.tasks})" if self.task_number else self.task
        return (f"{self.team}: " if self.team else "") + f"{where}: {self._what()}"

    def _what(self) -> str:
        if self.phase == "load":
            return "loading the team's model and BERT-base"
        if self.phase == "warm-up":
            return (f"warm-up, {self.windows} window{'s' if self.windows != 1 else ''} a side, "
                    f"{self.elapsed_s:.1f} s (at most {max(0.0, self.warmup_max_s - self.elapsed_s):.0f} s left, "
                    f"warmup_max_s {self.warmup_max_s:g})")
        if self.phase == "first sight":
            about = f", about {self.estimate_s:.1f} s" if self.estimate_s is not None else ""
            return f"first sight, {_count(self.batches, 'batch')} a side in blocks of {self.block}{about}"
        if self.phase == "done":
            how = {"done": "decided" + (", within the target" if self.target_half_width > 0 else ""),
                   "max_rounds": "stopped at max_rounds",
                   "max_timing_s": "stopped at the time cap (max_timing_s)"}.get(self.stopped_by, self.stopped_by)
            return f"timed, {_count(self.round + 1, 'round')} in {self.elapsed_s:.1f} s{self._interval()}; {how}"
        text = f"round {self.round} done, {self.elapsed_s:.1f} s of rounds{self._interval()}"
        left = self.left
        if left is not None and left.rounds == left.most_rounds:
            text += f"; {left.rounds} more (~{_seconds(left.seconds)})"
        elif left is not None:
            text += (f"; about {left.rounds} more (~{_seconds(left.seconds)}), at most {left.most_rounds} "
                     f"(~{_seconds(left.most_seconds)})")
        return text

    def _interval(self) -> str:
        if self.interval is None:
            return ", no interval yet"
        i = self.interval
        target = f" (target +-{self.target_half_width:.1%})" if self.target_half_width > 0 else ""
        return f", speedup {i.point:.2f}x [{i.low:.2f}, {i.high:.2f}] +-{i.half_width:.1%}{target}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("ch") else f"{n} {noun}s"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


Progress = Callable[[TimingEvent], None]


def no_progress(event: TimingEvent) -> None:
    """The default: nobody is watching."""


def rounds_left(rounds: int, min_rounds: int, max_rounds: int, max_timing_s: float, min_speedup: float,
                target: float, interval: stats.Interval | None, elapsed_s: float, pace_s: float) -> RoundsLeft:
    """Rounds still to time after `rounds` of them (first sight included) and their seconds at `pace_s` a
    round, as timekeeper.rounds_stop will decide: at least the plan's first `min_rounds`; then, the
    interval's half-width shrinking as 1/sqrt(rounds), as many as bring it within `target` and clear of
    `min_speedup` (a borderline verdict); never more than max_rounds in all, nor later rounds past
    max_timing_s (a round is not started that would end past it, the first `min_rounds` excepted)."""
    least = max(0, min_rounds - rounds)
    most = max(0, max(min_rounds, max_rounds) - rounds)
    if pace_s > 0 and math.isfinite(max_timing_s):
        most = min(most, max(least, int(max(0.0, max_timing_s - elapsed_s) // pace_s)))
    expected = least
    if interval is not None and rounds > 0:
        wanted = [target] if target > 0 else []
        if stats.verdict(interval, min_speedup) == "borderline":
            wanted.append(abs(interval.point - min_speedup) / interval.point if interval.point else 0.0)
        needed = [rounds * (interval.half_width / w) ** 2 if w > 0 else math.inf for w in wanted
                  if interval.half_width > w]
        if needed:
            total = max(needed)
            expected = most if not math.isfinite(total) else max(least, math.ceil(total) - rounds)
    expected = min(max(expected, least), most)
    return RoundsLeft(expected, expected * pace_s, most, most * pace_s)
