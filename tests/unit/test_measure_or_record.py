"""One team can never end a run or a batch: whatever escapes measure_team becomes that team's row."""

from pathlib import Path

import pytest

from harness import pipeline
from harness.pipeline import HarnessError, RunConfig, measure_or_record
from harness.results import TeamResult
from harness.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[1] / "fixtures" / "spec_small.toml")


class Submission:
    team = "odd_team"


def record_with(monkeypatch, tmp_path, exc, **options):
    def measure(*args, **kwargs):
        raise exc
    monkeypatch.setattr(pipeline, "measure_team", measure)
    result = TeamResult("odd_team", "ok", "local", SPEC.name, SPEC.sha256)
    config = RunConfig(spec=SPEC, backend=None, out_dir=tmp_path)
    measure_or_record(result, Submission(), None, config, None, None, **options)
    return result


def test_an_unforeseen_exception_is_a_harness_failed_row_with_its_traceback_kept(monkeypatch, tmp_path):
    result = record_with(monkeypatch, tmp_path, TypeError("'>=' not supported between 'str' and 'int'"))
    assert result.status == "harness_failed"
    assert "TypeError: '>=' not supported" in result.error
    assert "Traceback" in (tmp_path / "odd_team" / "harness_error.log").read_text()


def test_a_failed_reference_ends_a_single_run_but_is_a_row_in_a_batch(monkeypatch, tmp_path):
    with pytest.raises(HarnessError):
        record_with(monkeypatch, tmp_path, HarnessError("the BERT-base reference failed"))
    result = record_with(monkeypatch, tmp_path, HarnessError("the BERT-base reference failed"),
                         reference_failure_is_a_row=True)
    assert (result.status, result.error) == ("harness_failed", "the BERT-base reference failed")


def test_ctrl_c_still_stops_the_run(monkeypatch, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        record_with(monkeypatch, tmp_path, KeyboardInterrupt())
