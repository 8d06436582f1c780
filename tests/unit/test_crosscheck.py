"""Cross-checks from outside the worker: weight-file bytes without following links, and the flag rule."""

import os

import pytest

from harness.crosscheck import (implied_params, resident_bytes, unaccounted_weights, weight_bytes_in_tar,
                                weight_file_bytes)

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
    # memory growth loses 64 MiB (67,108,864 B) of slack first, files nothing
    # an honest fp32 model just under the limit: 11.9M x 4 B = 47.6 MB, plus a 20 MB tokenizer
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
    # 100 MB of growth for 258 counted: (100,000,000 - 67,108,864) / 4 = 8.2M, under the limit: slack absorbs it
    (258, 100_000_000, None, False),
    # the same 100 MB as weight files: 25M implied, no slack for files
    (258, None, 100_000_000, True),
])
def test_the_flag_needs_more_than_the_limit_and_more_than_twice_the_count(counted, memory, files, flagged):
    reason = unaccounted_weights(counted, LIMIT, memory_growth=memory, file_bytes=files)
    assert (reason is not None) is flagged
    if flagged:
        assert reason.startswith("weights_unaccounted:") and f"{counted:,} were counted" in reason


def test_resident_memory_counts_the_whole_process_tree():
    import subprocess
    import sys

    alone = resident_bytes(os.getpid())
    # a child holding 64 MiB of touched memory: part of this process's tree, so part of the figure
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(64 * 2**20); "
                              "b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert resident_bytes(os.getpid()) - alone > 60 * 2**20
    finally:
        child.kill()
        child.wait()
    assert resident_bytes(None) is None


def test_a_local_build_is_scanned_whole_and_over_limit_counts_are_left_alone(tmp_path):
    from harness.backends.base import Built
    from harness.backends.local import LocalBackend
    from harness.pipeline import weight_file_flags

    root = tmp_path / "build"
    (root / "team").mkdir(parents=True)
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").write_text("")
    (root / "venv" / "fetched.safetensors").write_bytes(b"\0" * 400)   # fetched by setup.sh: 100 params
    built = Built(True, str(root / "venv" / "bin" / "python"), str(root / "team"), tmp_path / "build.log")
    backend = LocalBackend(tmp_path / "cache")
    assert weight_file_flags(backend, built, [10], limit=50)[0].startswith("weights_unaccounted")
    assert weight_file_flags(backend, built, [60], limit=50) == []          # over the limit anyway
    assert weight_file_flags(backend, built, [10], limit=150) == []         # files imply less than the limit
    assert weight_file_flags(backend, built, [], limit=50) == []            # nothing was counted


def test_weight_files_are_set_against_every_task_model_together(tmp_path):
    # the ONNX example team ships one 7.3M-parameter model per task: 117 MB of files imply 29.2M parameters,
    # more than the limit, but not more than twice the 4 x 7.3M it counted
    from harness.backends.base import Built
    from harness.pipeline import weight_file_flags

    class Files:
        def weight_file_bytes(self, built):
            return 116_907_221

    built = Built(True, "image", "/team", tmp_path / "build.log")
    assert weight_file_flags(Files(), built, [7_330_562, 7_330_562, 7_238_853, 7_232_906], 12_000_000) == []
    # the same files beside four 258-parameter "models": flagged, with the total counted
    reason = weight_file_flags(Files(), built, [258] * 4, 12_000_000)[0]
    assert "but 1,032 were counted over all tasks' models" in reason


def tar_chunks(entries, chunk=1000):
    """A tar archive as the engine streams it: (name, bytes) regular files, (name, '->target') links."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return (data[i:i + chunk] for i in range(0, len(data), chunk))


def test_weight_bytes_in_an_image_archive_come_from_headers_of_regular_files_only():
    entries = [("home/runner/.cache/model.safetensors", b"w" * 3000),   # fetched by setup.sh: counted
               ("home/runner/.cache/head.BIN", b"w" * 500),              # suffix in any case: counted
               ("home/runner/notes.txt", b"t" * 9000),                  # not weight-like
               ("home/runner/big.pt", "->/opt/venv/lib/huge.pt")]       # a link: nothing
    assert weight_bytes_in_tar(tar_chunks(entries, chunk=777)) == 3500
    assert weight_bytes_in_tar(tar_chunks([])) == 0


def test_the_larger_of_the_counts_after_load_and_after_the_passes_stands_with_every_flag():
    from harness.measurement import larger_count

    at_load = {"counted": 40, "flags": ["a"], "hidden_where": []}
    # a model created in the first predict() call: only the count after the passes sees it
    after = {"counted": 30_000_040, "flags": ["a", "b"], "hidden_where": ["predictor module global"]}
    report = larger_count(at_load, after)
    assert report["counted"] == 30_000_040
    assert (report["counted_after_load"], report["counted_after_passes"]) == (40, 30_000_040)
    assert report["flags"] == ["a", "b"] and report["hidden_where"] == ["predictor module global"]
    # weights held at load and dropped before timing: the count after load stands
    assert larger_count({"counted": 500, "flags": []}, {"counted": 40, "flags": []})["counted"] == 500
