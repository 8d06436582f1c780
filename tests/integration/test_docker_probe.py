"""The worker's weight scan inside the runner image, on the torch the image holds (the offline image: Debian's
torch 1.13, which has no Tensor.untyped_storage): every hiding place of tests/unit/test_hidden_weights.py is
caught there too, and an honest predictor is not flagged."""

import json
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
