"""The example finalists under baselines/ through `harness run --backend local`, on the fixture data.

Two examples per task, against the fixture's fast fake reference (the speedup against BERT-base is
measured by bench/example_teams.py, not here). The local backend builds each team once per content hash:
setup.sh runs in a copy of the team (the ONNX team exports its models there), so the repository's team
folders stay clean. The row's params is the largest per-task model (the spec's size_aggregate = "max").
"""

import pandas as pd
import pytest

from conftest import FIXTURES

pytestmark = pytest.mark.slow

BASELINES = FIXTURES.parents[1] / "baselines"
# (team folder, team name, largest per-task parameter count: a sequence-classification task's model)
EXAMPLE_TEAMS = [("roberta_tiny_team", "roberta-tiny-team", 7_450_562),
                 ("albert_tiny_team", "albert-tiny-team", 4_081_146),
                 ("onnx_team", "onnx-team", 7_330_562),
                 ("fast_tiny_team", "fast-tiny-team", 7_445_570)]


@pytest.mark.parametrize("folder, team, params", EXAMPLE_TEAMS)
def test_example_team_runs_on_the_local_backend(invoke, run_args, tmp_path, folder, team, params):
    result = invoke("run", BASELINES / folder, *run_args, "--max-examples", 2)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    row = frame[frame["team"] == team].iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["backend"] == "local" and row["device"] == "cpu"
    assert int(row["params"]) == params and bool(row["params_ok"])
    # honest teams: nothing hidden found in the worker, and no host-side figure contradicts the count
    assert "weights_unaccounted" not in row["flags"] and "live in the worker process" not in row["flags"]
    for task in ("cluewsc2020", "csl", "cluener2020", "cmrc2018"):
        assert (tmp_path / "out" / team / "predictions" / f"{task}_predict.json").exists()
