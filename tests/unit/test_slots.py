"""harness.slots: how a node splits into box slots, how a team claims one, and what Docker and the row are told."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.cpusets import cpuset_text
from harness.doctor import slot_findings
from harness.records import Placement
from harness.results import placement_text
from harness.slots import SLOT_RESOURCE, Slot, SlotError, claim, pin_process, ray_start_line, slot_layout


def test_cpu_lists_are_written_as_the_kernel_writes_them():
    assert cpuset_text([0, 1, 2, 3]) == "0-3"
    assert cpuset_text([5, 0, 2, 1]) == "0-2,5"
    assert cpuset_text([7]) == "7"


def test_one_slot_is_the_whole_box():
    (slot,) = slot_layout(1, [0, 1, 2, 3], [0, 1])
    assert slot.whole_box and slot.cpus == (0, 1, 2, 3) and slot.gpu is None     # every GPU, none singled out


def test_eight_slots_on_an_eight_gpu_box_get_a_gpu_and_disjoint_equal_cpu_sets():
    layout = slot_layout(8, list(range(64)), list(range(8)))
    assert [s.gpu for s in layout] == list(range(8))
    assert [s.cpuset() for s in layout[:2]] == ["0-7", "8-15"] and layout[7].cpuset() == "56-63"
    every = [cpu for s in layout for cpu in s.cpus]
    assert len(every) == len(set(every)) == 64


def test_cpus_that_do_not_divide_evenly_are_left_idle_so_slots_are_equal():
    layout = slot_layout(3, [0, 1, 2, 3, 4, 5, 6], [])
    assert [s.cpus for s in layout] == [(0, 1), (2, 3), (4, 5)] and all(s.gpu is None for s in layout)


@pytest.mark.parametrize("count, cpus, gpus, message", [
    (0, [0, 1], [], "at least one slot"),
    (3, [0, 1], [], "3 slots need a CPU each; this node has 2 (0-1)"),
    (4, list(range(16)), [0, 1], "4 slots need a GPU each; this node has 2: offer at most 2"),
])
def test_slots_a_node_cannot_offer_are_refused_with_the_reason(count, cpus, gpus, message):
    with pytest.raises(SlotError, match=message.replace("(", r"\(").replace(")", r"\)")):
        slot_layout(count, cpus, gpus)


def test_the_ray_start_line_offers_the_slot_resource():
    assert ray_start_line(8, "10.0.0.1:6379") == \
        f"ray start --address=10.0.0.1:6379 --resources='{{\"{SLOT_RESOURCE}\": 8}}'"


def test_two_teams_on_one_node_claim_different_slots_and_a_third_waits_for_one(tmp_path):
    held, release = [], threading.Event()

    def hold():
        with claim(2, tmp_path) as index:
            held.append(index)
            release.wait(5)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    while len(held) < 2:
        threading.Event().wait(0.01)
    assert sorted(held) == [0, 1]
    with pytest.raises(SlotError, match="all 2 slots of this node stayed taken"):
        with claim(2, tmp_path, wait_s=0.3):
            pass
    release.set()
    for thread in threads:
        thread.join()
    with claim(2, tmp_path, wait_s=0.3) as index:       # freed when the holders' blocks ended
        assert index in (0, 1)


def test_a_process_gets_back_the_slot_it_held_last_when_that_one_is_free(tmp_path):
    # a reused Ray worker keeps its pinning (and the fork server started inside it) from team to team
    with claim(3, tmp_path, prefer=2) as index:
        assert index == 2
    with claim(3, tmp_path) as first, claim(3, tmp_path, prefer=first, wait_s=0.3) as other:
        assert first == 0 and other == 1          # the preferred slot is taken: the next free one


def test_a_slot_held_by_a_process_that_died_is_free_again(tmp_path):
    # the kernel drops an flock with its process: a node's task killed mid-team leaves no slot taken
    code = (f"import os; from pathlib import Path; from harness.slots import claim\n"
            f"with claim(1, Path({str(tmp_path)!r})) as i:\n    os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with claim(1, tmp_path, wait_s=0.3) as index:
        assert index == 0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one of them")
def test_pinning_keeps_the_process_and_what_it_starts_on_the_slot_s_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    code = ("import os, subprocess, sys\n"
            "from harness.slots import Slot, node_cpus, pin_process\n"
            f"pin_process(Slot(1, 2, ({cpus[-1]},), 1))\n"
            "child = subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)), "
            "os.environ.get(\"CUDA_VISIBLE_DEVICES\"))'], capture_output=True, text=True).stdout.strip()\n"
            "print(child, node_cpus())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # the child is pinned; the node's CPUs (for the next team's layout) are still read as before the pinning
    assert done.stdout.strip() == f"[{cpus[-1]}] 1 {cpus}", done.stderr
    pin_process(Slot(0, 1, tuple(cpus)))       # the whole box: nothing changes for this process
    assert sorted(os.sched_getaffinity(0)) == cpus and os.environ.get("CUDA_VISIBLE_DEVICES") != "1"


def test_docker_workers_and_builds_of_a_slot_stay_on_its_cpus_and_its_gpu(tmp_path):
    from harness.backends.docker import DockerBackend
    from harness.spec import load_spec

    class Engine:
        def info(self):
            return {"NCPU": 64}

    spec = load_spec(None)
    slot = Slot(2, 8, tuple(range(16, 24)), 2)
    backend = DockerBackend(tmp_path, spec, runner_image="runner", gpus=True, client=Engine(), slot=slot)
    options = backend.container_options(tmp_path)
    assert options["cpuset_cpus"] == "16-23"
    assert options["nano_cpus"] == int(min(spec.sandbox.cpus, 8) * 1e9)
    (request,) = options["device_requests"]
    assert request["DeviceIDs"] == ["2"] and request["Count"] in (None, 0)
    assert backend.build_limits()["cpusetcpus"] == cpuset_text(list(range(16, 16 + min(spec.build.cpus, 8))))
    whole = DockerBackend(tmp_path, spec, runner_image="runner", gpus=True, client=Engine(),
                          slot=Slot(0, 1, tuple(range(64))))
    options = whole.container_options(tmp_path)
    assert "cpuset_cpus" not in options and options["device_requests"][0]["Count"] == -1   # every GPU, as before


def test_doctor_shows_the_slots_this_node_would_offer():
    (found,) = slot_findings(2, [0, 1, 2, 3, 4], [{"index": 0, "name": "NVIDIA H100"}, {"index": 1, "name": "X"}])
    assert found.ok and found.detail == ("2: slot 1 of 2: CPUs 0-1, GPU 0 NVIDIA H100; slot 2 of 2: CPUs 2-3, "
                                         "GPU 1 X (1 CPU(s) left idle: slots are equal)")
    (whole,) = slot_findings(1, [0, 1], [])
    assert whole.ok and whole.detail == "1, the whole box: CPUs 0-1, no GPU"
    (refused,) = slot_findings(3, [0, 1, 2, 3], [{"index": 0, "name": "G"}])
    assert not refused.ok and "3 slots need a GPU each" in refused.detail and "--slots N" in refused.fix


def test_the_row_says_which_slot_of_which_node_timed_the_team():
    placement = {"node": "gpu-box-1", "slot": 1, "slots": 8, "cpu_set": "8-15", "gpu_index": 1,
                 "gpu_name": "NVIDIA H100 80GB HBM3"}
    assert placement_text(Placement.from_dict(placement)) == "gpu-box-1 slot 2/8 (CPUs 8-15, GPU 1) NVIDIA H100 80GB HBM3"
    assert placement_text(Placement.from_dict({"node": "box", "slot": 0, "slots": 1, "cpu_set": "0-1"})) == "box"
    assert placement_text(Placement()) is None


def test_the_doctor_command_prints_the_ray_start_line_whole(monkeypatch):
    from click.testing import CliRunner

    import harness.cli as cli
    from harness.doctor import Finding

    monkeypatch.setattr(cli, "diagnose", lambda slots: [Finding("box slots", True, f"{slots} slots")])
    result = CliRunner().invoke(cli.main, ["doctor", "--slots", "4"])
    assert result.exit_code == 0, result.output
    assert f"ray start --address=HEAD_ADDRESS:6379 --resources='{{\"{SLOT_RESOURCE}\": 4}}'" in result.output


@pytest.mark.parametrize("engine", [["--engine", "local"], ["--engine", "ray", "--ray-address", "10.0.0.1:6379"]])
def test_ray_slots_apply_only_to_the_embedded_cluster(tmp_path, engine):
    from click.testing import CliRunner

    from harness.cli import main

    result = CliRunner().invoke(main, ["batch", str(tmp_path), "--ray-slots", "2", *engine])
    assert result.exit_code == 2 and "--ray-slots sets the slots of the embedded cluster" in result.output
