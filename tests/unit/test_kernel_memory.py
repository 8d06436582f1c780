"""The kernel's memory accounting (harness.kernel_memory): cgroup files read by the host, on fake cgroup folders
written for the tests (v1 and v2 layouts), and the checks on hand-worked figures."""

import os

import pytest

from harness.kernel_memory import (FORKED_NOTE, KernelLedger, MemoryCgroup, PeakWatch, kernel_reasons, memory_flags,
                                   memory_cgroup_of, parse_stat, transient_peak, worker_cgroup)

MiB = 2**20


def v2_group(folder, current=100 * MiB, anon=60 * MiB, file=30 * MiB, shmem=10 * MiB, peak=None):
    """A cgroup v2 folder: file includes shmem there."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.current").write_text(f"{current}\n")
    (folder / "memory.stat").write_text(f"anon {anon}\nfile {file}\nkernel 1024\nshmem {shmem}\nfile_mapped 4096\n")
    if peak is not None:
        (folder / "memory.peak").write_text(f"{peak}\n")
    return MemoryCgroup(folder, 2)


def v1_group(folder, usage=100 * MiB, rss=60 * MiB, cache=30 * MiB, shmem=10 * MiB, peak=150 * MiB):
    """A cgroup v1 memory folder: the total_* keys are the hierarchy's, cache includes shmem."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (folder / "memory.max_usage_in_bytes").write_text(f"{peak}\n")
    (folder / "memory.stat").write_text(f"cache 1\nrss 2\nshmem 3\ntotal_cache {cache}\ntotal_rss {rss}\n"
                                        f"total_shmem {shmem}\n")
    return MemoryCgroup(folder, 1)


def test_a_v2_reading_splits_shmem_out_of_file_and_holds_anon_plus_shmem(tmp_path):
    reading, why = v2_group(tmp_path / "g").reading()
    assert why == ""
    assert reading == {"current": 100 * MiB, "anon": 60 * MiB, "file": 20 * MiB, "shmem": 10 * MiB,
                       "held": 70 * MiB}


def test_a_v1_reading_uses_the_hierarchical_totals(tmp_path):
    reading, _ = v1_group(tmp_path / "g", usage=90 * MiB, rss=50 * MiB, cache=35 * MiB, shmem=5 * MiB).reading()
    assert reading == {"current": 90 * MiB, "anon": 50 * MiB, "file": 30 * MiB, "shmem": 5 * MiB, "held": 55 * MiB}


def test_a_reading_that_cannot_be_made_says_why(tmp_path):
    group = v2_group(tmp_path / "g")
    (group.path / "memory.stat").write_text("file 1\n")          # no anon key
    reading, why = group.reading()
    assert reading is None and "could not be read" in why and "KeyError" in why


def test_parse_stat_skips_lines_that_are_not_a_key_and_a_number():
    assert parse_stat("anon 5\nbroken\nfile x\nshmem 7 8\nkernel 9\n") == {"anon": 5, "kernel": 9}


def fake_proc(tmp_path, pid, text):
    folder = tmp_path / "proc" / str(pid)
    folder.mkdir(parents=True)
    (folder / "cgroup").write_text(text)
    return tmp_path / "proc"


def test_the_v1_memory_controller_is_found_on_a_hybrid_box(tmp_path):
    root = tmp_path / "cgroup"
    v1_group(root / "memory")                                   # the hierarchy's root has the files too
    v1_group(root / "memory" / "docker" / "abc")
    proc = fake_proc(tmp_path, 42, "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n")
    group, why = memory_cgroup_of(42, root, proc)
    assert (group, why) == (MemoryCgroup(root / "memory" / "docker" / "abc", 1), "")


