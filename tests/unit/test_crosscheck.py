"""Cross-checks from outside the worker: weight-file bytes without following links, and the flag rule."""

import os

import pytest

from harness.crosscheck import implied_params, unaccounted_weights, weight_file_bytes

LIMIT = 12_000_000


def test_weight_files_are_summed_and_links_and_fifos_never_followed(tmp_path):
    team = tmp_path / "team"
    (team / "sub").mkdir(parents=True)
    (team / "model.safetensors").write_bytes(b"x" * 1000)
    (team / "sub" / "head.PT").write_bytes(b"x" * 24)        # suffixes compare case-insensitively
    (team / "notes.txt").write_bytes(b"x" * 5000)             # not a weight file
    outside = tmp_path / "huge.bin"
    outside.write_bytes(b"x" * 100_000)
    (team / "link.bin").symlink_to(outside)                   # a link out: not followed, not counted
    (team / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(team / "pipe.onnx")                             # opening it would hang: never opened
    assert weight_file_bytes(team) == 1024


def test_a_missing_folder_has_no_weight_files(tmp_path):
    assert weight_file_bytes(tmp_path / "absent") == 0


def test_bytes_imply_parameters_at_four_bytes_each():
    assert implied_params(4_000_003) == 1_000_000
    assert implied_params(-5) == 0


@pytest.mark.parametrize("counted, memory, files, flagged", [
    # an honest fp32 model just under the limit: 11.9M x 4 B = 47.6 MB, plus a 20 MB tokenizer and slack
    (11_900_000, 47_600_000 + 20_000_000, 47_600_000, False),
    # the reference: 102M parameters in 409 MB
    (102_269_186, 409_076_744 + 30_000_000, None, False),
    # a small model whose process holds a hidden 30.7M-parameter fp32 model: 123 MB for 258 counted
    (258, 122_881_032, None, True),
    # weight files of a 20M-parameter fp32 model beside a count of 5M
    (5_000_000, None, 80_000_000, True),
    # files implying 13M against a count of 11M: above the limit but not twice the count, so not flagged
    (11_000_000, None, 52_000_000, False),
    # implying twice the count but under the limit: small models with big tokenizers are fine
    (1_000_000, 40_000_000, None, False),
])
def test_the_flag_needs_more_than_the_limit_and_more_than_twice_the_count(counted, memory, files, flagged):
    reason = unaccounted_weights(counted, LIMIT, memory_bytes=memory, file_bytes=files)
    assert (reason is not None) is flagged
    if flagged:
        assert reason.startswith("weights_unaccounted:") and f"{counted:,} were counted" in reason


def test_a_local_build_is_scanned_whole_and_over_limit_counts_are_left_alone(tmp_path):
    from harness.backends.base import Built
    from harness.pipeline import weight_file_flags

    root = tmp_path / "build"
    (root / "team").mkdir(parents=True)
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").write_text("")
    (root / "venv" / "fetched.safetensors").write_bytes(b"\0" * 400)   # fetched by setup.sh: 100 params
    built = Built(True, str(root / "venv" / "bin" / "python"), str(root / "team"), tmp_path / "build.log")
    submission = type("S", (), {"team_dir": tmp_path / "submitted"})()
    assert weight_file_flags(built, submission, counted=10, limit=50)[0].startswith("weights_unaccounted")
    assert weight_file_flags(built, submission, counted=60, limit=50) == []     # over the limit anyway
    assert weight_file_flags(built, submission, counted=10, limit=150) == []    # files imply less than the limit
