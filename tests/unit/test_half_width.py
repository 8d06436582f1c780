"""Intervals you can rank by: rounds are added until the speedup interval is within the spec's target
half-width (and the verdict decided), or until max_rounds or the per-task time cap; the row says what it
reached. The stopping rule on fake intervals and clock values, measure_task on in-process fake workers and a
fake clock, the spec keys, the score's overall half-width and the row's flags."""

import gc
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import stats
from harness.measurement import task_records
from harness.probe import channel
from harness.records import TaskResult
from harness.row_flags import half_width_flags
from harness.scoring import (ReferenceTask, TaskOutcome, borderline_flags, half_width_of, score_team,
                             speedup_half_width_flags, task_half_width_flags)
from harness.spec import DEFAULT_SPEC, SpecError, load_spec
from harness.timekeeper import TimingPlan, host_gc_paused, measure_task, rounds_stop
from harness.worker_link import WorkerLink

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = load_spec(FIXTURES / "spec_small.toml")
EXAMPLES = [{"id": i, "label_free": f"句子{i}"} for i in range(6)]
LOADS = {"team": {"task": "csl"}, "reference": {"task": "csl"}}


def plan(**overrides):
    values = dict(run_seed=7, rounds=2, max_rounds=4, warmup_min_s=0.0, warmup_max_s=0.2, settle_tolerance=0.5,
                  confidence=0.95, min_speedup=1e-3,      # a pass whatever the load: only the target decides
                  seed=0, caching_tolerance=0.5, threads=0)
    values.update(overrides)
    return TimingPlan(**values)


def interval(point, half_width):
    return stats.Interval(point, point * (1 - half_width), point * (1 + half_width), 0.95)


# --- the stopping rule ---------------------------------------------------------------------------------

def test_rounds_stop_once_decided_and_within_the_target():
    p = plan(rounds=5, max_rounds=60, max_timing_s=120.0, min_speedup=8.0)
    assert rounds_stop(p, 0.03, 5, interval(20.0, 0.029), 10.0, 2.0) == "done"
    at_target = stats.Interval(2.0, 1.5, 2.5, 0.95)                                   # +-25% exactly: a fail
    assert rounds_stop(p, 0.25, 5, at_target, 10.0, 2.0) == "done"


def test_rounds_go_on_while_the_interval_is_wider_than_the_target_or_undecided():
    p = plan(rounds=5, max_rounds=60, max_timing_s=120.0, min_speedup=8.0)
    assert rounds_stop(p, 0.03, 5, interval(20.0, 0.031), 10.0, 2.0) == ""           # decided, too wide
    assert rounds_stop(p, 0.03, 5, interval(8.1, 0.02), 10.0, 2.0) == ""             # narrow, straddles 8x
    assert rounds_stop(p, 0.03, 3, interval(20.0, 0.001), 1.0, 0.5) == ""            # fewer than `rounds`


def test_without_a_target_only_the_verdict_decides():
    p = plan(rounds=5, max_rounds=60, max_timing_s=120.0, min_speedup=8.0)
    assert rounds_stop(p, 0.0, 5, interval(20.0, 0.4), 10.0, 2.0) == "done"
    assert rounds_stop(p, 0.0, 5, interval(8.5, 0.1), 10.0, 2.0) == ""


def test_rounds_stop_at_max_rounds_and_before_a_round_that_would_end_past_the_cap():
    p = plan(rounds=5, max_rounds=60, max_timing_s=120.0, min_speedup=8.0)
    wide = interval(20.0, 0.2)
    assert rounds_stop(p, 0.03, 60, wide, 50.0, 1.0) == "max_rounds"
    assert rounds_stop(p, 0.03, 30, wide, 117.0, 3.0) == ""                           # the next ends at 120 s
    assert rounds_stop(p, 0.03, 30, wide, 117.5, 3.0) == "max_timing_s"               # it would end at 120.5 s
    assert rounds_stop(p, 0.03, 5, wide, 300.0, 60.0) == "max_timing_s"               # the minimum took longer


