"""The caching audit end to end (local backend, fake reference at 0.2 s a batch): caching by input, partial
caching worth 1.2x and answers that change after first sight are caught; the honest twin is not flagged.

The audit's 95% interval needs at least six batches: these runs use twelve CSL examples in batches of two
(six batches); CLUEWSC2020 keeps its one batch, which the row notes (a note, not a flag) as too few to audit.
"""

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import FIXTURES, TEAMS
from harness.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def audit_inputs(tmp_path_factory):
    """(spec, data folder): the fixture data with CSL grown to 12 examples, and CSL batches of 2."""
    root = tmp_path_factory.mktemp("audit_inputs")
    data = root / "data"
    shutil.copytree(FIXTURES / "data", data)
    originals = [json.loads(line) for line in (FIXTURES / "data" / "csl" / "dev.json").read_text().splitlines()]
    grown = [{**originals[i % len(originals)], "id": i} for i in range(12)]
    (data / "csl" / "dev.json").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in grown),
                                           encoding="utf-8")
    spec_text = (FIXTURES / "spec_small.toml").read_text(encoding="utf-8")
    csl_block = 'gold_file = "csl/dev.json"\nmax_seq_length = 256\nbatch_size = 16'
    assert csl_block in spec_text
    spec = root / "spec.toml"
    spec.write_text(spec_text.replace(csl_block, csl_block.replace("batch_size = 16", "batch_size = 2")),
                    encoding="utf-8")
    return spec, data


def run_team(team, audit_inputs, tmp_path):
    spec, data = audit_inputs
    out = tmp_path / "out"
    args = ["run", str(TEAMS / team), "--spec", str(spec), "--data-dir", str(data), "--backend", "local",
            "--reference", str(TEAMS / "fake_reference"), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
            "--timeout", "120"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    record = json.loads((out / team / "result.json").read_text(encoding="utf-8"))
    row = frame[frame["team"] == team].iloc[0]
    assert row["status"] == "partial" and row["csl_score"] != "", (row["status"], row["error"])
    return row, record


def test_the_honest_twin_is_audited_and_not_flagged(audit_inputs, tmp_path):
    row, record = run_team("sleep_team", audit_inputs, tmp_path)
    audit = record["tasks"]["csl"]["timing"]["caching_audit"]
    assert audit["batches"] == 6 and audit["note"] == "" and audit["low"] <= audit["team_ratio"] <= audit["high"]
    assert audit["low"] <= 1.1 and "caching_suspected" not in row["flags"]
    # one WSC batch: no interval, said on the row (a note: the data's size, no finding) rather than passed in silence
    assert "cluewsc2020: caching audit undecided: not enough batches to audit (1 < 6 for a 95% interval)" \
        in row["notes"]


def test_caching_by_input_text_is_flagged_and_timed_on_first_sight(audit_inputs, tmp_path):
    row, record = run_team("caching_team", audit_inputs, tmp_path)
    assert "csl: caching_suspected" in row["flags"]
    # CSL timed on first sight: 6 x 0.1 s against the reference's 6 x 0.2 s (plus one fast WSC batch),
    # about 2.3x, never the thousands the repeats would give
    assert float(row["speedup"]) < 4 and row["speed_ok"] in (False, "False")
    timing = record["tasks"]["csl"]["timing"]
    assert timing["caching_suspected"] and len(timing["scored_rounds_s"]) == 1
    assert timing["caching_audit"]["low"] > 10


def test_partial_caching_worth_1_2x_is_flagged(audit_inputs, tmp_path):
    row, record = run_team("partial_caching_team", audit_inputs, tmp_path)
    audit = record["tasks"]["csl"]["timing"]["caching_audit"]
    assert "csl: caching_suspected" in row["flags"], (audit, row["flags"])
    # 0.06 s against 0.05 s: 1.2x on each of the six batches, so the smallest (the interval's low end) too
    assert 1.1 < audit["low"] <= audit["team_ratio"] < 1.4 and audit["above_tolerance"] == 6


def test_answers_that_change_after_first_sight_are_flagged_and_first_sight_is_scored(audit_inputs, tmp_path):
    row, record = run_team("changing_answers_team", audit_inputs, tmp_path)
    assert "csl: predictions differ between timing rounds" in row["flags"]
    assert record["tasks"]["csl"]["consistent_across_rounds"] is False
    # every grown CSL example is labelled "1": first sight ("0") scores 0, the repeats ("1") would score 100
    gold = [json.loads(line)["label"] for line in (audit_inputs[1] / "csl" / "dev.json").read_text().splitlines()]
    assert set(gold) == {"1"} and float(row["csl_score"]) == 0
