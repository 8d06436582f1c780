import os
from pathlib import Path

import pytest

from harness.spec import load_spec
from harness.submission import SubmissionError, hash_team_dir, load_submission

SPEC = load_spec()


def make_team(root: Path, manifest: str | None = None, executable: bool = True) -> Path:
    team = root / "team"
    team.mkdir()
    (team / "predictor.py").write_text("class Predictor: pass\n")
    setup = team / "setup.sh"
    setup.write_text("#!/bin/sh\nexit 0\n")
    setup.chmod(0o755 if executable else 0o644)
    if manifest is None:
        manifest = 'team = "alpha"\nsetup = "setup.sh"\npredictor = "predictor:Predictor"\n'
    (team / "harness.toml").write_text(manifest)
    return team


def test_valid_team_defaults_to_every_spec_task(tmp_path):
    sub = load_submission(make_team(tmp_path), SPEC)
    assert sub.team == "alpha" and sub.predictor == "predictor:Predictor"
    assert sub.tasks == SPEC.task_names
    assert len(sub.content_hash) == 64


def test_missing_manifest_says_which_keys(tmp_path):
    with pytest.raises(SubmissionError, match="harness.toml is missing.*team, setup, predictor"):
        load_submission(tmp_path, SPEC)


@pytest.mark.parametrize("manifest, message", [
    ('team = "a"\nsetup = "setup.sh"\npredictor = "predictor:Predictor"\ncolour = "red"\n', "unknown key 'colour'"),
    ('setup = "setup.sh"\npredictor = "predictor:Predictor"\n', "missing key 'team'"),
    ('team = "a"\nsetup = "nope.sh"\npredictor = "predictor:Predictor"\n', "'nope.sh' is not a file"),
    ('team = "a"\nsetup = "../setup.sh"\npredictor = "predictor:Predictor"\n', "is not a file inside"),
    ('team = "a"\nsetup = "setup.sh"\npredictor = "predictor.Predictor"\n', "must look like module:Class"),
    ('team = "a"\nsetup = "setup.sh"\npredictor = "model:Predictor"\n', "module 'model' not found"),
    ('team = "a"\nsetup = "setup.sh"\npredictor = "predictor:P"\ntasks = ["ocnli"]\n', "unknown task 'ocnli'"),
    ('team = "a b"\nsetup = "setup.sh"\npredictor = "predictor:P"\n', "must be 1-64 letters"),
    ('team = "a\n', "not valid TOML"),
])
def test_bad_manifests_say_what_to_fix(tmp_path, manifest, message):
    with pytest.raises(SubmissionError, match=message):
        load_submission(make_team(tmp_path, manifest), SPEC)


def test_non_executable_setup_says_chmod(tmp_path):
    with pytest.raises(SubmissionError, match="chmod \\+x"):
        load_submission(make_team(tmp_path, executable=False), SPEC)


def test_task_subset_is_kept_in_order(tmp_path):
    manifest = 'team = "a"\nsetup = "setup.sh"\npredictor = "predictor:P"\ntasks = ["csl", "cluewsc2020"]\n'
    assert load_submission(make_team(tmp_path, manifest), SPEC).tasks == ("csl", "cluewsc2020")


def test_hash_changes_with_content_mode_and_names_but_not_caches(tmp_path):
    team = make_team(tmp_path)
    first = hash_team_dir(team)
    (team / "__pycache__").mkdir()
    (team / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert hash_team_dir(team) == first
    (team / "weights.bin").write_bytes(b"\x00\x01")
    second = hash_team_dir(team)
    assert second != first
    os.chmod(team / "weights.bin", 0o755)
    assert hash_team_dir(team) != second
