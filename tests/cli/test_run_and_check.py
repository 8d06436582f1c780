"""`harness run` and `harness check` end to end on the local backend, fixture teams and fixture data.

Expected scores are worked out by hand from tests/fixtures/data and tests/fixtures/teams/answers.py:
cluewsc2020 gold true,false,true vs always "true" -> 2/3 = 66.67; csl gold 1,1 vs always "0" -> 0;
cluener2020: no entities predicted, so no type has a true positive -> macro F1 0;
cmrc2018: answer = first two context chars "长城": question 0 (gold "长城") right, question 1 (gold
"中国北方") wrong -> EM 50. P = (66.67 + 0 + 0 + 50) / 4 = 29.17.
"""

import json

import pandas as pd
import pytest

from conftest import FIXTURES, TEAMS
from harness.records import SideTiming

pytestmark = pytest.mark.slow


def read_row(tmp_path, team):
    texts = {"flags": str, "notes": str}                                  # a row with none reads back as ""
    frame = pd.read_csv(tmp_path / "out" / "results.csv", dtype=texts).fillna(dict.fromkeys(texts, ""))
    return frame[frame["team"] == team].iloc[0]


def test_run_writes_a_scored_row(invoke, run_args, tmp_path):
    result = invoke("run", TEAMS / "ok_team", *run_args)
    assert result.exit_code == 0, result.output
    row = read_row(tmp_path, "ok_team")
    assert row["status"] == "ok"
    assert row["cluewsc2020_score"] == pytest.approx(200 / 3)
    assert row["csl_score"] == 0 and row["cluener2020_score"] == 0
    assert row["cmrc2018_score"] == pytest.approx(50.0)
    assert row["P"] == pytest.approx((200 / 3 + 50) / 4)
    assert row["params"] == 40 and row["S_bert"] == 100 * 100 + 100
    assert bool(row["params_ok"]) and bool(row["speed_ok"]) and bool(row["compliant"])
    assert row["device"] == "cpu" and "timed on CPU" in row["notes"] and "timed on CPU" not in row["flags"]
    record = json.loads((tmp_path / "out" / "ok_team" / "result.json").read_text(encoding="utf-8"))
    assert record["tasks"]["cmrc2018"]["metrics"] == {"em": 50.0, "f1": 50.0}
    predictions = json.loads((tmp_path / "out" / "ok_team" / "predictions" / "cmrc2018_predict.json").read_text("utf-8"))
    assert predictions == {"FIX_0_QUERY_0": "长城", "FIX_0_QUERY_1": "长城"}
    # the speedup carries its interval, decided on the interval; the run seed and reference precision are kept
    assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"] and row["speed_verdict"] == "pass"
    assert row["reference_precision"] == "fp32-strict" and record["run_seed"] == row["run_seed"]
    timing = record["tasks"]["csl"]["timing"]
    assert len(timing["rounds_s"]) >= 3 and timing["load_s"] > 0 and timing["first_call_s"] > 0
    # the other side was frozen around each timed window: the first call, warm-up windows and every round
    assert timing["frozen_windows"] >= 2 + 2 + 2 * len(timing["rounds_s"]) and not timing["freeze_unavailable"]
    assert "could not be frozen" not in row["flags"]
    assert len(record["reference"]["csl"]["rounds_s"]) == len(timing["rounds_s"])
    # where each side's time went, read by the host (harness.time_split): on a CPU the CPU time of each side's
    # scored windows (first-sight blocks and later rounds), no device share and nothing missing; the fake
    # reference sleeps 0.2 s a batch, so its worker's CPU is nearly idle in its windows
    split, ref_split = timing["time_split"], record["reference"]["csl"]["time_split"]
    assert split["windows"] >= len(timing["rounds_s"]) and split["wall_s"] > 0 and split["device_busy"] is None
    assert split["cpu_busy"] is not None and split["notes"] == [] and ref_split["notes"] == []
    assert 0 <= ref_split["cpu_busy"] < 0.5 and row["csl_reference_cpu_busy"] == pytest.approx(ref_split["cpu_busy"])
    assert pd.isna(row["csl_device_busy"])
    # the team's own figure: ok_team's Embedding is never called by its predict()
    assert split["own"]["forward_share"] == 0.0 and row["csl_team_own_forward_share"] == 0.0
    assert "team: own figure: predict() called none of its top-level modules' forward" in row["csl_split_note"]
    # where the run's time went (the GPU day prints it): the build, and per task its phases, inside the run's wall
    assert record["build_s"] >= 0
    phases = [record["tasks"][task]["timing"]["phase_s"] for task in record["tasks"]]
    assert all(set(p) == {"start", "prepare", "load", "after_load", "warmup", "first_sight", "rounds", "audit"}
               and min(p.values()) >= 0 for p in phases)
    assert record["build_s"] + sum(sum(p.values()) for p in phases) <= record["duration_s"]
    # every key a side's timing record holds is declared (harness.records.SideTiming), on both sides
    declared = set(SideTiming.__annotations__)
    assert all(set(info["timing"]) <= declared for info in record["tasks"].values())
    assert all(set(info) - {"params", "precision"} <= declared for info in record["reference"].values())
    # where the timing stood, told as it went: the runner is no terminal, so a plain line each (no wrapping)
    assert "ok_team: csl (2/4): loading the team's model and BERT-base" in result.output
    for step in ("warm-up, 1 window a side", "first sight, 1 batch a side in blocks of 1", "round 0 done",
                 "round 1 done", f"timed, {len(record['tasks']['cmrc2018']['timing']['rounds_s'])} rounds in"):
        assert f"ok_team: cmrc2018 (4/4): {step}" in result.output


