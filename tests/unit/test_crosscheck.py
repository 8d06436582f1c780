"""Cross-checks from outside the worker: weight-file bytes without following links, and the flag rule."""

import os

import pytest

from harness.crosscheck import (LARGE_FILE_BYTES, PEAK_SLACK_BYTES, RESIDENT_SLACK_BYTES, child_resident,
                                device_reasons, explained_bytes, reading_reasons,
                                implied_params, memory_reasons, peak_bytes, reset_peaks, resident_bytes,
                                unaccounted_files, unexplained_memory, weight_bytes_in_tar, weight_file_bytes)

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


def test_large_files_count_as_weights_whatever_their_suffix_unless_they_are_code(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    (team / "vocab.txt").write_bytes(b"x" * 5000)                                  # small, no weight suffix
    (team / "weights.dat").write_bytes(b"\0" * LARGE_FILE_BYTES)                    # renamed weights: counted
    (team / "noext").write_bytes(b"\1" * (LARGE_FILE_BYTES + 7))                    # no suffix at all: counted
    (team / "lib.so").write_bytes(b"\x7fELF" + b"\0" * LARGE_FILE_BYTES)            # a shared library: code
    assert weight_file_bytes(team) == 2 * LARGE_FILE_BYTES + 7
    entries = [("w/weights.dat", b"\0" * LARGE_FILE_BYTES), ("w/lib.so", b"\x7fELF" + b"\0" * LARGE_FILE_BYTES),
               ("w/vocab.txt", b"x" * 5000)]
    assert weight_bytes_in_tar(tar_chunks(entries)) == LARGE_FILE_BYTES


def test_a_missing_folder_has_no_weight_files(tmp_path):
    assert weight_file_bytes(tmp_path / "absent") == 0


def test_bytes_imply_parameters_at_four_bytes_each():
    assert implied_params(4_000_003) == 1_000_000
    assert implied_params(-5) == 0


@pytest.mark.parametrize("counted, files, flagged", [
    # an honest fp32 model just under the limit: 11.9M x 4 B = 47.6 MB of files
    (11_900_000, 47_600_000, False),
    # weight files of a 20M-parameter fp32 model beside a count of 5M
    (5_000_000, 80_000_000, True),
    # files implying 13M against a count of 11M: above the limit but not twice the count, so not flagged
    (11_000_000, 52_000_000, False),
    # implying twice the count but under the limit: small models with big tokenizers are fine
    (1_000_000, 40_000_000, False),
    # 100 MB of files beside 258 counted: 25M implied
    (258, 100_000_000, True),
])
def test_files_flag_needs_more_than_the_limit_and_more_than_twice_the_count(counted, files, flagged):
    reason = unaccounted_files(counted, LIMIT, files)
    assert (reason is not None) is flagged
    if flagged:
        assert reason.startswith("weights_unaccounted:") and f"{counted:,} were counted" in reason


def test_counted_bytes_explain_memory_up_to_four_bytes_a_parameter():
    # 30.7M fp16 parameters counted honestly: 61.4 MB explained
    assert explained_bytes({"counted": 30_700_000, "counted_cpu_bytes": 61_400_000}) == 61_400_000
    # a report claiming 8 bytes a parameter explains no more than 4
    assert explained_bytes({"counted": 1_000, "counted_cpu_bytes": 8_000}) == 4_000
    # no bytes reported: 4 bytes a parameter, the lenient reading
    assert explained_bytes({"counted": 1_000}) == 4_000


MiB = 2**20


@pytest.mark.parametrize("report, growth, peak, flagged", [
    # the counter patcher: 258 counted (1 KiB) for a registered 30.7M fp16 model, 65 MiB resident: flagged
    # (the old rule, 4 B a parameter after 64 MiB of slack, let it pass)
    ({"counted": 258, "counted_cpu_bytes": 1_032}, 65 * MiB, 70 * MiB, ["resident"]),
    # a 40M int8 model kept as a 7 MiB zlib blob, decompressed inside each call: 47 MiB at the peak of a
    # call is within what honest activations take (PEAK_SLACK_BYTES): NOT caught, as the README says
    ({"counted": 258, "counted_cpu_bytes": 1_032}, 7 * MiB, 47 * MiB, []),
    # the same trick with 200M fp32 parameters decompressed per call: 800 MiB at the peak is caught
    ({"counted": 258, "counted_cpu_bytes": 1_032}, 7 * MiB, 7 * MiB + 800 * MiB, ["peak"]),
    # an honest 7.45M fp32 model (29.8 MB) with 10 MiB of tokenizer and arenas; activations at the peak
    ({"counted": 7_450_562, "counted_cpu_bytes": 29_802_248}, 29_802_248 + 10 * MiB, 29_802_248 + 200 * MiB, []),
    # exactly at the slack is not past it
    ({"counted": 0, "counted_cpu_bytes": 0}, RESIDENT_SLACK_BYTES, None, []),
    ({"counted": 0, "counted_cpu_bytes": 0}, RESIDENT_SLACK_BYTES + 1, None, ["resident"]),
    # nothing readable: nothing to say here (the row says the peak was not checked)
    ({"counted": 10}, None, None, []),
    # a torch model: 16 MiB beside its weights is the most an honest load took (BERT-base 11.4), 17 is flagged
    ({"counted": 1_000_000, "counted_cpu_bytes": 4_000_000}, 4_000_000 + 16 * MiB, None, []),
    ({"counted": 1_000_000, "counted_cpu_bytes": 4_000_000}, 4_000_000 + 17 * MiB, None, ["resident"]),
    # the ONNX team: 7,330,562 initializers (29,322,248 fp32 bytes), slack 16 MiB + 0.75 x 29,322,248 bytes
    # = 38,768,902 bytes (37.0 MiB); its honest load, at most 32.4 MiB beyond, passes; 38 MiB is flagged
    ({"counted": 7_330_562, "onnx_params": 7_330_562, "counted_cpu_bytes": 29_322_248},
     29_322_248 + 16 * MiB + 21_991_686, None, []),
    ({"counted": 7_330_562, "onnx_params": 7_330_562, "counted_cpu_bytes": 29_322_248},
     29_322_248 + 38 * MiB, None, ["resident"]),
    # a report claiming more ONNX initializers than it counts gets the ONNX share of its count only
    ({"counted": 100, "onnx_params": 50_000_000, "counted_cpu_bytes": 400}, 400 + 17 * MiB, None, ["resident"]),
])
def test_memory_beyond_the_counted_bytes_past_its_slack_is_flagged_whatever_the_count(report, growth, peak, flagged):
    found = unexplained_memory(report, growth, peak)
    reasons = memory_reasons(found)
    assert [("resident" if "resident memory taken at load" in r else "peak") for r in reasons] == flagged
    assert all(r.startswith("weights_unaccounted:") for r in reasons)
    if growth is not None:
        assert found["unexplained_resident_bytes"] == growth - explained_bytes(report)
    onnx = min(report.get("onnx_params", 0), report["counted"])
    assert found["resident_slack_bytes"] == RESIDENT_SLACK_BYTES + int(0.75 * 4 * onnx)


def test_the_peak_sees_a_transient_copy_the_resident_reading_misses_and_resets():
    import subprocess
    import sys

    # a child that touches 96 MiB, frees it, and waits: resident small again, its peak still high
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(96 * 2**20); "
                              "b[::4096] = b'x' * len(b[::4096]); del b; print('ready', flush=True); "
                              "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert peak_bytes(child.pid) - resident_bytes(child.pid) > 90 * MiB
        assert reset_peaks(child.pid) is None
        assert peak_bytes(child.pid) - resident_bytes(child.pid) < 8 * MiB
    finally:
        child.kill()
        child.wait()
    assert peak_bytes(None) is None and reset_peaks(None) == "no process id for the worker"


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
        # and the flag can say how much of it the children hold (pytest-xdist may give this process others)
        children = child_resident(os.getpid())
        assert children["child_processes"] >= 1 and children["child_resident_bytes"] > 60 * 2**20
    finally:
        child.kill()
        child.wait()
    assert resident_bytes(None) is None and child_resident(None) is None


def test_the_resident_flag_says_how_much_child_processes_hold():
    report = {"counted": 1_000_000, "counted_cpu_bytes": 4_000_000}
    found = {**unexplained_memory(report, 4_000_000 + 845 * MiB, 4_000_000 + 848 * MiB),
             "child_processes": 2, "child_resident_bytes": 840 * MiB}
    resident, peak = memory_reasons(found)
    assert resident.endswith("slack 16.0 MiB); 840 MiB of it in 2 child processes of the worker, each counted "
                             "at its whole resident memory, the pages it shares with the worker included "
                             "(threads are counted once)")
    assert "child" not in peak
    alone = memory_reasons({**found, "child_processes": 0, "child_resident_bytes": 0})
    assert all("child" not in reason for reason in alone) and len(alone) == 2


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


def test_the_device_check_at_load_is_worded_from_one_tasks_record():
    MiB = 2**20
    record = {"device_check_note": "", "unexplained_device_bytes": 100 * MiB, "device_allowance_bytes": 40 * MiB,
              "device_reference_overhead_bytes": 20 * MiB, "device_explained_bytes": 30 * MiB}
    assert device_reasons(record) == [
        "weights_unaccounted: the device memory taken at load is 100.0 MiB beyond the 30.0 MiB the counted weights "
        "explain on the device (allowance 40.0 MiB: BERT-base's own 20.0 MiB at load on this box + a 20 MiB margin)"]
    assert device_reasons({**record, "unexplained_device_bytes": 40 * MiB}) == []
    assert device_reasons({"device_check_note": "not calibrated"}) == ["device memory at load not checked: not calibrated"]
    assert device_reasons({}) == []


def test_readings_the_host_memory_checks_could_not_make_are_said():
    assert reading_reasons({"peak_unreadable": "a zombie child", "baseline_note": "pagemap unreadable"}) == [
        "peak memory not checked: a zombie child", "memory baseline: pagemap unreadable"]
    assert reading_reasons({"peak_unreadable": "", "baseline_note": ""}) == [] and reading_reasons({}) == []