def test_the_gpu_target_applies_where_the_reference_says_it_runs_on_a_gpu():
    p = plan(target_half_width=0.03, target_half_width_cpu=0.1)
    assert p.target_for("cuda") == 0.03 and p.target_for("cuda:1") == 0.03
    assert p.target_for("cpu") == 0.1 and p.target_for("") == 0.1


# --- measure_task on fake workers and a fake clock -----------------------------------------------------

class FakeWorker(threading.Thread):
    """Answers the worker protocol, each predict after `delay` seconds; says it runs on `device`."""

    def __init__(self, sock, delay, device):
        super().__init__(daemon=True)
        self.sock, self.delay, self.device = sock, delay, device

    def run(self):
        try:
            while True:
                nonce, request = channel.recv_request(self.sock)
                if request["op"] == "stop":
                    return
                if request["op"] == "predict":
                    time.sleep(self.delay)
                    channel.send(self.sock, {"ok": True, "nonce": nonce, "predictions": [
                        {"id": e["id"], "label": "0"} for e in request["batch"]]})
                else:
                    channel.send(self.sock, {"ok": True, "nonce": nonce, "environment": {"device": self.device},
                                             "precision": {}})
        except channel.ChannelError:
            return


def link(name, delay, device):
    host, worker = socket.socketpair()
    FakeWorker(worker, delay, device).start()
    return WorkerLink(name, host, time.monotonic() + 60, {"protocol": channel.PROTOCOL_VERSION})


class FakeClock:
    """Each reading `step` seconds after the last: measure_task reads it once before round 0 and once at
    the end of every round, so after n rounds it has counted n * step seconds of rounds."""

    def __init__(self, step):
        self.now, self.step, self.readings = 0.0, step, 0

    def __call__(self):
        self.readings += 1
        self.now += self.step
        return self.now


def measure(p, device="cuda", clock=None):
    team, reference = link("team", 0.002, device), link("reference", 0.008, device)
    return measure_task(team, reference, "csl", EXAMPLES, 2, p, LOADS, clock=clock or FakeClock(1.0))


def test_a_target_met_stops_at_the_minimum_rounds():
    times = measure(plan(target_half_width=1e9))          # any interval is within it, whatever the load
    assert len(times.orders) == 2 and times.stopped_by == "done"
    assert times.target_half_width == 1e9 and times.half_width_met is True
    assert times.half_width == pytest.approx((times.interval.high - times.interval.low) / 2 / times.interval.point)


def test_a_target_not_met_adds_rounds_up_to_max_rounds_and_says_so():
    times = measure(plan(target_half_width=1e-9, max_rounds=4))
    assert len(times.orders) == 4 and len(times.team.rounds) == len(times.reference.rounds) == 4
    assert times.stopped_by == "max_rounds" and times.half_width_met is False
    record, _ = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SMALL, 7))
    assert record["half_width"] == times.half_width and record["target_half_width"] == 1e-9
    assert record["half_width_met"] is False and record["timing_capped"] is False
    assert record["rounds_stopped_by"] == "max_rounds" and record["timing_s"] == pytest.approx(4.0)


def test_the_time_cap_stops_rounds_before_one_would_end_past_it():
    # 10 s a round on the fake clock, a 35 s cap: after round 2 (20 s) a third fits (30 s), a fourth does not
    times = measure(plan(target_half_width=1e-9, max_rounds=10, max_timing_s=35.0), clock=FakeClock(10.0))
    assert len(times.orders) == 3 and times.stopped_by == "max_timing_s"
    assert times.timing_s == pytest.approx(30.0) and times.half_width_met is False
    record, _ = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SMALL, 7))
    assert record["timing_capped"] is True and record["timing_s"] == pytest.approx(30.0)


def test_the_cap_never_cuts_the_minimum_rounds():
    times = measure(plan(rounds=3, target_half_width=1e-9, max_rounds=10, max_timing_s=5.0), clock=FakeClock(10.0))
    assert len(times.orders) == 3 and times.stopped_by == "max_timing_s"


def test_on_a_cpu_the_cpu_target_applies_none_by_default():
    times = measure(plan(target_half_width=1e-9, max_rounds=4), device="cpu")
    assert len(times.orders) == 2 and times.stopped_by == "done"
    assert times.target_half_width == 0.0 and times.half_width_met is None
    times = measure(plan(target_half_width=1e9, target_half_width_cpu=1e-9, max_rounds=3), device="cpu")
    assert len(times.orders) == 3 and times.half_width_met is False


