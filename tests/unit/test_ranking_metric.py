"""The spec owns which metric ranks a task: `run`, `batch` and `harness score` all rank by the spec's
ranking_metric, also where it differs from what the task module puts first. The fixture spec ranks CMRC2018
by F1 where the module (and CLUE) rank by EM."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.pipeline import task_info
from harness.spec import SpecError, load_spec
from harness.tasks import get_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLD = FIXTURES / "data" / "cmrc2018" / "trial.json"
# Q0 exact; Q1 "中国" against gold "中国北方": EM 0, F1 = 2*(2/2)*(2/4)/(2/2+2/4) = 2/3
PREDICTIONS = [{"id": "FIX_0_QUERY_0", "answer": "长城"}, {"id": "FIX_0_QUERY_1", "answer": "中国"}]
EM = 50.0
F1 = (100 + 200 / 3) / 2


def spec_text(old: str, new: str) -> str:
    text = (FIXTURES / "spec_small.toml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    return text.replace(old, new)


@pytest.fixture
def f1_ranked_spec(tmp_path) -> Path:
    """spec_small with CMRC2018 ranked by F1: the spec and the task module (EM) disagree."""
    path = tmp_path / "spec_f1.toml"
    path.write_text(spec_text('ranking_metric = "em"', 'ranking_metric = "f1"'), encoding="utf-8")
    return path


def test_the_fixture_spec_and_the_task_module_disagree(f1_ranked_spec):
    assert load_spec(f1_ranked_spec).task("cmrc2018").ranking_metric == "f1"
    assert get_task("cmrc2018").ranking_metric == "em"


def test_a_run_ranks_a_task_by_the_spec_s_metric(f1_ranked_spec):
    spec = load_spec(f1_ranked_spec)
    gold = get_task("cmrc2018").read_gold(GOLD)
    measured = {"ok": True, "params": {"counted": 1000}, "time_s": 0.5, "time_per_example_s": 0.25,
                "caching_suspected": False, "consistent_across_rounds": True}
    info = task_info(spec.task("cmrc2018"), gold, measured, PREDICTIONS)
    assert info.score == pytest.approx(F1) and info.metrics["em"] == pytest.approx(EM)
    bundled = task_info(load_spec().task("cmrc2018"), gold, measured, PREDICTIONS)
    assert bundled.score == pytest.approx(EM)


def test_harness_score_ranks_by_the_same_metric(f1_ranked_spec, tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text('{"FIX_0_QUERY_0": "长城", "FIX_0_QUERY_1": "中国"}', encoding="utf-8")
    result = CliRunner().invoke(main, ["score", "cmrc2018", str(GOLD), str(pred), "--spec", str(f1_ranked_spec)])
    assert result.exit_code == 0, result.output
    assert f"cmrc2018: {F1:.2f} (f1)" in result.output


def test_a_spec_cannot_rank_by_a_metric_its_task_does_not_compute(tmp_path):
    path = tmp_path / "spec_bad.toml"
    path.write_text(spec_text('metrics = ["em", "f1"]\nranking_metric = "em"',
                              'metrics = ["em", "f1", "bleu"]\nranking_metric = "bleu"'), encoding="utf-8")
    with pytest.raises(SpecError, match=r"tasks\[3\]\.ranking_metric 'bleu' is not a metric the cmrc2018 scorer "
                                        r"computes \(em, f1\)"):
        load_spec(path)
