"""bench/gpu_day.py's own process never imports torch (a CUDA context held there made every `harness run` of
the first H200 day refuse the GPU), and the figures of each run reach the report: phases, drain waits,
device memory, ONNX providers, half-width, and "-" where a record lacks them.

main() runs a full (not --quick) day in a fresh interpreter (this test process may hold torch already)
with every child command answered by a fake (no team is built or timed, nothing takes seconds), NVML
faked to show one GPU (so "auto" must pick cuda without torch) and the doctor's findings stubbed (its own
check imports torch in a child of its own, seconds on a busy box).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")
PHASES = {"start": 0.25, "prepare": 0.5, "load": 1.0, "after_load": 0.25, "warmup": 2.0, "first_sight": 0.5,
          "rounds": 3.0, "audit": 0.25}
DRAIN = {"checked": True, "why_not": "", "waits": 3, "wait_s": 0.5, "max_wait_s": 0.25, "timeouts": 0,
         "discarded_windows": 2, "dirty_after_retries": 0}

DRIVER = r'''
import json, subprocess, sys
from pathlib import Path

import pytest
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, str(Path(sys.argv[1]) / "bench"))
import harness.gpu, harness.doctor
from harness.doctor import Finding
import gpu_day

FAKE_GPU = {"index": 0, "name": "Fake H200", "uuid": "GPU-0", "driver": "580", "cuda_driver": "13.0",
            "sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "temperature_c": 40, "power_w": 80.0,
            "throttle_reasons": 0, "processes": 0}
harness.gpu.gpu_snapshot = lambda: [FAKE_GPU]
harness.doctor.diagnose = lambda slots=1: [Finding("GPU (NVML)", True, "Fake H200")]
RESULT = json.loads(sys.argv[3])
commands = []

def fake_run(self, command, estimate_s, what, cap_s=None):
    self.need(estimate_s, what)
    commands.append(command)
    stdout = ""
    if "harness.cli" in command and "run" in command:
        team = Path(command[command.index("run") + 1]).name
        out = Path(command[command.index("--out") + 1]) / team
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps({**RESULT, "team": team}))
    elif "harness.cli" in command:          # doctor --calibrate, once merged
        stdout = json.dumps({"calibration": {"speedup": 1.0, "low": 0.98, "high": 1.02, "half_width": 0.02,
                                             "fair": True, "tolerance": 0.03, "box": "fake"}})
    elif "reference" in command:
        stdout = json.dumps({"per_task_s": {"csl": {"fp32-strict": 0.03, "tf32": 0.02}},
                             "fp32_strict_verified": {"csl": True}, "calls": 5, "tasks": ["csl"],
                             "versions": {"torch": "x", "torch_cuda": "13.0", "cudnn": 1}})
    else:
        stdout = "a figure: 1.0 us"
    return subprocess.CompletedProcess(command, 0, stdout, "")

def fake_builds(self):
    built = json.dumps({"demo_team": {"ok": True, "cached": False, "error": "", "seconds": 1.5}})
    self.builds_started = 0.0
    self.builders = [subprocess.Popen([sys.executable, "-c", f"print({built!r})", "demo_team"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]

gpu_day.Budget.run = fake_run
gpu_day.Day.start_builds = fake_builds
code = gpu_day.main(["--device", "auto", "--out", sys.argv[2]])
print(json.dumps({"code": code, "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
                  "commands": commands}))
'''


def fake_result() -> dict:
    """A result.json as the merged harness writes it; csl lacks every newer key (an older harness's record)."""
    tasks = {}
    for task in TASKS:
        timing = {"time_s": 0.01, "phase_s": PHASES, "freeze_s": 0.1, "freeze_s_per_window": 0.01,
                  "frozen_windows": 10}
        if task != "csl":
            timing.update(device_drain=DRAIN, device_after_load_bytes=3 * 2**20, device_explained_bytes=2**20,
                          device_allowance_bytes=2 * 2**20, unexplained_device_bytes=0,
                          onnx_sessions=[{"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}],
                          half_width=0.02, target_half_width=0.03, half_width_met=True)
        tasks[task] = {"params": 1000, "timing": timing}
    reference = {task: {"time_s": 0.1, "warmup_windows_s": [0.1, 0.1, 0.1], "params": 10} for task in TASKS}
    return {"status": "ok", "score": {"speedup": 10.0, "speedup_low": 9.0, "speedup_high": 11.0,
                                      "speed_verdict": "pass", "S": 1000, "T": 0.04, "T_bert": 0.4},
            "tasks": tasks, "reference": reference, "flags": [], "duration_s": 1.0, "build_s": 0.5,
            "environment": {"device": "cuda"}}


def section(report: str, title: str) -> list[str]:
    """The lines of the report's section whose title starts with `title`."""
    body = report[report.index(title):]
    return body[:body.index("\n## ", 1)].splitlines() if "\n## " in body[1:] else body.splitlines()


def test_a_full_day_never_imports_torch_here_and_reports_every_runs_figures(tmp_path):
    out = tmp_path / "day"
    done = subprocess.run([sys.executable, "-c", DRIVER, str(REPO), str(out), json.dumps(fake_result())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == 0
    assert found["torch"] == [], "the GPU day's own process imported torch"
    data = json.loads((out / "gpu_day.json").read_text(encoding="utf-8"))
    report = (out / "gpu_day.md").read_text(encoding="utf-8")
    assert data["settings"]["device"] == "cuda"            # NVML saw a GPU: auto chose cuda, torch untouched

    # the spec copy carries the day's warm-up floor and round cap, the rest as the shipped spec
    day_spec, shipped = load_spec(out / "gpu_day_spec.toml"), load_spec(REPO / "specs" / "nlpcc2020.toml")
    assert (day_spec.timing.warmup_min_s, day_spec.timing.max_rounds) == (1.0, 6)
    assert day_spec.timing.rounds == shipped.timing.rounds and day_spec.task_names == shipped.task_names
    runs = [c for c in found["commands"] if "harness.cli" in c and "run" in c]
    assert all(c[c.index("--spec") + 1] == str(out / "gpu_day_spec.toml") for c in runs)
    assert all(c[c.index("--max-examples") + 1] == "32" for c in runs)
    assert all(c[c.index("--cache-dir") + 1] == str(out / "cache") for c in runs)
    # five teams, the saboteur, two more runs each of demo and roberta: every run of the plan
    teams = [Path(c[c.index("run") + 1]).name for c in runs]
    assert teams == ["demo_team", "fast_tiny_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team",
                     "idle_saboteur_team",
                     "demo_team", "roberta_tiny_team", "demo_team", "roberta_tiny_team"]

    # phases: four tasks summed, build 0.5 s; the team table's cell build/load/warm-up/first sight/rounds/audit
    assert "| 0/4/8/2/12/1 |" in report
    phases = data["phases"]["data"]
    assert len(phases) == 10 and phases[0]["phase_s"]["warmup"] == 8.0 and phases[0]["build_s"] == 0.5
    row = next(line for line in section(report, "## 10.") if line.startswith("| demo_team | 1 | "))
    assert "| 0.5 | 1.0 | 2.0 | 4.0 | 1.0 | 8.0 | 2.0 | 12.0 | 1.0 |" in row

    # the newer figures, and "-" where the record lacks them (csl)
    checks = [line for line in section(report, "## 11.") if line.startswith("| demo_team | 1 | ")]
    cluewsc = next(line for line in checks if "| cluewsc2020 |" in line)
    assert ("| 3 waits, 0.50 s (max 0.25), 0 timeouts, 2 discarded, 0 dirty | 3.0 | 1.0 | 2.0 | 0.0 | "
            "CUDAExecutionProvider,CPUExecutionProvider | 2.0% of 3.0% met |") in cluewsc
    csl = next(line for line in checks if "| csl |" in line)
    assert csl.endswith("| csl | - | - | - | - | - | - | - |")

    # the A/A row: run where this checkout's doctor has --calibrate, said to be unavailable otherwise
    aa = data["aa"]
    if "skipped" in aa:
        assert aa["skipped"].startswith("not available")
    else:
        assert aa["data"]["calibration"]["speedup"] == 1.0 and "| 1.000x |" in report
    assert "skipped" not in data["repeats"] and "skipped" not in data["freezing"]
    assert data["freezing"]["data"]["beside_saboteur"]["csl"]["timed_pass_s"] == 0.1


def test_the_day_spec_copy_sets_timing_keys_and_refuses_one_the_spec_lacks(tmp_path):
    gpu_day = import_gpu_day()
    source = tmp_path / "spec.toml"
    source.write_text((REPO / "tests" / "fixtures" / "spec_small.toml").read_text(encoding="utf-8"), encoding="utf-8")
    copy = gpu_day.write_day_spec(source, tmp_path / "out" / "day.toml", {"warmup_min_s": "0.5", "rounds": "4"})
    spec, original = load_spec(copy), load_spec(source)
    assert (spec.timing.warmup_min_s, spec.timing.rounds) == (0.5, 4)
    assert spec.timing.max_rounds == original.timing.max_rounds and spec.tasks == original.tasks
    with pytest.raises(SystemExit, match="no `target_seconds = number` line"):
        gpu_day.write_day_spec(source, tmp_path / "out" / "other.toml", {"target_seconds": "1"})


def import_gpu_day():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_day
    finally:
        sys.path.remove(str(REPO / "bench"))
    return gpu_day


def test_a_command_cut_at_its_cap_is_interrupted_first_so_that_it_can_stop_its_workers(tmp_path, monkeypatch):
    gpu_day = import_gpu_day()
    marker = tmp_path / "stopped"
    child = ("import pathlib, signal, sys, time\n"
             "signal.signal(signal.SIGINT, lambda *_: (pathlib.Path(sys.argv[1]).write_text('stopped'), sys.exit(3)))\n"
             "time.sleep(120)\n")
    budget = gpu_day.Budget(600)
    with pytest.raises(gpu_day.Skip, match="a sleeper was cut after 5 s, its cap"):
        budget.run([sys.executable, "-c", child, str(marker)], 1, "a sleeper", cap_s=5)
    assert marker.read_text() == "stopped"          # SIGINT reached its handler: no kill came first
    # one that ignores the interrupt is killed after the grace
    monkeypatch.setattr(gpu_day, "INTERRUPT_GRACE_S", 0.5)
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(120)\n"
    with pytest.raises(gpu_day.Skip, match="cut after 2 s"):
        budget.run([sys.executable, "-c", stubborn], 1, "a stubborn one", cap_s=2)
    # and nothing starts that does not fit in what is left
    with pytest.raises(gpu_day.Skip, match="needs about 900 s"):
        budget.run([sys.executable, "-c", "pass"], 900, "too much")


def test_a_command_cut_at_the_budgets_end_is_stopped_within_the_budget(tmp_path):
    gpu_day = import_gpu_day()
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(120)\n"
    budget = gpu_day.Budget(gpu_day.RESERVE_S + 2)     # 2 s to run in, the reserve for the report
    with pytest.raises(gpu_day.Skip, match="a stubborn one was cut at the end of the budget"):
        budget.run([sys.executable, "-c", stubborn], 1, "a stubborn one")
    # interrupted at 2 s, killed when only a second of the reserve was left: never past the whole budget
    assert budget.left() + gpu_day.RESERVE_S >= 0.5