# --- the spec ------------------------------------------------------------------------------------------

def test_the_bundled_spec_targets_3_percent_on_a_gpu_none_on_a_cpu_and_caps_the_rounds():
    t = load_spec().timing
    assert (t.target_half_width, t.target_half_width_cpu, t.max_timing_s, t.max_rounds) == (0.03, 0.0, 30.0, 60)
    p = TimingPlan.from_spec(load_spec(), 1)
    assert (p.target_half_width, p.target_half_width_cpu, p.max_timing_s) == (0.03, 0.0, 30.0)


def test_a_spec_without_the_new_keys_gets_their_defaults(tmp_path):
    text = DEFAULT_SPEC.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(("target_half_width", "max_timing_s"))]
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = load_spec(path).timing
    assert (t.target_half_width, t.target_half_width_cpu, t.max_timing_s) == (0.03, 0.0, 30.0)


@pytest.mark.parametrize("old, new, message", [
    ("target_half_width = 0.03", "target_half_width = 1.5", r"timing\.target_half_width must be >= 0 and < 1"),
    ("target_half_width = 0.03", "target_half_width = -0.01", r"timing\.target_half_width must be >= 0"),
    ("target_half_width = 0.03", 'target_half_width = "3%"', r"timing\.target_half_width must be float"),
    ("target_half_width = 0.03", "target_half_width = nan", r"timing\.target_half_width must be >= 0"),
    ("target_half_width_cpu = 0.0", "target_half_width_cpu = 1.0", r"timing\.target_half_width_cpu must be"),
    ("max_timing_s = 30.0", "max_timing_s = 0", r"timing\.max_timing_s must be positive"),
    ("max_timing_s = 30.0", "max_timing_s = -5.0", r"timing\.max_timing_s must be positive"),
    ("max_timing_s = 30.0", "max_timing_s = true", r"timing\.max_timing_s must be float"),
])
def test_a_bad_new_key_is_named(tmp_path, old, new, message):
    text = DEFAULT_SPEC.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "spec.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_spec(path)


# --- the score and the row -----------------------------------------------------------------------------

SPEC = load_spec()


def scored(team_rounds, target):
    """Every task with the same rounds (seconds per batch) against a reference ten times slower, steady."""
    ref_rounds = tuple((10.0, 10.0) for _ in team_rounds)
    outcomes = {t: TaskOutcome(t, 50.0, 5_000_000, sum(map(sum, team_rounds)) / len(team_rounds),
                               rounds=team_rounds, target_half_width=target) for t in SPEC.task_names}
    reference = {t: ReferenceTask(100_000_000, 20.0, ref_rounds) for t in SPEC.task_names}
    return score_team(outcomes, reference, SPEC)


def test_the_score_gives_the_overall_half_width_and_whether_it_met_the_target():
    steady = scored(((1.0, 1.0),) * 4, 0.03)              # no spread at all: a zero-width interval
    assert steady.speedup == pytest.approx(10.0) and steady.speedup_half_width == pytest.approx(0.0)
    assert steady.target_half_width == 0.03 and steady.half_width_met is True
    noisy = scored(((1.0, 1.0), (1.5, 1.5), (0.8, 0.8), (1.2, 1.2)), 0.03)
    assert noisy.speedup_half_width == pytest.approx((noisy.speedup_high - noisy.speedup_low) / 2 / noisy.speedup)
    assert noisy.speedup_half_width > 0.1 and noisy.half_width_met is False
    assert scored(((1.0, 1.0), (1.5, 1.5)), 0.0).half_width_met is None          # no target (a CPU)


def test_a_point_only_interval_has_no_half_width_to_judge():
    point = stats.Interval(10.0, 10.0, 10.0, 0.95, "point only (no rounds kept)")
    assert half_width_of(point, [TaskOutcome("csl", target_half_width=0.03)]) == (None, 0.03, None)
    assert half_width_of(None, []) == (None, 0.0, None)


