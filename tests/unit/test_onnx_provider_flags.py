"""A team timed on a GPU whose ONNX Runtime sessions run on CPU providers is flagged plainly (issue 27: the
ONNX team ran at 0.33x on an H200 and no row said why); nothing on a CPU run or when a GPU provider leads."""

from harness.records import TaskResult
from harness.onnx_providers import onnx_provider_flags
from harness.row_flags import measurement_flags, per_task
from harness.spec import load_spec

CPU_ONLY = {"providers": ["CPUExecutionProvider"]}
CUDA_FIRST = {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
TENSORRT_FIRST = {"providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
ADVICE = ("ask for CUDAExecutionProvider first, with onnxruntime-gpu in the runner's environment "
          "(Dockerfile.runner EXTRA_PIP; the harness's `gpu` extra on the local backend)")


def tasks(**sessions):
    return {name: TaskResult.from_dict({"timing": {"onnx_sessions": listed}}) for name, listed in sessions.items()}


def flags_of(tasks: dict, device: str | None) -> list[str]:
    """Each task's flags as the row carries them ("TASK: ..."), task by task."""
    return per_task(tasks, lambda timing: onnx_provider_flags(timing, device))


def test_one_tasks_record_gives_its_flag_without_the_task_name():
    assert onnx_provider_flags({"onnx_sessions": [CPU_ONLY, CUDA_FIRST]}, "cuda:0") == [
        "1 of 2 ONNX Runtime sessions ran on CPUExecutionProvider only although the box times on cuda:0: "
        "ask for CUDAExecutionProvider first, with onnxruntime-gpu in the runner's environment "
        "(Dockerfile.runner EXTRA_PIP; the harness's `gpu` extra on the local backend)"]
    assert onnx_provider_flags({}, "cuda") == [] and onnx_provider_flags({"onnx_sessions": [CPU_ONLY]}, "cpu") == []


def test_cuda_box_with_a_cpu_only_session_is_flagged_plainly():
    assert flags_of(tasks(cmrc2018=[CPU_ONLY]), "cuda") == [
        f"cmrc2018: ONNX Runtime ran on CPUExecutionProvider only although the box times on cuda: {ADVICE}"]


def test_cuda_or_tensorrt_first_is_not_flagged():
    assert flags_of(tasks(csl=[CUDA_FIRST], cmrc2018=[TENSORRT_FIRST, CUDA_FIRST]), "cuda:0") == []


def test_a_cpu_run_is_never_flagged_for_its_providers():
    assert flags_of(tasks(csl=[CPU_ONLY]), "cpu") == []
    assert flags_of(tasks(csl=[CPU_ONLY]), None) == []


def test_no_session_seen_or_not_reported_is_no_flag():
    assert flags_of(tasks(csl=[], cmrc2018=None), "cuda") == []
    assert flags_of({"csl": TaskResult.failure("timed out"), "cmrc2018": TaskResult.from_dict({"timing": {}})},
                    "cuda") == []


def test_one_session_of_several_on_the_cpu_and_odd_lists_are_said_as_they_are():
    cpu_first = {"providers": ["CPUExecutionProvider", "CUDAExecutionProvider"]}
    flags = flags_of(tasks(csl=[CUDA_FIRST, cpu_first], cluener2020=[{"providers": []}]), "cuda")
    assert flags == [
        "csl: 1 of 2 ONNX Runtime sessions ran on CPUExecutionProvider > CUDAExecutionProvider although the box "
        f"times on cuda: {ADVICE}",
        f"cluener2020: ONNX Runtime ran on no provider although the box times on cuda: {ADVICE}"]


def test_the_row_carries_the_flag_through_measurement_flags():
    env = {"device": "cuda", "torch_threads": 4, "device_name": None}
    task = TaskResult.from_dict({"timing": {"onnx_sessions": [CPU_ONLY]}})
    flags = measurement_flags(load_spec(), {"cmrc2018": task}, env, env)
    assert [f for f in flags if "ONNX Runtime" in f] == [
        f"cmrc2018: ONNX Runtime ran on CPUExecutionProvider only although the box times on cuda: {ADVICE}"]
    cpu_env = {**env, "device": "cpu"}
    assert not [f for f in measurement_flags(load_spec(), {"cmrc2018": task}, cpu_env, cpu_env)
                if "ONNX Runtime" in f]
