"""Each command builds its RunSettings once from its options (harness.settings) and passes it whole: to the
run, to the batch's config and its Ray engine, to the A/A row of `doctor --calibrate`."""

from pathlib import Path

from conftest import FIXTURES, TEAMS
from harness import cli
from harness.batch import BatchSummary
from harness.ray_engine import RayEngine
from harness.settings import RunSettings


def test_run_passes_the_settings_its_options_name(invoke, run_args, tmp_path, monkeypatch):
    seen = []

    def execute(team_dir, settings):
        seen.append(settings)
        raise SystemExit(0)        # stop before the run: only the settings are looked at

    monkeypatch.setattr(cli, "execute", execute)
    invoke("run", TEAMS / "ok_team", *run_args, "--max-examples", "3", "--device", "cpu", "--allow-busy-gpu",
           "--rebuild", "--runner-image", "runner:here")
    assert seen == [RunSettings(spec_path=FIXTURES / "spec_small.toml", data_dir=FIXTURES / "data",
                                out_dir=tmp_path / "out", backend="local", max_examples=3, device="cpu",
                                cache_dir=tmp_path / "cache", reference_dir=TEAMS / "fake_reference",
                                runner_image="runner:here", timeout_s=60.0, allow_busy_gpu=True, rebuild=True)]


def test_batch_gives_its_config_and_its_ray_engine_the_same_settings(invoke, run_args, tmp_path, monkeypatch):
    seen = {}

    def run_batch(submissions_dir, config, lock_dir, progress, reuse_results, engine, calibrate):
        seen.update(config=config, lock_dir=lock_dir, reuse_results=reuse_results, engine=engine)
        return BatchSummary(started_at="now")

    monkeypatch.setattr(cli, "run_batch", run_batch)
    (tmp_path / "submissions").mkdir()
    result = invoke("batch", tmp_path / "submissions", *run_args, "--engine", "ray", "--ray-slots", "2")
    assert result.exit_code == 0, result.output
    settings = seen["config"].settings
    assert isinstance(seen["engine"], RayEngine) and seen["engine"].settings is settings
    assert (seen["engine"].slots, settings.out_dir, settings.backend) == (2, tmp_path / "out", "local")
    assert seen["lock_dir"] == settings.cache_dir == tmp_path / "cache" and seen["reuse_results"] is True


def test_doctor_calibrate_runs_on_settings_without_a_timeout_or_a_rebuild(invoke, run_args, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "calibrate_box", lambda config: seen.append(config.settings) or
                        {"ran": False, "box": "here", "verdict": "failed", "why_not": "not run in this test"})
    args = [a for a in run_args if a not in ("--timeout", "60")]
    result = invoke("doctor", "--calibrate", *args)
    assert result.exit_code == 1, result.output
    assert len(seen) == 1 and (seen[0].timeout_s, seen[0].rebuild, seen[0].backend) == (None, False, "local")
    assert seen[0].data_dir == Path(FIXTURES / "data")
