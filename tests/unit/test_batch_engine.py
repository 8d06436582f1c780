"""The batch measures through an engine (harness.engine): a LocalEngine by default, any engine passed in gets
the teams left to run and the A/A rows, and the batch keeps the rows, the summary and the outputs."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness import batch as batch_module
from harness.backends.local import LocalBackend
from harness.batch import run_batch, run_settings_key
from harness.calibration import calibration_record
from harness.config import HarnessError, RunConfig
from harness.local_engine import LocalEngine
from harness.records import ReferenceResult
from harness.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEAMS = FIXTURES / "teams"


class FakeEngine:
    """Records what the batch asks; every team comes back a harness_failed row timed against the reference."""

    def __init__(self):
        self.calls = []

    def measure_all(self, todo, config, prepared, settings_key, progress):
        self.calls.append(("measure_all", sorted(r.team for r, _ in todo), sorted(prepared.inputs), settings_key))
        return [replace(result, status="harness_failed", error="measured by the fake engine",
                        reference={"csl": ReferenceResult.from_dict({"params": 1, "time_s": 1.0})})
                for result, _ in todo]

    def reference_runs(self, measured):
        return 7

    def box_of(self, result):
        return "fake-box"

    def calibrate(self, boxes, config, progress):
        self.calls.append(("calibrate", boxes))
        return [calibration_record(box, why_not="the fake engine", failed=True) for box in boxes]


@pytest.fixture
def config(tmp_path):
    return RunConfig(spec=load_spec(FIXTURES / "spec_small.toml"), backend=LocalBackend(tmp_path / "cache"),
                     data_dir=FIXTURES / "data", out_dir=tmp_path / "out")


@pytest.fixture
def submissions(tmp_path):
    folder = tmp_path / "submissions"
    for team in ("ok_team", "setup_fails_team"):
        shutil.copytree(TEAMS / team, folder / team)
    (folder / "no_manifest").mkdir()        # an invalid submission: a row without the engine
    return folder


def test_an_engine_passed_in_measures_the_teams_and_runs_the_aa_rows(config, submissions, tmp_path):
    engine = FakeEngine()
    summary = run_batch(submissions, config, lock_dir=tmp_path / "lock", engine=engine)
    assert engine.calls == [("measure_all", ["ok_team", "setup_fails_team"], sorted(config.spec.task_names),
                             run_settings_key(config)),
                            ("calibrate", ["fake-box"])]
    assert summary.reference_runs == 7 and [r["box"] for r in summary.calibration] == ["fake-box"]
    assert summary.counts == {"harness_failed": 2, "invalid_submission": 1}
    record = json.loads((tmp_path / "out" / "ok_team" / "result.json").read_text(encoding="utf-8"))
    assert record["calibration"]["box"] == "fake-box"


def test_without_an_engine_the_batch_measures_through_a_local_engine(config, submissions, tmp_path, monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(batch_module, "LocalEngine", lambda: engine)
    run_batch(submissions, config, lock_dir=tmp_path / "lock")
    assert [call[0] for call in engine.calls] == ["measure_all", "calibrate"]


def test_the_local_engine_calibrates_only_the_box_it_timed_on(config):
    with pytest.raises(HarnessError, match="measure_all first"):
        LocalEngine().calibrate(["here"], config, batch_module.SilentProgress())
