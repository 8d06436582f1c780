"""Progress while timing: the timekeeper's events (in order, between timed windows only), the estimate of
the rounds left (bounded by the plan), and how the CLI shows them (a live line on a terminal, throttled
plain lines elsewhere). Expected figures are worked out by hand in the comments."""

import io
import math
import random
from contextlib import contextmanager

import pytest
from rich.console import Console

from harness import timekeeper
from harness.console import PLAIN_WARMUP_EVERY_S, TimingLines
from harness.progress import RoundsLeft, TimingEvent, rounds_left
from harness.stats import Interval
from test_timekeeper import EXAMPLES, LOADS, link, plan

INF = math.inf


def timed_with_events(monkeypatch, **overrides):
    """measure_task on fake links (team 2 ms, reference 8 ms a batch), recording each event and whether a
    timed window was open when it came."""
    inside = []

    @contextmanager
    def spied(*args, **kwargs):
        with real(*args, **kwargs) as verdict:
            inside.append(True)
            try:
                yield verdict
            finally:
                inside.pop()

    real = timekeeper.timed_window_of
    monkeypatch.setattr(timekeeper, "timed_window_of", spied)
    events, open_windows = [], []
    team = link("team", lambda ids, seen: 0.002, [])
    ref = link("reference", lambda ids, seen: 0.008, [])

    def hear(event):
        events.append(event)
        open_windows.append(len(inside))

    times = timekeeper.measure_task(team, ref, "csl", EXAMPLES, 2, plan(**overrides), LOADS, progress=hear)
    return times, events, open_windows


def test_the_timekeeper_says_each_phase_in_order_and_never_inside_a_window(monkeypatch):
    times, events, open_windows = timed_with_events(monkeypatch)
    phases = [e.phase for e in events]
    warmups = phases.count("warm-up")
    rounds = len(times.orders)                          # 3: first sight and two later rounds (plan: 3 and 3)
    assert phases == ["load"] + ["warm-up"] * warmups + ["first sight"] + ["round"] * (rounds - 1) + ["done"]
    assert open_windows == [0] * len(events)            # no event while a window was timed
    assert all(e.task == "csl" for e in events)
    # one warm-up event per pair of windows, counted 1, 2, 3, ...
    assert [e.windows for e in events if e.phase == "warm-up"] == list(range(1, warmups + 1))
    assert warmups == len(times.team.warmup_windows_s) == len(times.reference.warmup_windows_s)
    first = events[warmups + 1]
    assert (first.batches, first.block) == (5, times.first_sight_block) and first.estimate_s > 0
    # round n after round n, the interval from the plan's 3rd round on; the last event says why rounds stopped
    assert [e.round for e in events if e.phase in ("round", "done")] == list(range(rounds))
    assert all(e.interval is None for e in events if e.phase == "round")   # rounds 0 and 1 of a plan of 3
    done = events[-1]
    assert done.interval == times.interval and done.stopped_by == times.stopped_by in timekeeper.STOPPED_BY
    assert done.elapsed_s == times.timing_s


def test_each_round_event_estimates_within_the_plan(monkeypatch):
    times, events, _ = timed_with_events(monkeypatch, rounds=2, max_rounds=6)
    for event in (e for e in events if e.phase == "round"):
        done = event.round + 1
        assert 0 <= event.left.rounds <= event.left.most_rounds <= 6 - done
        assert event.left.rounds >= max(0, 2 - done)
        assert 0 <= event.left.seconds <= event.left.most_seconds
    assert len(times.orders) <= 6


def interval(point, low, high):
    return Interval(point, low, high, 0.95)


