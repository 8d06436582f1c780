"""One team can never end a run or a batch: whatever escapes measure_team becomes that team's row."""

from pathlib import Path

import pytest

from harness import pipeline
from harness.pipeline import HarnessError, RunConfig, measure_or_record
from harness.records import Environment, TaskResult
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
    return measure_or_record(result, Submission(), None, config, None, None, **options)


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


def hostile_value(rng, depth=0):
    """What a worker's bytes could have put in a record had a check let it through."""
    kind = rng.randrange(9 if depth < 3 else 6)
    return [lambda: "\ud800 lone", lambda: 10**30, lambda: -(10**25), lambda: float("nan"), lambda: "界" * 50,
            lambda: None,
            lambda: [hostile_value(rng, depth + 1) for _ in range(3)],
            lambda: {"k\udfff": hostile_value(rng, depth + 1)},
            lambda: {"score": hostile_value(rng, depth + 1), "params": 10**30}][kind]()


def hostile_result(rng):
    return TeamResult("odd_team", "ok", "local", SPEC.name, SPEC.sha256, team_hash="abc", team_dir="/x",
                      tasks={"csl": TaskResult.from_dict({"score": rng.choice([50.0, hostile_value(rng)]),
                                                          "params": rng.choice([10, 10**30]),
                                                          "time_per_example_s": rng.choice([0.01, hostile_value(rng)]),
                                                          "timing": {"note": hostile_value(rng)}})},
                      flags=[rng.choice(["fine", "\udc80 flag"])],
                      environment=Environment.from_dict({"device": hostile_value(rng)}),
                      error=rng.choice(["", "bad \ud800 reply"]))


@pytest.mark.parametrize("seed", range(40))
def test_whatever_a_record_holds_its_row_is_written_and_the_leaderboard_survives(tmp_path, seed):
    import json
    import random

    import pandas as pd

    from harness.batch import leaderboard

    rng = random.Random(seed)
    config = RunConfig(spec=SPEC, backend=None, out_dir=tmp_path)
    results = [pipeline.finish(hostile_result(rng), config, 0.0) for _ in range(3)]
    results.append(pipeline.finish(TeamResult("calm_team", "ok", "local", SPEC.name, SPEC.sha256), config, 0.0))
    record = json.loads((tmp_path / "odd_team" / "result.json").read_text(encoding="utf-8"))
    assert record["status"] in ("ok", "harness_failed") and record["team_hash"] == "abc"
    if record["status"] == "harness_failed":
        assert "could not write this team's row" in record["error"]
        assert "Traceback" in (tmp_path / "odd_team" / "harness_error.log").read_text(encoding="utf-8")
    assert results[-1].status == "ok"                      # a writable row is left as it was
    frame = leaderboard(results, config)
    assert list(frame["team"]).count("calm_team") == 1 and len(frame) == 4
    assert set(pd.read_csv(tmp_path / "results.csv")["team"]) == {"odd_team", "calm_team"}


def test_a_row_that_cannot_be_written_becomes_harness_failed_and_a_writable_one_does_not(tmp_path):
    config = RunConfig(spec=SPEC, backend=None, out_dir=tmp_path)
    calm = pipeline.finish(TeamResult("calm_team", "ok", "local", SPEC.name, SPEC.sha256, flags=["界 fine"]),
                           config, 0.0)
    assert calm.status == "ok" and calm.flags == ("界 fine",)
    odd = pipeline.finish(TeamResult("odd_team", "ok", "local", SPEC.name, SPEC.sha256, flags=["\ud800"]),
                          config, 0.0)
    assert odd.status == "harness_failed" and odd.flags == ()
    huge = TeamResult("huge_team", "ok", "local", SPEC.name, SPEC.sha256, tasks={"csl": TaskResult.from_dict({"params": 10**30})})
    assert pipeline.finish(huge, config, 0.0).status == "harness_failed"


def test_a_team_folder_named_in_undecodable_bytes_still_gets_its_row(tmp_path):
    # os.fsdecode of b"team\xff" holds a surrogate: the fallback row escapes it instead of failing again
    config = RunConfig(spec=SPEC, backend=None, out_dir=tmp_path)
    odd = pipeline.finish(TeamResult("odd_team", "ok", "local", SPEC.name, SPEC.sha256, team_dir="/subs/team\udcff"),
                          config, 0.0)
    assert odd.status == "harness_failed"
    assert odd.team_dir == "/subs/team\\udcff"
