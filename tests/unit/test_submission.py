import json
import os
from pathlib import Path

import pytest

from harness.spec import load_spec
from harness.submission import SubmissionError, copy_team_dir, folder_label, hash_team_dir, load_submission

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
    ('team = "a"\nsetup = "../setup.sh"\npredictor = "predictor:Predictor"\n', "must be a relative path"),
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


# ---- hostile folders: nothing outside the team folder is read, nothing blocks, no traceback ----------

def test_link_leaving_the_team_folder_is_refused(tmp_path):
    team = make_team(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (team / "weights.bin").symlink_to(secret)
    with pytest.raises(SubmissionError, match="weights.bin' is a link to .*outside the team folder"):
        load_submission(team, SPEC)


def test_relative_link_climbing_out_is_refused_even_when_it_comes_back(tmp_path):
    team = make_team(tmp_path)
    (team / "again.py").symlink_to("../team/predictor.py")   # inside on this host, not in the image
    with pytest.raises(SubmissionError, match="outside the team folder"):
        load_submission(team, SPEC)


def test_dangling_link_is_a_one_line_reason(tmp_path):
    team = make_team(tmp_path)
    (team / "gone.bin").symlink_to("nowhere.bin")
    with pytest.raises(SubmissionError, match="'gone.bin' is a link to 'nowhere.bin', which does not exist"):
        load_submission(team, SPEC)


def test_fifo_is_refused_without_opening_it(tmp_path):
    team = make_team(tmp_path)
    os.mkfifo(team / "pipe")
    with pytest.raises(SubmissionError, match="'pipe' is a special file"):
        load_submission(team, SPEC)


def test_linked_manifest_is_refused(tmp_path):
    team = make_team(tmp_path)
    (team / "real.toml").write_text((team / "harness.toml").read_text())
    (team / "harness.toml").unlink()
    (team / "harness.toml").symlink_to("real.toml")
    with pytest.raises(SubmissionError, match="must be a regular file, not a link"):
        load_submission(team, SPEC)


def test_unreadable_file_is_a_submission_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    team = make_team(tmp_path)
    (team / "locked.bin").write_bytes(b"x")
    (team / "locked.bin").chmod(0)
    with pytest.raises(SubmissionError, match="cannot read the team folder: Permission denied"):
        load_submission(team, SPEC)


def test_links_inside_are_hashed_and_copied_as_links(tmp_path):
    team = make_team(tmp_path)
    (team / "models").mkdir()
    (team / "models" / "w.bin").write_bytes(b"\x01")
    (team / "alias.bin").symlink_to("models/w.bin")
    (team / "models_link").symlink_to("models")
    sub = load_submission(team, SPEC)
    copy = tmp_path / "copy"
    copy_team_dir(team, copy)
    assert os.readlink(copy / "alias.bin") == "models/w.bin"
    assert os.readlink(copy / "models_link") == "models"
    assert (copy / "setup.sh").stat().st_mode & 0o111
    assert hash_team_dir(copy) == sub.content_hash
    (team / "alias.bin").unlink()
    (team / "alias.bin").symlink_to("predictor.py")
    assert hash_team_dir(team) != sub.content_hash


def test_copy_refuses_a_file_swapped_for_an_outside_link(tmp_path):
    team = make_team(tmp_path)
    load_submission(team, SPEC)
    (team / "predictor.py").unlink()
    (team / "predictor.py").symlink_to("/etc/hostname")
    with pytest.raises(SubmissionError, match="outside the team folder"):
        copy_team_dir(team, tmp_path / "copy")


@pytest.mark.parametrize("team_name", ["..", ".", ".hidden", "-x", "a/b", "a\nb", "alpha\n", "a\x00b", "x" * 65])
def test_team_names_are_one_safe_path_component(tmp_path, team_name):
    manifest = f'team = {json.dumps(team_name)}\nsetup = "setup.sh"\npredictor = "predictor:Predictor"\n'
    with pytest.raises(SubmissionError, match="must be 1-64 letters"):
        load_submission(make_team(tmp_path, manifest), SPEC)


@pytest.mark.parametrize("setup", ["setup.sh\nRUN ./evil.sh", "setup.sh\n", "./setup.sh", "a/../setup.sh",
                                   "setup.sh; id", "$(id).sh", "/bin/sh", "set up.sh"])
def test_setup_paths_are_strict(tmp_path, setup):
    manifest = f'team = "a"\nsetup = {json.dumps(setup)}\npredictor = "predictor:Predictor"\n'
    with pytest.raises(SubmissionError, match="must be a relative path"):
        load_submission(make_team(tmp_path, manifest), SPEC)


@pytest.mark.parametrize("entry", ["predictor:Predictor\n", "predictor:Pred\nictor", "pre dictor:P", "a..b:P"])
def test_predictor_entries_are_matched_whole(tmp_path, entry):
    manifest = f'team = "a"\nsetup = "setup.sh"\npredictor = {json.dumps(entry)}\n'
    with pytest.raises(SubmissionError, match="must look like module:Class"):
        load_submission(make_team(tmp_path, manifest), SPEC)


def test_a_chinese_team_name_and_a_nested_setup_are_fine(tmp_path):
    manifest = 'team = "轻量-队_1"\nsetup = "scripts/setup.sh"\npredictor = "predictor:Predictor"\n'
    team = make_team(tmp_path, manifest)
    (team / "scripts").mkdir()
    os.rename(team / "setup.sh", team / "scripts" / "setup.sh")
    assert load_submission(team, SPEC).setup == "scripts/setup.sh"


def test_folder_label_never_climbs(tmp_path):
    (tmp_path / "x").mkdir()
    assert folder_label(tmp_path / "x" / "..") == tmp_path.name
    assert folder_label("/") == "unnamed-team"
    assert folder_label(tmp_path / ".hidden") == "hidden"
