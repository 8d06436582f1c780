import re
from pathlib import Path

import pandas as pd
import pytest

from harness.records import TaskResult
from harness.results import TASK_COLUMNS, TEAM_COLUMNS, TRAILING_COLUMNS, TeamResult, columns, write_results_csv
from harness.scoring import ReferenceTask, TaskOutcome, score_team
from harness.spec import load_spec

SPEC = load_spec()
README = Path(__file__).resolve().parents[2] / "README.md"


def test_column_order_is_fixed():
    cols = columns(SPEC)
    assert cols[:12] == ["team", "status", "score", "P", "params", "params_ok", "speedup", "speedup_low",
                         "speedup_high", "speed_verdict", "speed_ok", "compliant"]
    assert cols[len(TEAM_COLUMNS):len(TEAM_COLUMNS) + 3] == [
        "cluewsc2020_score", "cluewsc2020_time_per_example_ms", "cluewsc2020_params"]
    assert cols[-1] == "error" and len(cols) == len(TEAM_COLUMNS) + 4 * len(TASK_COLUMNS) + len(TRAILING_COLUMNS)


def test_readme_documents_every_column():
    documented = set(re.findall(r"^\| `([^`]+)` \|", README.read_text(encoding="utf-8"), re.M))
    assert set(TEAM_COLUMNS) | set(TASK_COLUMNS) | set(TRAILING_COLUMNS) <= documented


def _result(team, P_scores=(80, 60, 70, 50)):
    tasks = SPEC.task_names
    outcomes = {t: TaskOutcome(t, s, 5_000_000, 1.0) for t, s in zip(tasks, P_scores)}
    ref = {t: ReferenceTask(100_000_000, 10.0) for t in tasks}
    return TeamResult(team=team, status="ok", backend="local", spec_name=SPEC.name, spec_sha256=SPEC.sha256,
                      score=score_team(outcomes, ref, SPEC),
                      tasks={t: TaskResult.from_dict({"score": s, "params": 5_000_000, "time_per_example_s": 0.002})
                             for t, s in zip(tasks, P_scores)})


def test_csv_rows_replace_same_team_and_keep_others(tmp_path):
    path = tmp_path / "results.csv"
    write_results_csv([_result("alpha"), _result("beta")], path, SPEC)
    write_results_csv([_result("alpha", (100, 100, 100, 100))], path, SPEC)
    frame = pd.read_csv(path)
    assert list(frame.columns) == columns(SPEC)
    assert sorted(frame["team"]) == ["alpha", "beta"]
    alpha = frame[frame["team"] == "alpha"].iloc[0]
    assert alpha["P"] == pytest.approx(100.0)
    assert alpha["cluewsc2020_time_per_example_ms"] == pytest.approx(2.0)
    # speedup = (4*10)/(4*1) = 10
    assert alpha["speedup"] == pytest.approx(10.0)
