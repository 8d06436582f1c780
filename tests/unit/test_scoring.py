"""Golden values for the competition arithmetic, worked out by hand in the comments."""

import dataclasses

import pytest

from harness.scoring import ReferenceTask, TaskOutcome, aggregate, check_limits, final_score, score_team
from harness.stats import Interval
from harness.spec import load_spec

SPEC = load_spec()
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")


def reference(times=(10.0, 20.0, 5.0, 5.0), params=100_000_000):
    return {t: ReferenceTask(params, s) for t, s in zip(TASKS, times)}


def outcomes(scores=(80, 60, 70, 50), params=(5_000_000, 6_000_000, 5_500_000, 5_900_000),
             times=(1.0, 2.0, 0.5, 0.5)):
    return {t: TaskOutcome(t, s, p, x) for t, s, p, x in zip(TASKS, scores, params, times)}


def test_formula_by_hand():
    # P = (80+60+70+50)/4 = 65; S = max = 6,000,000; S_bert = 100,000,000
    # T = 1+2+0.5+0.5 = 4; T_bert = 10+20+5+5 = 40; speedup = 10
    # res = 0.8*0.65 + 0.1*(1 - 6e6/(0.9*1e8)) + 0.1*(1 - 4/40)
    #     = 0.52 + 0.1*(1 - 0.066666...) + 0.1*0.9 = 0.52 + 0.093333... + 0.09 = 0.703333...
    s = score_team(outcomes(), reference(), SPEC)
    assert s.P == pytest.approx(65.0)
    assert (s.S, s.S_bert) == (6_000_000, 100_000_000)
    assert (s.T, s.T_bert) == (pytest.approx(4.0), pytest.approx(40.0))
    assert s.speedup == pytest.approx(10.0)
    assert s.res == pytest.approx(0.7033333333, abs=1e-9)
    assert s.compliant and s.params_ok and s.speed_ok
    assert s.failed_tasks == () and s.reasons == ()


def test_final_score_direct():
    # 0.8*0.5 + 0.1*(1 - 9e6/(0.9*1e8)) + 0.1*(1 - 1/8) = 0.4 + 0.09 + 0.0875 = 0.5775
    assert final_score(50, 9e6, 1e8, 1.0, 8.0, SPEC.formula) == pytest.approx(0.5775)


def test_failed_task_scores_zero_and_is_named():
    o = outcomes()
    o["cluener2020"] = TaskOutcome("cluener2020", error="predict() raised ValueError: boom")
    s = score_team(o, reference(), SPEC)
    # P = (80+60+0+50)/4 = 47.5; T over the three timed tasks = 1+2+0.5 = 3.5; T_bert = 10+20+5 = 35
    assert s.P == pytest.approx(47.5)
    assert s.failed_tasks == ("cluener2020",)
    assert s.T == pytest.approx(3.5) and s.T_bert == pytest.approx(35.0)
    assert any("cluener2020" in r for r in s.reasons)
    assert s.compliant  # a failed task costs its score, it is no breach of the limits


def test_missing_task_counts_zero():
    o = outcomes()
    del o["cmrc2018"]
    s = score_team(o, reference(), SPEC)
    assert s.P == pytest.approx((80 + 60 + 70) / 4)
    assert s.failed_tasks == ("cmrc2018",)


def interval(point, low, high):
    return Interval(point, low, high, 0.95, "test")


def test_limits_are_strict_for_params_and_decided_on_the_speedup_interval():
    limits = SPEC.limits
    # pass: the low bound reaches 8 (inclusive)
    assert check_limits(11_999_999, interval(9.0, 8.0, 10.0), limits)[:3] == (True, True, "pass")
    # fail: even the high bound is below 8
    params_ok, speed_ok, verdict, reasons = check_limits(12_000_000, interval(7.5, 7.0, 7.99), limits)
    assert (params_ok, speed_ok, verdict) == (False, False, "fail")
    assert "12,000,000 parameters" in reasons[0] and "7.50x [7.00, 7.99]" in reasons[1]
    # borderline: the interval straddles 8, so speed_ok is None (neither compliant nor ruled out)
    params_ok, speed_ok, verdict, reasons = check_limits(100, interval(8.1, 7.9, 8.3), limits)
    assert (speed_ok, verdict) == (None, "borderline") and "borderline" in reasons[0]


def test_a_borderline_row_is_not_compliant():
    o = {t: dataclasses.replace(x, rounds=((x.time_s,),) * 3) for t, x in outcomes(times=(1.25,) * 4).items()}
    r = {t: dataclasses.replace(x, rounds=((10.0,), (10.0,), (10.0,))) for t, x in reference((10.0,) * 4).items()}
    s = score_team(o, r, SPEC)
    # identical rounds: the interval collapses to the point 40/5 = 8.0, which passes (inclusive)
    assert s.speedup == pytest.approx(8.0) and s.speed_verdict == "pass" and s.compliant


def test_non_compliant_team_keeps_its_score_and_reason():
    o = outcomes(params=(13_000_000,) * 4)
    s = score_team(o, reference(), SPEC)
    assert not s.compliant and not s.params_ok
    assert s.res is not None
    assert "13,000,000" in s.reasons[0]


def test_nothing_ran_gives_no_score():
    o = {t: TaskOutcome(t, error="crash") for t in TASKS}
    s = score_team(o, reference(), SPEC)
    assert s.res is None and s.S is None and s.speedup is None and s.P == 0.0
    assert not s.compliant


def test_mean_aggregates_follow_the_spec():
    spec = dataclasses.replace(SPEC, formula=dataclasses.replace(SPEC.formula, size_aggregate="mean",
                                                                 time_aggregate="mean"))
    s = score_team(outcomes(), reference(), spec)
    # S = mean(5.0M, 6.0M, 5.5M, 5.9M) = 22.4M/4 = 5.6M; T = 4/4 = 1.0; T_bert = 40/4 = 10
    assert s.S == 5_600_000
    assert s.T == pytest.approx(1.0) and s.T_bert == pytest.approx(10.0)


def test_aggregate_refuses_unknown_and_empty():
    assert aggregate([1, 5, 3], "max") == 5
    with pytest.raises(ValueError):
        aggregate([], "sum")
    with pytest.raises(ValueError):
        aggregate([1], "median")
