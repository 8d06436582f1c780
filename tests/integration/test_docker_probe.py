"""The worker's weight scan inside the runner image, on the torch the image holds (the offline image: Debian's
torch 1.13, which has no Tensor.untyped_storage): every hiding place of tests/unit/test_hidden_weights.py is
caught there too, and an honest predictor is not flagged."""

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HIDDEN, VISIBLE = 12_500_000, 34
HIDING = ["LeftOutOfSources", "BoundMethod", "ClosureCell", "FrozenAway", "ModuleGlobal", "CreatedInPredict",
          "StubbedParameters"]


def test_hidden_weights_are_caught_on_the_runner_images_torch(docker_client, runner_image):
    output = docker_client.containers.run(
        runner_image, ["/opt/venv/bin/python3", "-I", "/fixtures/count_hiding.py", ",".join(HIDING)],
        volumes={str(FIXTURES / "params"): {"bind": "/fixtures", "mode": "ro"}}, network_mode="none",
        user="10001:10001", environment={"HOME": "/tmp"}, remove=True)
    counts = json.loads(output.decode().strip().splitlines()[-1])
    if counts["torch"].startswith("1."):
        assert counts["untyped_storage"] is False      # the path this test exists for: storage() on 1.13
    honest = counts["Honest"]
    assert (honest["counted"], honest["visible"], honest["hidden"], honest["flags"]) == (VISIBLE, VISIBLE, 0, [])
    assert honest["cpu_bytes"] == 4 * VISIBLE         # fp32 Linear(16, 2): the bytes the host's memory check uses
    for name in HIDING:
        report = counts[name]
        assert report["counted"] >= HIDDEN, (counts["torch"], name, report)
        assert not any("scan incomplete" in flag for flag in report["flags"]), report["flags"]


def test_onnx_runtimes_first_session_runs_in_the_runner_image(docker_client, runner_image):
    """prepare's warm-up model (harness.probe.onnx_warmup) on the image's onnxruntime: every output 1/8."""
    code = ("import json, onnxruntime; from harness.probe.onnx_warmup import warm_session; "
            "print(json.dumps(warm_session('cpu')))")
    output = docker_client.containers.run(runner_image, ["/opt/venv/bin/python3", "-c", code], network_mode="none",
                                          user="10001:10001", environment={"HOME": "/tmp"}, remove=True)
    out = json.loads(output.decode().strip().splitlines()[-1])
    assert len(out[0]) == 4 and all(abs(v - 0.125) < 1e-6 for row in out[0] for v in row)


# Issue 28.3: raw buffers, arrays behind untracked containers and TorchScript modules' C++ tensors
NEW_KINDS = ["BytesBlob", "ByteArrayBlob", "ArrayArray", "MmapFile", "BareStorage", "TypedStorageHeld",
             "ArraysInTuple", "ArraysInNestedDict", "ManySmallBytes", "ScriptedInCpp", "ScriptedAttribute"]


def test_weightscan_new_kinds_are_caught_on_the_runner_images_torch(docker_client, runner_image):
    output = docker_client.containers.run(
        runner_image, ["/opt/venv/bin/python3", "-I", "/fixtures/count_hiding.py", ",".join(NEW_KINDS)],
        volumes={str(FIXTURES / "params"): {"bind": "/fixtures", "mode": "ro"}}, network_mode="none",
        user="10001:10001", environment={"HOME": "/tmp"}, remove=True)
    counts = json.loads(output.decode().strip().splitlines()[-1])
    honest = counts["Honest"]
    assert (honest["counted"], honest["hidden"], honest["flags"]) == (VISIBLE, 0, [])
    for name in NEW_KINDS:
        report = counts[name]
        assert report["counted"] >= HIDDEN, (counts["torch"], name, report)
        assert any("outside what the predictor shows" in flag for flag in report["flags"]), report["flags"]
        assert not any("scan incomplete" in flag for flag in report["flags"]), report["flags"]
    # the element size the object says: a TypedStorage its dtype's, array.array its typecode's
    assert counts["TypedStorageHeld"]["hidden"] < HIDDEN + 1_000 and counts["ArrayArray"]["hidden"] < HIDDEN + 1_000