def test_the_unified_hierarchy_is_found_on_a_v2_box(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    v2_group(root / "system.slice" / "docker-abc.scope")
    proc = fake_proc(tmp_path, 42, "0::/system.slice/docker-abc.scope\n")
    group, _ = memory_cgroup_of(42, root, proc)
    assert group == MemoryCgroup(root / "system.slice" / "docker-abc.scope", 2)


def test_a_v2_cgroup_without_the_memory_controller_says_so(tmp_path):
    root = tmp_path / "cgroup"
    (root / "x").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu\n")
    proc = fake_proc(tmp_path, 42, "0::/x\n")
    group, why = memory_cgroup_of(42, root, proc)
    assert group is None and "no memory controller" in why


def test_no_pid_or_no_proc_entry_says_why(tmp_path):
    assert memory_cgroup_of(None)[0] is None
    group, why = memory_cgroup_of(7, tmp_path, tmp_path / "proc")
    assert group is None and "/proc/7/cgroup could not be read" in why


def test_a_v1_peak_is_reset_by_writing_zero_and_read_back(tmp_path):
    group = v1_group(tmp_path / "g", peak=500 * MiB)
    watch = PeakWatch(group)
    watch.start()
    assert (group.path / "memory.max_usage_in_bytes").read_text().startswith("0\n")     # what the kernel is told
    (group.path / "memory.max_usage_in_bytes").write_text(f"{123 * MiB}\n")   # the kernel's peak since then
    assert watch.read() == (123 * MiB, "")
    assert watch.note == ""
    watch.close()


def test_a_peak_file_the_host_cannot_write_is_read_as_the_cgroups_whole_life(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes a read-only file: the refusal cannot be staged")
    group = v2_group(tmp_path / "g", peak=77 * MiB)
    (group.path / "memory.peak").chmod(0o444)
    watch = PeakWatch(group)
    watch.start()
    assert watch.read() == (77 * MiB, "") and "since the cgroup began" in watch.note


def test_a_missing_v2_peak_is_sampled_from_memory_current_and_said_to_be_a_lower_bound(tmp_path):
    import time

    group = v2_group(tmp_path / "g", current=100 * MiB)        # no memory.peak: Linux before 5.19
    watch = PeakWatch(group)
    watch.start()
    assert "lower bound" in watch.note and "5.19" in watch.note
    (group.path / "memory.current").write_text(f"{300 * MiB}\n")     # a rise the sampler sees ...
    deadline = time.monotonic() + 5
    while watch._sampler._peak != 300 * MiB and time.monotonic() < deadline:
        time.sleep(0.01)
    (group.path / "memory.current").write_text(f"{120 * MiB}\n")     # ... and the fall after it
    assert watch.read() == (300 * MiB, "")
    watch.close()
    assert watch._sampler is None


def test_a_sampled_peak_is_a_flag_on_the_row():
    record = kernel_record(kernel_peak_passes_bytes=300 * MiB, kernel_peak_note="passes: a lower bound: sampled")
    assert kernel_reasons(record, 0, 16 * MiB) == ["peak memory (kernel): passes: a lower bound: sampled"]


def test_the_transient_peak_leaves_out_file_pages_the_stretch_added_and_kept():
    before = {"current": 300 * MiB, "file": 40 * MiB}
    after = {"current": 310 * MiB, "file": 50 * MiB}
    # the peak rose 200 MiB; 10 MiB of it are file pages still cached at the end
    assert transient_peak(500 * MiB, before, after) == 190 * MiB
    assert transient_peak(500 * MiB, before, {"current": 0, "file": 30 * MiB}) == 200 * MiB   # file shrank: none
    assert transient_peak(None, before, after) is None


class Scripted(MemoryCgroup):
    """A cgroup whose readings follow a script (one per mark) and whose peak file is a real file written per
    stretch."""

    def __init__(self, path, readings):
        super().__init__(path, 1)
        object.__setattr__(self, "script", list(readings))

    def reading(self):
        return self.script.pop(0), ""


def reading(current, anon, file=0, shmem=0):
    return {"current": current * MiB, "anon": anon * MiB, "file": file * MiB, "shmem": shmem * MiB,
            "held": (anon + shmem) * MiB}


def run_ledger(tmp_path, readings, peaks, forked=False):
    group = Scripted(tmp_path, readings)
    (tmp_path / "memory.max_usage_in_bytes").write_text("0\n")
    ledger = KernelLedger(group, forked=forked)
    ledger.mark("baseline")
    for stage, peak in zip(("after_load", "before_passes", "after_passes"), peaks):
        (tmp_path / "memory.max_usage_in_bytes").write_text(f"{peak * MiB}\n")
        ledger.mark(stage)
    return ledger.record(allowance=64 * MiB)


def test_a_ledger_records_each_stage_and_the_growths_the_checks_use(tmp_path):
    record = run_ledger(tmp_path, [reading(100, 60), reading(230, 180, 10), reading(240, 185, 10),
                                   reading(245, 190, 12)], peaks=(260, 300, 400))
    assert record["kernel_memory_note"] == "" and record["kernel_peak_note"] == ""
    assert record["kernel_held_load_growth_bytes"] == 120 * MiB        # 180 - 60
    assert record["kernel_held_passes_growth_bytes"] == 5 * MiB        # 190 - 185
    assert record["kernel_held_task_growth_bytes"] == 130 * MiB        # 190 - 60
    assert record["kernel_peak_passes_growth_bytes"] == 158 * MiB      # 400 - 240 - (12 - 10)
    assert record["kernel_peak_task_growth_bytes"] == 300 * MiB        # max(260, 300, 400) - 100
    assert record["kernel_peak_load_bytes"] == 260 * MiB and record["peak_allowance_bytes"] == 64 * MiB


def test_a_forked_worker_keeps_no_figure_set_against_its_baseline_after_the_count(tmp_path):
    record = run_ledger(tmp_path, [reading(100, 60)] + [reading(300, 250)] * 3, peaks=(300, 300, 300), forked=True)
    assert record["kernel_held_task_growth_bytes"] is None and record["kernel_peak_task_growth_bytes"] is None
    assert record["kernel_forked_note"] == FORKED_NOTE


def test_a_ledger_without_a_cgroup_says_why():
    record = KernelLedger(None, "no cgroup of its own: not delegated").record(allowance=1)
    assert record["kernel_memory_note"] == "no cgroup of its own: not delegated"
    reasons = kernel_reasons(record, 0, 0)
    assert reasons == ["memory not read from the kernel's accounting: no cgroup of its own: not delegated (the "
                       "resident-memory checks ran alone)"]


def kernel_record(**values):
    base = {"kernel_memory_note": "", "kernel_peak_note": "", "kernel_forked_note": "",
            "peak_allowance_bytes": 64 * MiB,
            "kernel_peak_passes_bytes": 1, "kernel_held_load_growth_bytes": 0, "kernel_held_passes_growth_bytes": 0,
            "kernel_peak_passes_growth_bytes": 0, "kernel_held_task_growth_bytes": 0}
    return {**base, **values}


def test_an_honest_record_has_no_reason():
    # 10 MiB counted; at load 10 + 16 (the slack) exactly; the passes exactly at the allowance
    record = kernel_record(kernel_held_load_growth_bytes=26 * MiB, kernel_held_passes_growth_bytes=64 * MiB,
                           kernel_peak_passes_growth_bytes=64 * MiB, kernel_held_task_growth_bytes=90 * MiB)
    assert kernel_reasons(record, explained=10 * MiB, resident_slack=16 * MiB) == []


@pytest.mark.parametrize("key, value, words", [
    ("kernel_held_load_growth_bytes", 27 * MiB, "grew at load 17 MiB beyond the 10.0 MiB"),
    ("kernel_held_passes_growth_bytes", 65 * MiB, "grew during the timed passes 65 MiB above"),
    ("kernel_peak_passes_growth_bytes", 65 * MiB, "(children that exited included) during the timed passes rose 65"),
    ("kernel_held_task_growth_bytes", 91 * MiB, "held after the passes 81 MiB beyond the 10.0 MiB"),
])
def test_each_check_flags_one_mib_past_its_allowance(key, value, words):
    reasons = kernel_reasons(kernel_record(**{key: value}), explained=10 * MiB, resident_slack=16 * MiB)
    assert len(reasons) == 1 and reasons[0].startswith("weights_unaccounted: ") and words in reasons[0], reasons


def test_a_peak_that_could_not_be_read_is_a_reason_never_a_silent_pass():
    reasons = kernel_reasons(kernel_record(kernel_peak_passes_bytes=None, kernel_peak_note="passes: no memory.peak"),
                             0, 16 * MiB)
    assert reasons == ["peak memory (kernel) not read: passes: no memory.peak"]


def test_a_record_from_before_the_kernel_readings_has_no_reason():
    assert kernel_reasons({"explained_bytes": 3}, 0, 0) == []


def test_a_folder_whose_children_get_no_memory_controller_gives_no_worker_cgroup(tmp_path, monkeypatch):
    own = v1_group(tmp_path / "memory" / "me")      # a plain folder: its new child gets no memory files
    monkeypatch.setattr("harness.kernel_memory.memory_cgroup_of", lambda pid: (own, ""))
    group, why = worker_cgroup("w1")
    assert group is None and "memory controller is not given to the children" in why
    assert not (own.path / "w1").exists()


def test_a_folder_this_user_cannot_write_gives_no_worker_cgroup(tmp_path, monkeypatch):
    own = MemoryCgroup(tmp_path / "missing" / "me", 2)       # mkdir fails: its parent is not there
    monkeypatch.setattr("harness.kernel_memory.memory_cgroup_of", lambda pid: (own, ""))
    group, why = worker_cgroup("w1")
    assert group is None and "not writable here" in why


def test_a_worker_cgroup_is_removed_once_empty_and_a_busy_one_is_tried_again(tmp_path):
    from harness.kernel_memory import remove_cgroup

    empty = MemoryCgroup(tmp_path / "empty", 1)
    empty.path.mkdir()
    assert remove_cgroup(empty) and not empty.path.exists()
    busy = MemoryCgroup(tmp_path / "busy", 1)
    busy.path.mkdir()
    (busy.path / "still-here").write_text("")            # a folder rmdir refuses, as a cgroup with a process
    assert remove_cgroup(busy, wait_s=0.2) is False and busy.path.exists()
    assert remove_cgroup(MemoryCgroup(tmp_path / "gone", 1))


def test_an_unread_cgroup_is_a_note_on_the_local_backend_and_a_flag_on_docker():
    """A participant's laptop may delegate no cgroup: the resident checks ran, the row notes what was not read.
    The production path (Docker) always has the container's cgroup: there not reading it is a finding."""
    from harness.kernel_memory import kernel_notes, kernel_reasons
    local = {"kernel_memory_note": "no writable cgroup", "kernel_memory_required": False}
    docker = {"kernel_memory_note": "no writable cgroup", "kernel_memory_required": True}
    assert kernel_reasons(local, 0, 0) == [] and len(kernel_notes(local)) == 1
    assert "no writable cgroup" in kernel_notes(local)[0]
    assert kernel_notes(docker) == [] and "no writable cgroup" in kernel_reasons(docker, 0, 0)[0]
    forked = {"kernel_memory_note": "", "kernel_forked_note": "forked", "kernel_peak_passes_bytes": 1}
    assert kernel_notes(forked) == ["memory (kernel) after the passes not set against the baseline: forked"]
    assert kernel_reasons(forked, 0, 0) == []


def test_a_tasks_memory_flags_are_the_resident_checks_then_the_kernels_then_what_could_not_be_read():
    record = kernel_record(kernel_held_load_growth_bytes=40 * MiB, explained_bytes=10 * MiB,
                           resident_slack_bytes=16 * MiB, unexplained_resident_bytes=30 * MiB,
                           peak_unreadable="a zombie child", baseline_note="pagemap unreadable")
    assert memory_flags(record) == [
        "weights_unaccounted: the resident memory taken at load is 30 MiB beyond the 10.0 MiB the counted weights "
        "explain (slack 16.0 MiB)",
        "weights_unaccounted: the memory the kernel charges the worker's tree (anon + shmem) grew at load 30 MiB "
        "beyond the 10.0 MiB the counted weights explain (allowed 16.0 MiB)",
        "peak memory not checked: a zombie child",
        "memory baseline: pagemap unreadable"]
    assert memory_flags({}) == []
