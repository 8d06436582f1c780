"""`harness check` ends with one line when host work dominates the team's time on a GPU (harness.time_split).

The run itself is replaced by a result as a GPU run would leave it (the device busy share is the host's
reading: here written by hand), so the test needs no GPU.
"""

from harness import cli
from harness.results import TeamResult
from harness.scoring import TeamScore
from harness.records import Environment, ReferenceResult, TaskResult
from harness.spec import load_spec

SPEC = load_spec()


def gpu_result(shares):
    tasks = {name: {"score": 70.0, "time_per_example_s": 0.001, "params": 7_000_000, "problems": [],
                    "timing": {"time_split": {"device_busy": share, "cpu_busy": 1.0, "notes": [],
                                              "own": {"forward_share": 0.3, "note": ""}}}}
             for name, share in shares.items()}
    reference = {name: {"time_split": {"device_busy": 0.95, "notes": []}} for name in shares}
    return TeamResult(team="tiny", status="ok", backend="local", spec_name=SPEC.name, spec_sha256="0",
                      tasks={name: TaskResult.from_dict(info) for name, info in tasks.items()},
                      reference={name: ReferenceResult.from_dict({"params": 102_000_000, **info})
                                 for name, info in reference.items()},
                      environment=Environment.from_dict({"device": "cuda", "device_name": "NVIDIA H200"}),
                      score=TeamScore(P=70.0, S=7_000_000, S_bert=102_000_000, T=1.0, T_bert=1.8, speedup=1.8,
                                      speedup_low=1.7, speedup_high=1.9, speed_verdict="fail", speed_ok=False,
                                      params_ok=True, compliant=False, res=None, failed_tasks=(), reasons=("too slow",)))


def run_check(monkeypatch, invoke, shares, tmp_path):
    monkeypatch.setattr(cli, "execute", lambda team_dir, settings: (SPEC, gpu_result(shares)))
    return invoke("check", tmp_path)


def test_check_ends_with_the_host_work_diagnosis(monkeypatch, invoke, tmp_path):
    result = run_check(monkeypatch, invoke, {"cluewsc2020": 0.62, "csl": 0.35, "cluener2020": 0.48,
                                             "cmrc2018": 0.21}, tmp_path)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last == ("cmrc2018: the device was busy 21% of your time (csl 35%, cluener2020 48%); the rest is host "
                    "work (tokenization, tensor building): batch and vectorize it")
    assert "21% | 95%" in result.output and "device busy" in result.output and "team's own" in result.output


def test_no_diagnosis_when_the_device_does_most_of_the_work(monkeypatch, invoke, tmp_path):
    result = run_check(monkeypatch, invoke, {"cluewsc2020": 0.8, "csl": 0.9, "cluener2020": 0.7, "cmrc2018": 0.5}, tmp_path)
    assert "host work" not in result.output