@pytest.mark.parametrize("args, expected", [
    # rounds, min, max, cap, min_speedup, target, interval, elapsed, pace
    # before the plan's first rounds: those left (5 - 1), at most 60 - 1, at 2 s each
    ((1, 5, 60, INF, 8.0, 0.0, None, 1.0, 2.0), RoundsLeft(4, 8.0, 59, 118.0)),
    # decided (low 10 >= 8) and within the target: nothing left
    ((5, 5, 60, INF, 8.0, 0.03, interval(10.0, 9.9, 10.1), 10.0, 2.0), RoundsLeft(0, 0.0, 55, 110.0)),
    # +-6% against +-3%: 5 * (0.06 / 0.03)^2 = 20 rounds in all, 15 more; the cap (30 s, 10 spent, 2 s a
    # round) leaves room for 10 only
    ((5, 5, 60, 30.0, 8.0, 0.03, interval(10.0, 9.4, 10.6), 10.0, 2.0), RoundsLeft(10, 20.0, 10, 20.0)),
    # the same without the cap: 15 more, at most 55
    ((5, 5, 60, INF, 8.0, 0.03, interval(10.0, 9.4, 10.6), 10.0, 2.0), RoundsLeft(15, 30.0, 55, 110.0)),
    # borderline at 8x: +-5% ((8.4 - 7.6) / 2 / 8), clear of 8 needs +-(8 - 8)/8 = 0: never, so the bound
    ((5, 5, 60, INF, 8.0, 0.0, interval(8.0, 7.6, 8.4), 10.0, 1.0), RoundsLeft(55, 55.0, 55, 55.0)),
    # borderline at 8x: 8.8 [7.92, 9.68] is +-10%, clear of 8 needs +-(0.8 / 8.8) = 9.09%:
    # 5 * (0.1 / 0.0909)^2 = 6.05 -> 7 in all, 2 more
    ((5, 5, 60, INF, 8.0, 0.0, interval(8.8, 7.92, 9.68), 10.0, 1.0), RoundsLeft(2, 2.0, 55, 55.0)),
    # the cap already reached after the first rounds: nothing more
    ((6, 5, 60, 30.0, 8.0, 0.03, interval(10.0, 9.0, 11.0), 31.0, 2.0), RoundsLeft(0, 0.0, 0, 0.0)),
    # the cap reached before the plan's first rounds: those still run (rounds_stop times them regardless)
    ((3, 5, 60, 30.0, 8.0, 0.0, interval(10.0, 9.0, 11.0), 31.0, 2.0), RoundsLeft(2, 4.0, 2, 4.0)),
])
def test_rounds_left_worked_by_hand(args, expected):
    got = rounds_left(*args)
    assert (got.rounds, got.most_rounds) == (expected.rounds, expected.most_rounds)
    assert got.seconds == pytest.approx(expected.seconds) and got.most_seconds == pytest.approx(expected.most_seconds)


def test_rounds_left_never_passes_the_plan():
    draw = random.Random(7)
    for _ in range(2000):
        min_rounds, max_rounds = draw.randint(1, 8), draw.randint(1, 80)
        rounds = draw.randint(1, 90)
        cap = draw.choice([INF, draw.uniform(1, 60)])
        elapsed, pace = draw.uniform(0, 80), draw.choice([0.0, draw.uniform(0.01, 5)])
        point = draw.uniform(1, 20)
        low, high = point * draw.uniform(0.5, 1), point * draw.uniform(1, 1.5)
        target = draw.choice([0.0, 0.03])
        got = rounds_left(rounds, min_rounds, max_rounds, cap, 8.0, target, interval(point, low, high), elapsed, pace)
        least = max(0, min_rounds - rounds)
        assert least <= got.rounds <= got.most_rounds <= max(0, max(min_rounds, max_rounds) - rounds)
        assert got.seconds <= got.most_seconds + 1e-9
        if pace > 0 and got.most_rounds > least:        # rounds beyond the plan's first ones end by the cap
            assert elapsed + got.most_seconds <= cap + 1e-9


