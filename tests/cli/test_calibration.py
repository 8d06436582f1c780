"""The A/A row from the command line: `harness doctor --calibrate` and a batch's calibration section, with the
fast fake reference on the local backend (and a fake A/A result where the test is about what follows it)."""

import json
import re
import shutil

import pandas as pd
import pytest

from conftest import TEAMS
from harness import local_engine
from harness import calibration
from harness.calibration import calibration_record, local_box
from harness.stats import Interval

LINE = re.compile(r"A/A on (\S+): (\d+\.\d{3})x \[(\d+\.\d{3}), (\d+\.\d{3})\] \(95% interval, half-width "
                  r"\d+\.\d%, tolerance 3%\): (fair|unfair|undecided): ")


def calibrate_args(run_args):
    """run_args less the options `doctor --calibrate` does not take (--timeout)."""
    at = run_args.index("--timeout")
    return run_args[:at] + run_args[at + 2:]


@pytest.mark.slow
def test_doctor_calibrate_times_the_reference_against_itself_and_says_the_verdict(invoke, run_args, tmp_path):
    result = invoke("doctor", "--calibrate", *calibrate_args(run_args))
    found = LINE.search(result.output)
    assert found, result.output
    box, speedup, low, high, verdict = found.groups()
    assert box == local_box() and float(low) <= float(speedup) <= float(high)
    # the fake reference sleeps 0.2 s a batch on both sides: 1.00x within a percent or so
    assert abs(float(speedup) - 1) < 0.03, result.output
    assert result.exit_code == (0 if verdict == "fair" else 1), result.output
    assert (tmp_path / "out" / "@calibration" / "reference.log").is_file()


def fake_aa(interval):
    """Stands in for run_calibration: the record of an A/A that found `interval`, without timing anything."""
    def run(config, prepared, ref_built, box, work=None):
        return calibration_record(box, interval)
    return run


def test_doctor_calibrate_exits_1_on_an_unfair_box_naming_the_figures(invoke, run_args, monkeypatch):
    monkeypatch.setattr(calibration, "run_calibration", fake_aa(Interval(0.94, 0.92, 0.96, 0.95)))
    result = invoke("doctor", "--calibrate", *calibrate_args(run_args))
    assert result.exit_code == 1, result.output
    assert "0.940x [0.920, 0.960]" in result.output and "unfair" in result.output
    assert "favours the first worker" in result.output


def test_doctor_calibrate_refuses_beside_a_running_batch(invoke, run_args, tmp_path):
    from harness.batch import box_lock

    with box_lock(tmp_path / "cache"):
        result = invoke("doctor", "--calibrate", *calibrate_args(run_args))
    assert result.exit_code == 1 and "another batch holds this box" in result.output


@pytest.fixture
def two_teams(tmp_path):
    """One team that is timed and one whose build fails (never timed, so never flagged)."""
    folder = tmp_path / "submissions"
    for team in ("ok_team", "setup_fails_team"):
        shutil.copytree(TEAMS / team, folder / team)
    return folder


@pytest.mark.slow
def test_a_batch_runs_the_a_a_row_end_to_end_and_writes_the_calibration_section(invoke, run_args, tmp_path,
                                                                              two_teams):
    result = invoke("batch", two_teams, *run_args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    [aa] = summary["calibration"]
    assert aa["box"] == local_box() and aa["ran"] and aa["tolerance"] == 0.03
    assert aa["low"] <= aa["speedup"] <= aa["high"] and abs(aa["speedup"] - 1) < 0.03, aa
    assert aa["fair"] == (aa["low"] >= 0.97 and aa["high"] <= 1.03) and aa["rows_timed"] == 1
    assert set(aa["rounds"]) == {"cluewsc2020", "csl", "cluener2020", "cmrc2018"}
    frame = pd.read_csv(out / "calibration.csv", keep_default_na=False)
    assert list(frame["box"]) == [local_box()] and frame["verdict"][0] == aa["verdict"]
    assert json.loads((out / "calibration.json").read_text())["calibration"][0]["speedup"] == aa["speedup"]
    ok = json.loads((out / "ok_team" / "result.json").read_text(encoding="utf-8"))
    failed = json.loads((out / "setup_fails_team" / "result.json").read_text(encoding="utf-8"))
    assert ok["calibration"]["box"] == local_box() and ok["calibration"]["verdict"] == aa["verdict"]
    assert any(f.startswith("box not proven fair") for f in ok["flags"]) == (not aa["fair"])
    assert failed["calibration"] == {} and not any("box not" in f for f in failed["flags"])
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Calibration: A/A</h2>" in report and f"{aa['speedup']:.3f}x" in report
    assert f"A/A on {local_box()}: {aa['speedup']:.3f}x" in result.output
    assert summary["reference_runs"] == 1           # the A/A is not a team's reference run


@pytest.mark.slow
def test_a_box_not_proven_fair_flags_every_row_it_timed_that_night(invoke, run_args, tmp_path, two_teams,
                                                                    monkeypatch):
    shutil.copytree(TEAMS / "big_team", two_teams / "big_team")
    monkeypatch.setattr(local_engine, "run_calibration", fake_aa(Interval(1.0, 0.9, 1.1, 0.95)))
    result = invoke("batch", two_teams, *run_args, "--max-examples", "1")     # the timings do not matter here
    assert result.exit_code == 0, result.output
    assert "2 rows flagged" in result.output
    board = {row["team"]: row for _, row in
             pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False).iterrows()}
    for team in ("ok_team", "big_team"):
        assert (f"box not proven fair: A/A (BERT-base against itself) on {local_box()} 1.000x [0.900, 1.100], "
                "undecided") in board[team]["flags"], board[team]["flags"]
    assert "box not" not in board["setup_fails_team"]["flags"]
    frame = pd.read_csv(tmp_path / "out" / "calibration.csv", keep_default_na=False)
    assert (frame["verdict"][0], frame["rows_timed"][0], frame["rows_flagged"][0]) == ("undecided", 2, 2)

    # a rerun serves both rows from the cache: nothing timed tonight, no A/A, the old flags stay on the rows
    again = invoke("batch", two_teams, *run_args, "--max-examples", "1")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["calibration"] == []
    assert "box not proven fair" in pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False
                                                ).set_index("team").loc["ok_team", "flags"]