def test_a_missed_target_is_flagged_with_the_half_width_and_why_rounds_stopped():
    score = scored(((1.0, 1.0), (1.5, 1.5), (0.8, 0.8), (1.2, 1.2)), 0.03)
    tasks = {
        "csl": {"timing": {"half_width": 0.052, "target_half_width": 0.03, "half_width_met": False,
                           "rounds_stopped_by": "max_timing_s", "timing_s": 29.6, "orders": [[0]] * 12}},
        "cmrc2018": {"timing": {"half_width": 0.041, "target_half_width": 0.03, "half_width_met": False,
                                "rounds_stopped_by": "max_rounds", "timing_s": 80.0, "orders": [[0]] * 60}},
        "cluewsc2020": {"timing": {"half_width": 0.02, "target_half_width": 0.03, "half_width_met": True,
                                   "rounds_stopped_by": "done", "timing_s": 9.0, "orders": [[0]] * 7}},
    }
    flags = half_width_flags({name: TaskResult.from_dict(info) for name, info in tasks.items()}, score, SPEC)
    assert len(flags) == 3
    assert flags[0].startswith(f"speedup interval +-{score.speedup_half_width:.1%}, wider than the target +-3.0%")
    assert flags[1] == ("csl: speedup interval +-5.2% against a target of +-3.0%; rounds stopped at the time cap "
                        "(max_timing_s 30 s: 12 rounds in 30 s)")
    assert flags[2] == ("cmrc2018: speedup interval +-4.1% against a target of +-3.0%; rounds stopped at "
                        "max_rounds (60 rounds, 80 s)")
    assert half_width_flags({"csl": TaskResult.from_dict({"timing": {"half_width_met": None}})},
                            scored(((1.0, 1.0),) * 3, 0.0), SPEC) == []



def test_one_tasks_record_words_its_half_width_without_the_task_name():
    record = {"half_width": 0.0449, "target_half_width": 0.02, "half_width_met": False,
              "rounds_stopped_by": "max_timing_s", "timing_s": 119.6, "orders": [[0]] * 9}
    assert task_half_width_flags(record, 120.0) == [
        "speedup interval +-4.5% against a target of +-2.0%; rounds stopped at the time cap (max_timing_s 120 s: "
        "9 rounds in 120 s)"]
    assert task_half_width_flags({**record, "rounds_stopped_by": "max_rounds", "timing_s": 41.2}, 120.0) == [
        "speedup interval +-4.5% against a target of +-2.0%; rounds stopped at max_rounds (9 rounds, 41 s)"]
    assert task_half_width_flags({**record, "rounds_stopped_by": None}, 120.0) == [
        "speedup interval +-4.5% against a target of +-2.0%; rounds stopped at None"]
    assert task_half_width_flags({**record, "half_width_met": True}, 120.0) == []
    assert task_half_width_flags({}, 120.0) == []


def test_the_teams_half_width_and_a_borderline_verdict_are_worded_beside_the_score():
    steady = scored(((1.0, 1.0),) * 4, 0.03)
    assert speedup_half_width_flags(steady) == [] and borderline_flags(steady, SPEC) == []
    wide = replace(steady, speedup_half_width=0.0512, target_half_width=0.03, half_width_met=False)
    assert speedup_half_width_flags(wide) == ["speedup interval +-5.1%, wider than the target +-3.0%"]
    budget = SimpleNamespace(limits=SimpleNamespace(min_speedup=8.0),
                             timing=SimpleNamespace(max_rounds=60, max_timing_s=30.0))
    assert borderline_flags(replace(steady, speed_verdict="borderline"), budget) == [
        "borderline: the speedup interval straddles 8x after the spec's round budget (at most 60 rounds and "
        "30 s of rounds a task)"]


# --- the host's garbage collector, paused while a task is timed ----------------------------------------

def test_the_hosts_automatic_gc_is_off_while_a_task_is_timed_and_back_after_whatever_happened():
    assert gc.isenabled()
    with host_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), host_gc_paused():
        raise RuntimeError("a worker failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with host_gc_paused():
            pass
        assert not gc.isenabled()          # left as it was found
    finally:
        gc.enable()