def test_check_fails_a_team_over_the_parameter_limit(invoke, run_args):
    result = invoke("check", TEAMS / "big_team", *run_args)
    assert result.exit_code == 1
    assert "12,000,000 parameters" in result.output
    assert "FAIL" in result.output and "indicative only" in result.output


def test_check_fails_a_team_slower_than_the_limit(invoke, run_args, tmp_path):
    result = invoke("check", TEAMS / "slow_team", *run_args)
    assert result.exit_code == 1
    row = read_row(tmp_path, "slow_team")
    # 0.8 s per batch against the reference's 0.2 s: speedup about 0.25, far below 8
    assert row["speedup"] < 1 and not bool(row["speed_ok"])


def test_each_kind_of_task_failure_is_a_reason_not_a_crash(invoke, run_args, tmp_path):
    result = invoke("run", TEAMS / "mixed_team", *run_args)
    assert result.exit_code == 0, result.output
    row = read_row(tmp_path, "mixed_team")
    assert row["status"] == "partial"
    assert "boom in csl" in row["error"]
    assert "returned 1 predictions for a batch of 2" in row["error"]
    assert "FIX_0_QUERY_0" in row["error"]                      # the cmrc2018 record with a non-text answer
    assert row["cluewsc2020_score"] == pytest.approx(200 / 3)
    assert row["P"] == pytest.approx(200 / 3 / 4)
    assert "Traceback" not in result.output


def test_a_hanging_team_is_killed_at_the_timeout(invoke, run_args, tmp_path):
    args = run_args[:-1] + ["8"]
    result = invoke("run", TEAMS / "hang_team", *args)
    assert result.exit_code == 0, result.output
    row = read_row(tmp_path, "hang_team")
    assert row["status"] == "timeout" and "timed out after 8 s" in row["error"]


def test_a_missing_predictor_class_is_one_line(invoke, run_args, tmp_path):
    result = invoke("run", TEAMS / "missing_class_team", *run_args)
    assert result.exit_code == 0
    row = read_row(tmp_path, "missing_class_team")
    assert row["status"] == "probe_failed"
    assert "has no class 'Nope'" in row["error"]


def test_a_failing_setup_script_is_build_failed_with_the_log(invoke, run_args, tmp_path):
    result = invoke("check", TEAMS / "setup_fails_team", *run_args)
    assert result.exit_code == 1
    row = read_row(tmp_path, "setup_fails_team")
    assert row["status"] == "build_failed"
    assert "exited with code 3" in row["error"] and "cannot find my weights" in row["error"]


def test_a_bad_manifest_is_reported_before_anything_runs(invoke, run_args, tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    result = invoke("check", team, *run_args)
    assert result.exit_code == 1
    assert "harness.toml is missing" in result.output


def test_a_first_run_on_the_bundled_sample_data_shows_a_clean_row(invoke, tmp_path):
    """The README's demo, against the fake reference: the bundled sample (no --data-dir) is timed in batches
    of 2 (CMRC2018's nine questions in batches of 1), so every task's caching audit has enough batches for an
    interval, and an honest team's row has no flag; what is not a finding (the CPU, the smaller batches, a
    task timed on first sight on a noisy point) is a note."""
    demo = FIXTURES.parents[1] / "baselines" / "demo_team"
    result = invoke("run", demo, "--spec", FIXTURES / "spec_small.toml", "--backend", "local",
                    "--reference", TEAMS / "fake_reference", "--cache-dir", tmp_path / "cache",
                    "--out", tmp_path / "out", "--timeout", "120")
    assert result.exit_code == 0, result.output
    row = read_row(tmp_path, "demo-team")
    assert row["status"] == "ok" and row["flags"] == "", row["flags"]
    assert "timed on CPU" in row["notes"] and "not enough batches" not in row["notes"], row["notes"]
    assert ("bundled sample data timed in batches smaller than the spec's, so that each task makes the caching "
            "audit's 6: cluewsc2020 2 (spec 16), csl 2 (spec 16), cluener2020 2 (spec 16), cmrc2018 1 (spec 8)"
            in row["notes"])
    record = json.loads((tmp_path / "out" / "demo-team" / "result.json").read_text(encoding="utf-8"))
    audits = {name: info["timing"]["caching_audit"] for name, info in record["tasks"].items()}
    assert {name: audit["batches"] for name, audit in audits.items()} == {
        "cluewsc2020": 6, "csl": 6, "cluener2020": 6, "cmrc2018": 9}
    # each audit had an interval to decide on (a point above the tolerance from noise may still note "T from
    # first sight only": a note, never a flag)
    assert all(audit[kind]["low"] is not None for audit in audits.values() for kind in ("flanks", "later_rounds")), \
        audits
    assert "note: timed on CPU" in result.output and "flag:" not in result.output
