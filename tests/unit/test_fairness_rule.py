"""The A/A row's fairness rule, its record and flag, and how a box's verdict reaches the rows it timed.

Intervals are worked by hand against the 3% tolerance: fair inside [0.97, 1.03] (bounds included), unfair
wholly outside, undecided when straddling a bound (too wide, or off-centre)."""

import json

import pandas as pd
import pytest

from harness.calibration import (aa_interval, apply_calibration, calibration_flag, calibration_line,
                                 calibration_record, judge, write_calibration)
from harness.measurement import Measured
from harness.pipeline import HarnessError
from harness.results import TeamResult
from harness.stats import Interval


@pytest.mark.parametrize("low, high, verdict, words", [
    (0.98, 1.02, "fair", "inside"),
    (0.97, 1.03, "fair", "inside"),                    # the bounds belong to the band
    (1.005, 1.02, "fair", "inside"),                   # 1.00 excluded, but the bias is shown below 3%
    (1.04, 1.08, "unfair", "favours the second worker"),
    (0.90, 0.96, "unfair", "favours the first worker"),
    (1.0301, 1.05, "unfair", "above"),                 # just past the ceiling, wholly
    (0.90, 1.10, "undecided", "too wide to tell (half-width 10.0%"),
    (0.95, 1.02, "undecided", "too wide to tell (half-width 3.5%"),
    (1.01, 1.05, "undecided", "a bias beyond 3% is not ruled out"),   # half-width 2%, but off-centre
    (0.96, 0.99, "undecided", "not ruled out"),
])
def test_the_fairness_rule_on_hand_worked_intervals(low, high, verdict, words):
    found, reason = judge(low, high)
    assert found == verdict and words in reason, reason


def test_a_wider_tolerance_turns_an_undecided_box_fair():
    assert judge(0.95, 1.04)[0] == "undecided"
    assert judge(0.95, 1.04, tolerance=0.05)[0] == "fair"


def test_the_record_carries_the_shared_fields_and_the_relative_half_width():
    record = calibration_record("box-a", Interval(1.0, 0.98, 1.02, 0.95))
    assert {k: record[k] for k in ("box", "speedup", "low", "high", "fair", "tolerance", "verdict", "ran")} == {
        "box": "box-a", "speedup": 1.0, "low": 0.98, "high": 1.02, "fair": True, "tolerance": 0.03,
        "verdict": "fair", "ran": True}
    assert record["half_width"] == pytest.approx(0.02)
    unfair = calibration_record("box-b", Interval(1.06, 1.04, 1.08, 0.95))
    assert unfair["fair"] is False and unfair["half_width"] == pytest.approx(0.02 / 1.06)


def test_a_fair_or_deliberately_skipped_box_flags_nothing_and_the_others_name_their_figures():
    assert calibration_flag(calibration_record("box-a", Interval(1.0, 0.98, 1.02, 0.95))) is None
    skipped = calibration_record("box-a", why_not="--no-calibration")
    assert skipped["verdict"] == "not_run" and skipped["fair"] is None and calibration_flag(skipped) is None
    unfair = calibration_flag(calibration_record("box-b", Interval(1.06, 1.04, 1.08, 0.95)))
    assert unfair.startswith("box not proven fair: A/A") and "on box-b 1.060x [1.040, 1.080], unfair" in unfair
    wide = calibration_flag(calibration_record("box-c", Interval(1.0, 0.9, 1.1, 0.95)))
    assert "undecided" in wide and "too wide" in wide
    failed = calibration_record("box-d", why_not="reference worker died", failed=True)
    assert failed["fair"] is False and failed["verdict"] == "failed"
    assert calibration_flag(failed) == ("box not calibrated: the A/A run (BERT-base against itself) on box-d "
                                        "failed: reference worker died")
    assert "1.060x [1.040, 1.080]" in calibration_line(calibration_record("b", Interval(1.06, 1.04, 1.08, 0.95)))


def _result(team, tmp_path, flags=()):
    result = TeamResult(team=team, status="ok", backend="local", spec_name="s", spec_sha256="x", flags=list(flags))
    (tmp_path / team).mkdir()
    return result


def test_the_rows_a_box_timed_get_its_record_and_only_an_unproven_box_flags_them(tmp_path):
    rows = {"a1": "box-a", "a2": "box-a", "b1": "box-b"}
    results = [_result(team, tmp_path, ["earlier flag"] if team == "a2" else []) for team in rows]
    unfair = calibration_record("box-a", Interval(1.06, 1.04, 1.08, 0.95))
    fair = calibration_record("box-b", Interval(1.0, 0.99, 1.01, 0.95))
    results = apply_calibration(results, [unfair, fair], lambda r: rows[r.team], tmp_path)
    by_team = {r.team: r for r in results}
    assert [f for f in by_team["a1"].flags if "box not proven fair" in f] and by_team["b1"].flags == ()
    assert by_team["a2"].flags[0] == "earlier flag" and "1.060x [1.040, 1.080]" in by_team["a2"].flags[1]
    written = json.loads((tmp_path / "a1" / "result.json").read_text(encoding="utf-8"))
    assert written["calibration"]["box"] == "box-a" and written["flags"] == list(by_team["a1"].flags)
    assert (unfair["rows_timed"], unfair["rows_flagged"], fair["rows_timed"], fair["rows_flagged"]) == (2, 2, 1, 0)


def test_the_interval_comes_from_every_round_of_both_sides():
    rounds = [[0.2, 0.2, 0.2]] * 3
    measured = Measured(tasks={"csl": {"ok": True, "rounds_s": [[0.1, 0.1, 0.1]] * 3}},
                        reference={"csl": {"rounds_s": rounds}})
    interval = aa_interval(measured, ["csl"], 0.95)
    assert interval.point == pytest.approx(2.0) and interval.low == pytest.approx(2.0)
    measured.tasks["csl"] = {"ok": False, "error": "boom"}
    with pytest.raises(HarnessError, match="csl: boom"):
        aa_interval(measured, ["csl"], 0.95)


def test_calibration_files_hold_every_box(tmp_path):
    records = [calibration_record("box-a", Interval(1.0, 0.98, 1.02, 0.95)),
               calibration_record("box-b", why_not="--no-calibration")]
    write_calibration(tmp_path, records)
    assert json.loads((tmp_path / "calibration.json").read_text())["calibration"][0]["box"] == "box-a"
    frame = pd.read_csv(tmp_path / "calibration.csv", keep_default_na=False)
    assert list(frame["box"]) == ["box-a", "box-b"] and list(frame["verdict"]) == ["fair", "not_run"]


def test_the_aa_is_timed_to_half_the_tolerance_on_a_gpu_and_as_a_team_on_a_cpu():
    from harness.calibration import TOLERANCE, aa_plan
    from harness.spec import load_spec
    from harness.timekeeper import TimingPlan

    spec = load_spec()
    plan = aa_plan(spec, 7)
    assert plan.target_for("cuda") == TOLERANCE / 2 < TimingPlan.from_spec(spec, 7).target_for("cuda")
    assert plan.target_for("cpu") == TimingPlan.from_spec(spec, 7).target_for("cpu")
    assert (plan.max_rounds, plan.max_timing_s) == (spec.timing.max_rounds, spec.timing.max_timing_s)