def test_weightscan_the_host_reads_a_containers_executable_maps_in_its_own_paths(docker_client, runner_image):
    """What the weight-file check takes for code: the host reads /proc/PID/maps of a worker container's
    process, and its paths are the container's (those the image's archive names): a library the worker
    loaded, and a file it mapped executable by hand."""
    from harness.data_files import code_bytes, executable_mappings

    code = ("import ctypes, mmap, os, time, onnxruntime\n"
            "open('/tmp/blob', 'wb').write(b'\\x7fELF' + bytes(8188))\n"
            "fd = os.open('/tmp/blob', os.O_RDONLY)\n"
            "keep = mmap.mmap(fd, 8192, prot=mmap.PROT_READ | mmap.PROT_EXEC, flags=mmap.MAP_PRIVATE)\n"
            "print('ready', flush=True); time.sleep(120)\n")
    container = docker_client.containers.run(runner_image, ["/opt/venv/bin/python3", "-c", code], detach=True,
                                              network_mode="none", user="10001:10001",
                                              environment={"HOME": "/tmp"})     # no tmpfs: it is noexec
    try:
        for _ in range(600):
            if b"ready" in container.logs():
                break
            time.sleep(0.1)
        container.reload()
        assert container.status == "running", container.logs()[-2000:]
        found = executable_mappings(int(container.attrs["State"]["Pid"]))
        assert found is not None, "the host could not read the container's maps"
        assert found.get("/tmp/blob") == [(0, 8192)], sorted(found)[:20]
        library = next(path for path in found if "onnxruntime_pybind11_state" in path)
        assert library.startswith("/opt/venv/"), library
        # the library's declared executable segment, mapped: code; the hand-mapped file: magic only, not code
        chunks, _ = container.get_archive(library)
        head = _first_member_bytes(chunks, 4096)
        assert code_bytes(10**9, head, found[library]) > 2**20
        assert code_bytes(8192, b"\x7fELF" + bytes(4092), found["/tmp/blob"]) == 0
    finally:
        container.remove(force=True)


def _first_member_bytes(chunks, n):
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as archive:
        member = next(m for m in archive.getmembers() if m.isreg())
        return archive.extractfile(member).read(n)


def test_weightscan_an_image_build_counts_every_data_file_and_not_the_runners_own(docker_client, runner_image,
                                                                                  tmp_path):
    """DockerBackend.weight_file_bytes over a built team image: 64 MiB in 2,048 small files count in full (the
    old rule counted none of them); the honest twin's image adds next to nothing, the runner image's own
    /opt/team-venv (pip and all) left out as unchanged."""
    from harness.backends.docker import DockerBackend
    from harness.spec import load_spec
    from harness.submission import load_submission

    spec = load_spec(FIXTURES / "spec_docker.toml")
    backend = DockerBackend(tmp_path / "cache", spec, runner_image=runner_image, gpus=False, client=docker_client)
    found = {}
    for team in ("small_files_team", "sleep_team"):
        built = backend.build(load_submission(FIXTURES / "teams" / team, spec), tmp_path / team)
        assert built.ok, built.error
        found[team] = backend.weight_file_bytes(built)
    assert found["small_files_team"] >= 2048 * 32 * 1024
    assert found["sleep_team"] < 2**20, found


def test_weightscan_weights_behind_elf_magic_are_flagged_end_to_end(runner_image, tmp_path):
    """`harness run` on Docker: the worker maps libweights.so (64 MiB behind four bytes of ELF magic) with
    execute permission; the host reads the container's maps after load, finds no declared executable segment,
    and counts the file: the row is flagged though the count inside the worker is 40."""
    import pandas as pd
    from click.testing import CliRunner

    from harness.cli import main

    teams = FIXTURES / "teams"
    args = ["run", str(teams / "elf_magic_team"), "--spec", str(FIXTURES / "spec_docker.toml"), "--data-dir",
            str(FIXTURES / "data"), "--runner-image", runner_image, "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--reference", str(teams / "fake_reference"),
            "--max-examples", "2"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    row = frame[frame["team"] == "elf_magic_team"].iloc[0]
    assert row["params"] == 40, (row["status"], row["error"])
    assert "weights_unaccounted: the files the build added that count as weights" in row["flags"], row["flags"]
    assert "memory maps could not be read" not in row["flags"]


def test_the_workers_profile_hooks_run_on_the_runner_images_torch(docker_client, runner_image):
    """The worker's own split (harness.probe.forward_clock) on the image's torch: one forward of one top-level
    module timed, inside predict()'s time, and the hooks gone after."""
    code = ("import json, torch; from harness.probe.worker import Worker\n"
            "class P:\n"
            "    def __init__(self): self.model = torch.nn.Linear(4, 2)\n"
            "    def predict(self, batch): return self.model(torch.zeros(len(batch), 4)).argmax(-1).tolist()\n"
            "w = Worker(); w.predictor = P()\n"
            "out = w.profile({'batch': [1, 2]})['profile']\n"
            "out['hooks_left'] = len(w.predictor.model._forward_hooks) + len(w.predictor.model._forward_pre_hooks)\n"
            "print(json.dumps(out))")
    output = docker_client.containers.run(runner_image, ["/opt/venv/bin/python3", "-c", code], network_mode="none",
                                          user="10001:10001", environment={"HOME": "/tmp"}, remove=True)
    out = json.loads(output.decode().strip().splitlines()[-1])
    assert (out["modules"], out["forward_calls"], out["note"], out["hooks_left"]) == (1, 1, "", 0)
    assert 0 < out["forward_s"] <= out["predict_s"]