def test_event_lines():
    warm = TimingEvent("csl", "warm-up", 8.44, windows=12, warmup_max_s=120.0, team="alpha", task_number=2, tasks=4)
    assert warm.line() == "alpha: csl (2/4): warm-up, 12 windows a side, 8.4 s (at most 112 s left, warmup_max_s 120)"
    first = TimingEvent("csl", "first sight", batches=12, block=3, estimate_s=4.04)
    assert first.line() == "csl: first sight, 12 batches a side in blocks of 3, about 4.0 s"
    assert "first sight, 1 batch a side" in TimingEvent("csl", "first sight", batches=1, block=1).line()
    later = TimingEvent("csl", "round", 12.0, round=4, interval=interval(1.8, 1.71, 1.89), target_half_width=0.03,
                        left=RoundsLeft(14, 35.0, 55, 18.0))
    assert later.line() == ("csl: round 4 done, 12.0 s of rounds, speedup 1.80x [1.71, 1.89] +-5.0% (target +-3.0%); "
                            "about 14 more (~35 s), at most 55 (~18 s)")
    # the estimate at its bound says the bound once; under 10 s to a tenth
    assert TimingEvent("csl", "round", 1.0, round=1, left=RoundsLeft(2, 0.84, 2, 0.84)).line() == (
        "csl: round 1 done, 1.0 s of rounds, no interval yet; 2 more (~0.8 s)")
    done = TimingEvent("csl", "done", 28.06, round=11, interval=interval(1.8, 1.71, 1.89), stopped_by="max_timing_s")
    assert done.line() == ("csl: timed, 12 rounds in 28.1 s, speedup 1.80x [1.71, 1.89] +-5.0%; "
                           "stopped at the time cap (max_timing_s)")
    assert TimingEvent("csl", "round", 0.5, round=0).line() == "csl: round 0 done, 0.5 s of rounds, no interval yet"
    assert TimingEvent("csl", "done", 2.0, round=0, interval=interval(10.0, 9.9, 10.1), target_half_width=0.03,
                       stopped_by="done").line() == ("csl: timed, 1 round in 2.0 s, speedup 10.00x [9.90, 10.10] "
                                                     "+-1.0% (target +-3.0%); decided, within the target")


EVENTS = [TimingEvent("csl", "load"), *[TimingEvent("csl", "warm-up", s, windows=i + 1, warmup_max_s=120.0)
                                        for i, s in enumerate([0.2, 5.0, 10.1, 10.3, 21.0])],
          TimingEvent("csl", "first sight", batches=5, block=2, estimate_s=1.0),
          TimingEvent("csl", "round", 1.0, round=0), TimingEvent("csl", "round", 2.0, round=1),
          TimingEvent("csl", "done", 3.0, round=2, stopped_by="done")]


def test_plain_output_is_a_line_an_event_and_warm_up_every_few_seconds():
    out = io.StringIO()
    shown = []
    lines = TimingLines(Console(file=out, force_terminal=False, width=40), shown.append)
    for event in EVENTS:
        lines(event)
    printed = out.getvalue().splitlines()
    assert not shown
    # warm-up at 0.2 s, then the first at least PLAIN_WARMUP_EVERY_S (10 s) later: 10.3; then 21.0
    assert PLAIN_WARMUP_EVERY_S == 10.0
    assert [line.split("] ", 1)[1] for line in printed] == [e.line() for e in EVENTS if e.phase != "warm-up"
                                                           or e.elapsed_s in (0.2, 10.3, 21.0)]
    assert all(line.startswith("[") for line in printed)       # one line each (soft wrap), stamped


def test_a_terminal_gets_one_live_line_redrawn_at_each_event():
    out = io.StringIO()
    shown = []
    lines = TimingLines(Console(file=out, force_terminal=True), shown.append)
    for event in EVENTS:
        lines(event)
    assert [text.plain for text in shown] == [e.line() for e in EVENTS]
    assert out.getvalue().count("\n") == 1 and EVENTS[-1].line() in out.getvalue()   # the outcome stays
