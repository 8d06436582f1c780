"""Hostile teams on the local backend: every attack of issue 9 leaves the numbers unchanged or flags the row.

All models are sleep-based against the fake reference's 0.2 s per batch: the honest twin (sleep_team) takes
0.05 s per batch, so its speedup is about 4x; a hostile team with the same model must come out within 25%
of it. Teams declare two tasks (cluewsc2020, csl) to keep each run to a few seconds, so a run that went well
is "partial" (the other two tasks score 0) with both declared tasks scored.
"""

import json
import os
import re
import shutil
import time

import pandas as pd
import psutil
import pytest

from conftest import FIXTURES, TEAMS
from harness.cli import main
from click.testing import CliRunner

pytestmark = pytest.mark.slow


def run_team(team_dir, out, cache, reference="fake_reference", timeout=60):
    args = ["run", str(team_dir), "--spec", str(FIXTURES / "spec_small.toml"), "--data-dir", str(FIXTURES / "data"),
            "--backend", "local", "--reference", str(TEAMS / reference), "--cache-dir", str(cache),
            "--out", str(out), "--timeout", str(timeout)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    team = team_dir.name
    record = json.loads((out / team / "result.json").read_text(encoding="utf-8"))
    return frame[frame["team"] == team].iloc[0], record


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("honest")
    return run_team(TEAMS / "sleep_team", tmp / "out", tmp / "cache")


def assert_ran(row):
    assert row["status"] == "partial" and "cluener2020, cmrc2018" in row["reason"], (row["status"], row["error"])
    assert row["cluewsc2020_score"] != "" and row["csl_score"] != ""


def assert_same_speed(row, honest_row):
    assert_ran(row)
    assert float(row["speedup"]) == pytest.approx(float(honest_row["speedup"]), rel=0.25)
    assert float(row["speedup_low"]) <= float(row["speedup"]) <= float(row["speedup_high"])


def test_the_honest_twin_is_about_four_times_faster_with_an_interval(honest):
    row, record = honest
    assert_ran(row)
    assert row["params"] == 40
    assert 2.5 < float(row["speedup"]) < 5.5
    assert float(row["speedup_low"]) <= float(row["speedup"]) <= float(row["speedup_high"])
    assert row["speed_verdict"] == "fail" and row["speed_ok"] in (False, "False")
    assert "caching_suspected" not in row["flags"] and "weights_unaccounted" not in row["flags"]
    assert isinstance(record["run_seed"], int) and record["reference_precision"]["matmul_allow_tf32"] is False


def test_patched_clocks_and_harness_functions_change_nothing(tmp_path, honest):
    row, _ = run_team(TEAMS / "clock_patch_team", tmp_path / "out", tmp_path / "cache")
    assert_same_speed(row, honest[0])
    assert "caching_suspected" not in row["flags"]


def test_a_shadow_harness_package_is_never_imported(tmp_path, honest):
    row, record = run_team(TEAMS / "shadow_harness_team", tmp_path / "out", tmp_path / "cache")
    assert_same_speed(row, honest[0])
    assert row["params"] == 40 and record["environment"]["device"] == "cpu"   # the fake worker says 1 and cuda


def test_a_team_that_reads_the_warm_up_for_timed_inputs_gains_nothing(tmp_path, honest):
    """Warm-up inputs are drawn independently of the timed ones, with fresh ids: the table it builds during
    warm-up never answers a timed call, so it is as fast as its honest twin, and nothing looks like caching."""
    row, _ = run_team(TEAMS / "warmup_reader_team", tmp_path / "out", tmp_path / "cache")
    assert_same_speed(row, honest[0])
    assert "caching_suspected" not in row["flags"]


def test_forged_files_from_thread_fork_atexit_and_exit_never_reach_the_row(tmp_path, honest):
    out = tmp_path / "out"
    team = tmp_path / "forger_team"
    import shutil
    shutil.copytree(TEAMS / "forger_team", team)
    folders = [out / "forger_team", out / "forger_team" / "predictions", out / "forger_team" / "probe", out]
    (team / "targets.json").write_text(json.dumps({"folders": [str(f) for f in folders]}))
    row, record = run_team(team, out, tmp_path / "cache")
    assert_ran(row)
    # forging costs it time (files written every 10 ms): never faster than its honest twin, nowhere near 99999x
    assert float(row["speedup"]) < float(honest[0]["speedup"]) * 1.25
    assert float(row["csl_score"]) == 0 and row["params"] == 40          # forged: label "1" everywhere, 1 parameter
    assert "forged_by" not in record
    ours = (out / "forger_team" / "predictions" / "csl_predict.json").read_text(encoding="utf-8")
    assert '"label": "0"' in ours and '"label": "1"' not in ours
    # nothing of the team's is left running: a forgery removed now stays removed
    time.sleep(0.1)
    for folder in folders:
        (folder / "measurements.json").unlink(missing_ok=True)
    time.sleep(0.5)
    assert not any((folder / "measurements.json").exists() for folder in folders)


def test_weights_kept_as_raw_bytes_are_caught_by_the_scan_and_seen_in_the_memory_taken_at_load(tmp_path):
    # no tensor or array holds them; since issue 28.3 the live-weight scan finds the bytes object itself and
    # counts it at a byte an element (int8, the strict reading): 120M, far over the limit. The host's /proc
    # reading of the worker's resident memory (120 MB more than after `prepare`) shows it as before, now
    # explained by the count (before 28.3: 40 counted, and the memory flag was what caught it)
    row, record = run_team(TEAMS / "blob_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 40 + 120_000_000
    assert "weights live in the worker process outside what the predictor shows" in row["flags"]
    growth = record["tasks"]["cluewsc2020"]["timing"]["memory_growth_bytes"]
    assert growth >= 115_000_000


def test_precomputing_from_input_files_gains_nothing(tmp_path):
    row, _ = run_team(TEAMS / "precompute_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert float(row["speedup"]) < 4 and row["speed_ok"] in (False, "False")


def test_links_and_fifos_left_in_the_output_folder_are_never_written_through(tmp_path):
    out = tmp_path / "out"
    left = out / "ok_team" / "predictions"
    left.mkdir(parents=True)
    sentinel, other = tmp_path / "host_file", tmp_path / "other_host_file"
    sentinel.write_text("original")
    other.write_text("original")
    (left / "csl_predict.json").symlink_to(sentinel)
    (out / "ok_team" / "result.json").symlink_to(other)
    os.mkfifo(out / "ok_team" / "worker.log")
    row, _ = run_team(TEAMS / "ok_team", out, tmp_path / "cache")
    assert row["status"] == "ok"
    assert sentinel.read_text() == "original" and other.read_text() == "original"
    assert not (left / "csl_predict.json").is_symlink() and not (out / "ok_team" / "result.json").is_symlink()


@pytest.mark.parametrize("predictor, reason", [
    ("predictor:DeepReply", "nests deeper"),
    ("predictor:BadCount", "counted = '258', not a count"),
    ("predictor:HugeCount", "beyond 9223372036854775807"),       # refused as the frame is decoded
    ("predictor:SurrogateAnswer", "lone surrogate"),
])
def test_malformed_replies_from_team_code_are_that_teams_row_never_a_traceback(tmp_path, predictor, reason):
    team = tmp_path / "malformed_reply_team"
    shutil.copytree(TEAMS / "malformed_reply_team", team)
    manifest = (team / "harness.toml").read_text(encoding="utf-8")
    (team / "harness.toml").write_text(manifest.replace("predictor:DeepReply", predictor), encoding="utf-8")
    args = ["run", str(team), "--spec", str(FIXTURES / "spec_small.toml"), "--data-dir", str(FIXTURES / "data"),
            "--backend", "local", "--reference", str(TEAMS / "fake_reference"), "--cache-dir",
            str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--timeout", "60"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    row = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False).iloc[0]
    assert row["status"] == "probe_failed", (row["status"], row["error"])
    assert reason in row["error"]


def test_a_counter_rewritten_from_team_code_is_caught_by_the_bytes_the_worker_holds(tmp_path):
    # the team's code replaces the counter the worker calls: every report says 258 parameters and 1 KB, for
    # a registered 30.7M fp16 model (61 MB). The host's /proc reading does not go through team code.
    row, record = run_team(TEAMS / "counter_patch_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 258
    timing = record["tasks"]["csl"]["timing"]
    assert timing["explained_bytes"] == 1_032
    assert timing["unexplained_resident_bytes"] > 55 * 2**20                 # 61.4 MB of fp16 weights
    assert "csl: weights_unaccounted: the resident memory taken at load" in row["flags"]


def test_a_finalizer_balloon_cannot_raise_the_next_tasks_baseline(tmp_path):
    # a fresh worker per task: the balloon the CLUEWSC2020 predictor's finalizer would blow up during the
    # next task's prepare never reaches the CSL worker, whose 120 MB of raw bytes show in full
    row, record = run_team(TEAMS / "balloon_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    timing = record["tasks"]["csl"]["timing"]
    assert timing["memory_growth_bytes"] >= 115_000_000
    assert "csl: weights_unaccounted: the resident memory taken at load" in row["flags"]
    assert set(record["logs"]) >= {"worker_cluewsc2020", "worker_csl"}          # two workers, one log each


def test_a_pool_of_forked_children_is_flagged_and_the_flag_says_they_hold_it(tmp_path):
    # each forked child reads as its whole resident memory, the worker's pages it shares included (the host
    # cannot tell shared pages apart without privileges): the flag names them so a reader can judge
    row, record = run_team(TEAMS / "pool_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert re.search(r"cluewsc2020: weights_unaccounted: the resident memory taken at load is [\d,]+ MiB beyond "
                     r"the 0\.0 MiB the counted weights explain \(slack 16\.0 MiB\); [\d,]+ MiB of it in 2 child "
                     r"processes of the worker", row["flags"]), row["flags"]
    timing = record["tasks"]["csl"]["timing"]
    assert timing["child_processes"] == 2
    assert 0.9 * timing["unexplained_resident_bytes"] < timing["child_resident_bytes"]


def processes_under(folder):
    """Processes whose command line names `folder` (a team's venv in it): none once a run has ended."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if str(folder) in " ".join(process.info["cmdline"] or ()):
            found.append(process.info["pid"])
    return found


def test_a_team_burning_cpu_while_the_reference_is_timed_slows_nothing(tmp_path):
    # against a reference that needs the CPU (about 0.1 s of arithmetic a batch), a team whose two children
    # burn CPU whenever it is not inside predict() is frozen, children included, while the reference is timed.
    # The attack is steady (unfrozen, T_bert 2.3x on every run); load beside this test on a shared box comes in
    # bursts (seen: 1.40x on one sequential pair while Docker tests ran). So honest and saboteur runs take
    # turns, up to three pairs, and the test passes on the first pair within both limits: an attack that works
    # fails every pair, a burst fails one.
    pairs = []
    for attempt in range(3):
        honest, _ = run_team(TEAMS / "sleep_team", tmp_path / f"honest{attempt}", tmp_path / "cache",
                             "busy_reference")
        row, record = run_team(TEAMS / "saboteur_team", tmp_path / f"out{attempt}", tmp_path / "cache",
                               "busy_reference")
        assert_ran(row)
        assert "could not be frozen" not in row["flags"]
        assert not processes_under(tmp_path / "cache"), "the saboteur's burners outlived its run"
        slowed = float(row["T_bert_s"]) / float(honest["T_bert_s"])
        # what the attack is after: a higher speedup. A lower one is the saboteur's own children taking the CPU
        # from its own predict() while it is timed (seen: 0.91x against the honest team's 1.36x beside a busy test)
        gained = float(row["speedup"]) / float(honest["speedup"])
        pairs.append((round(slowed, 2), round(gained, 2)))
        if slowed < 1.3 and gained < 1.3:
            break
    else:
        pytest.fail(f"every pair (T_bert ratio, speedup ratio) passed a limit of 1.3: {pairs}")


def kernel_read(record, task):
    """The task's timing record, or a skip where this box gives the local worker no cgroup of its own (the row
    says why: kernel_memory_note)."""
    timing = record["tasks"][task]["timing"]
    if timing["kernel_memory_note"]:
        pytest.skip(f"no cgroup for a local worker on this box: {timing['kernel_memory_note']}")
    return timing


def test_weights_outside_resident_memory_are_flagged_where_the_kernel_is_read(tmp_path):
    # a memfd read back a slice at a time (CLUEWSC2020), a child per call that builds the weights and exits
    # (CSL): resident memory sees neither, the worker's cgroup both
    row, record = run_team(TEAMS / "outside_rss_team", tmp_path / "out", tmp_path / "cache", timeout=300)
    assert_ran(row)
    memfd, child = kernel_read(record, "cluewsc2020"), kernel_read(record, "csl")
    assert memfd["unexplained_resident_bytes"] < 16 * 2**20 and child["unexplained_peak_bytes"] < 100 * 2**20
    assert memfd["kernel_held_load_growth_bytes"] > 110 * 2**20 and memfd["kernel_after_load"]["shmem"] > 110 * 2**20
    assert child["kernel_peak_passes_growth_bytes"] > 110 * 2**20
    assert "cluewsc2020: weights_unaccounted: the memory the kernel charges the worker's tree (anon + shmem) grew " \
           "at load" in row["flags"]
    assert "csl: weights_unaccounted: the kernel's peak of the worker's tree (children that exited included) " \
           "during the timed passes rose" in row["flags"]


def test_weights_inflated_inside_each_call_are_flagged_at_the_kernels_peak(tmp_path, honest):
    # each call inflates 120 MB (0.3 s on an idle 2-core box): more time than the sleep-based teams
    row, record = run_team(TEAMS / "transient_weights_team", tmp_path / "out", tmp_path / "cache", timeout=300)
    assert_ran(row)
    for task in ("cluewsc2020", "csl"):
        assert kernel_read(record, task)["kernel_peak_passes_growth_bytes"] > 110 * 2**20
        assert f"{task}: weights_unaccounted: the kernel's peak of the worker's tree" in row["flags"]
    honest_timing = kernel_read(honest[1], "csl")                 # the honest twin, on the same box: inside
    assert honest_timing["kernel_peak_passes_growth_bytes"] < honest_timing["peak_allowance_bytes"]
    assert "kernel's peak" not in honest[0]["flags"]
