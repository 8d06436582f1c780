"""RunSettings: the run's options as plain values, sent whole to a Ray node as JSON (harness.settings)."""

import json
from dataclasses import fields
from pathlib import Path

import pytest

from harness.settings import PATH_FIELDS, RunSettings


def settings(**overrides):
    values = dict(spec_path=Path("/srv/spec.toml"), data_dir=Path("/srv/clue"), out_dir=Path("/srv/out"),
                  backend="docker", max_examples=200, device="cuda", cache_dir=Path("/srv/cache"),
                  reference_dir=Path("/srv/reference"), runner_image="lightlm-harness/runner:test", timeout_s=90.0,
                  allow_busy_gpu=True, rebuild=True)
    values.update(overrides)
    return RunSettings(**values)


@pytest.mark.parametrize("made", [settings(), settings(spec_path=None, max_examples=None, timeout_s=None,
                                                       allow_busy_gpu=False, rebuild=False)])
def test_settings_round_trip_through_json(made):
    sent = json.dumps(made.to_dict())
    assert RunSettings.from_dict(json.loads(sent)) == made


def test_every_path_travels_as_a_string_and_comes_back_a_path():
    sent = settings().to_dict()
    assert {k for k, v in sent.items() if isinstance(v, str) and v.startswith("/srv")} == set(PATH_FIELDS)
    back = RunSettings.from_dict(sent)
    assert all(isinstance(getattr(back, name), Path) for name in PATH_FIELDS)


def test_an_option_that_is_not_a_setting_is_refused_by_name():
    values = {**settings().to_dict(), "ray_slots": 2}
    with pytest.raises(TypeError, match="not run settings: ray_slots"):
        RunSettings.from_options(**values)


def test_the_settings_hold_every_option_a_run_is_made_from():
    assert [f.name for f in fields(RunSettings)] == [
        "spec_path", "data_dir", "out_dir", "backend", "max_examples", "device", "cache_dir", "reference_dir",
        "runner_image", "timeout_s", "allow_busy_gpu", "rebuild"]
