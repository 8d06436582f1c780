"""The caching audit end to end (local backend, fake reference at 0.2 s a batch): nothing timed repeats, so
caches of what was seen before (by input, the timed-only cache, a partial cache worth 1.2x) gain nothing and
are not flagged; a team that tells made-up inputs from real ones and skips work on them (all batches but
one) is flagged and timed on first sight; the honest twin is not flagged; answers that would change on a
repeat never get one, and first sight is scored.

The audit's 95% interval needs at least six batches: these runs use the sample data's twelve CSL examples
(whose text the one-honest-batch cache ships as its "public" corpus) in batches of two (six batches);
CLUEWSC2020 keeps its one batch, which the row notes (a note, not a flag) as too few to audit.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import FIXTURES, TEAMS
from harness.cli import main

pytestmark = pytest.mark.slow


SAMPLE_CSL = Path(__file__).resolve().parents[2] / "baselines" / "sample_data" / "csl" / "dev.json"


@pytest.fixture(scope="module")
def audit_inputs(tmp_path_factory):
    """(spec, data folder): the fixture data with CSL replaced by the sample data's twelve CSL examples (whose
    text the one-honest-batch cache knows), all labelled "1", and CSL batches of 2."""
    root = tmp_path_factory.mktemp("audit_inputs")
    data = root / "data"
    shutil.copytree(FIXTURES / "data", data)
    rows = [{**json.loads(line), "label": "1"} for line in SAMPLE_CSL.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12
    (data / "csl" / "dev.json").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in rows),
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
    # no evidence of a gain: each interval reaches down to the tolerance (a point above it, from a burst of
    # load on the real calls, would take T from first sight with a note, never a flag)
    assert audit["batches"] == 6
    for gain in (audit["flanks"], audit["later_rounds"]):
        assert gain["low"] <= gain["gain"] <= gain["high"] and min(gain["low"], gain["team_low"]) <= 1.1
    assert "caching_suspected" not in row["flags"]
    # one WSC batch: no interval, said on the row rather than passed in silence
    assert "cluewsc2020: caching audit undecided: not enough batches to audit (1 < 6 for a 95% interval)" \
        in row["notes"]


@pytest.mark.parametrize("team, work_s", [("caching_team", 0.1), ("timed_only_cache_team", 0.05),
                                          ("partial_caching_team", 0.06)])
def test_a_cache_of_what_was_seen_before_gains_nothing(audit_inputs, tmp_path, team, work_s):
    """Each remembers inputs by content and saves work on a repeat (all of it, or a fifth): nothing timed is
    repeated, so every timed call costs its first-sight work, the later rounds count and nothing is flagged."""
    row, record = run_team(team, audit_inputs, tmp_path)
    timing = record["tasks"]["csl"]["timing"]
    assert "caching_suspected" not in row["flags"]
    # every scored batch took its work (later rounds counted or not): T is six batches' worth at least,
    # never what repeats would give
    assert all(b >= 0.95 * work_s for r in timing["scored_rounds_s"] for b in r)
    assert timing["time_s"] >= 0.95 * 6 * work_s


def test_skipping_work_on_made_up_inputs_but_one_batch_is_flagged_and_timed_on_first_sight(audit_inputs, tmp_path):
    row, record = run_team("one_honest_batch_cache_team", audit_inputs, tmp_path)
    timing = record["tasks"]["csl"]["timing"]
    audit = timing["caching_audit"]
    assert "csl: caching_suspected" in row["flags"], (audit, row["flags"])
    assert all(min(audit[key]["low"], audit[key]["team_low"]) > 1.1 for key in ("flanks", "later_rounds"))
    # T from the real inputs' first sight: six batches of 0.05 s, not the one honest batch's worth
    assert timing["scored_rounds_s"] == timing["rounds_s"][:1] and timing["time_s"] >= 0.95 * 6 * 0.05


def test_answers_that_would_change_on_a_repeat_never_get_one_and_first_sight_is_scored(audit_inputs, tmp_path):
    row, record = run_team("changing_answers_team", audit_inputs, tmp_path)
    assert "predictions differ" not in row["flags"] and "caching_suspected" not in row["flags"]
    # every CSL example is labelled "1": first sight ("0") scores 0, a repeat ("1") would score 100
    gold = [json.loads(line)["label"] for line in (audit_inputs[1] / "csl" / "dev.json").read_text().splitlines()]
    assert set(gold) == {"1"} and float(row["csl_score"]) == 0
