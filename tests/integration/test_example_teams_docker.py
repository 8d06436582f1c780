"""The four example finalists under baselines/ on the Docker backend, in one test (each build costs
minutes here): the runner image (torch 1.13, transformers 4.40, onnxruntime 1.18) builds them offline,
the ONNX team exports its models inside the image at build time, and every row is ok, under the
parameter limit, with the hand-worked counts of tests/unit/test_example_teams.py, and faster than the real
BERT-base reference in the runner image (against the 0.2 s fake reference a 7M-parameter model on two loaded
CPUs is not always faster, so this test keeps BERT-base, as does the demo test in test_docker.py).
"""

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import main

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# (team folder, team name, largest per-task parameter count)
EXAMPLE_TEAMS = [("roberta_tiny_team", "roberta-tiny-team", 7_450_562),
                 ("albert_tiny_team", "albert-tiny-team", 4_081_146),
                 ("onnx_team", "onnx-team", 7_330_562),
                 ("fast_tiny_team", "fast-tiny-team", 7_445_570)]
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")


def test_example_teams_build_and_run_in_the_runner_image(tmp_path, runner_image):
    out = tmp_path / "out"
    for folder, _, _ in EXAMPLE_TEAMS:
        args = ["run", str(REPO / "baselines" / folder), "--backend", "docker", "--spec",
                str(FIXTURES / "spec_docker.toml"), "--data-dir", str(FIXTURES / "data"), "--runner-image",
                runner_image, "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--max-examples", "1"]
        if folder == "onnx_team":   # the engine may keep its image from an earlier run (CI's does): build it now
            args.append("--rebuild")
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    for folder, team, params in EXAMPLE_TEAMS:
        row = frame[frame["team"] == team].iloc[0]
        assert row["status"] == "ok", (team, row["error"])
        assert row["backend"] == "docker" and row["device"] == "cpu"
        assert int(row["params"]) == params and bool(row["params_ok"])
        assert "weights_unaccounted" not in row["flags"], (team, row["flags"])   # image scan and memory agree
        assert float(row["speedup"]) > 1, team
        for task in TASKS:
            assert (out / team / "predictions" / f"{task}_predict.json").exists(), (team, task)
    assert "exported cmrc2018" in (out / "onnx-team" / "build.log").read_text(encoding="utf-8")
    # the build happened in the image: nothing was written into the repository's team folder
    assert not (REPO / "baselines" / "onnx_team" / "models").exists()
