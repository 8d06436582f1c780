"""The four task modules on the real CLUE files, where a checkout has them beside it (skipped elsewhere):
the folder named by HARNESS_CLUE_DATA, else ../shared/data/clue next to the repository.

Expected NER numbers are the ones printed in the official CLUENER2020 score.py for its "bert base" run,
which is the baseline prediction file stored with the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.tasks import get_task

REPO = Path(__file__).resolve().parents[2]
BESIDE_THE_REPO = REPO.parent / "shared" / "data" / "clue"

# score.py (CLUEbenchmark/CLUENER2020), "bert base", on 0-1
OFFICIAL_BERT_BASE_NER = {
    "address": 0.5180533751962323, "book": 0.6690909090909091, "company": 0.6646525679758307,
    "game": 0.7094188376753506, "government": 0.7352297592997812, "movie": 0.5974025974025975,
    "name": 0.7596513075965131, "organization": 0.5411334552102377, "position": 0.7240051347881901,
    "scene": 0.553191489361702}
OFFICIAL_BERT_BASE_NER_MACRO = 0.6471829433597345


@pytest.fixture(scope="module")
def clue() -> Path:
    """The real data folder, or a skip: a user's fresh clone does not have it (a named folder must exist)."""
    named = os.environ.get("HARNESS_CLUE_DATA")
    if named:
        if not Path(named).is_dir():
            pytest.fail(f"HARNESS_CLUE_DATA={named} is not a folder")
        return Path(named)
    if BESIDE_THE_REPO.is_dir():
        return BESIDE_THE_REPO
    pytest.skip(f"real CLUE data not found at {BESIDE_THE_REPO} (set HARNESS_CLUE_DATA to its folder)")


@pytest.mark.parametrize("task_name, gold_file", [
    ("cluewsc2020", "cluewsc2020/dev.json"), ("csl", "csl/dev.json"),
    ("cluener2020", "cluener2020/dev.json"), ("cmrc2018", "cmrc2018/trial.json"),
])
def test_gold_against_itself_scores_100(clue, task_name, gold_file):
    task = get_task(task_name)
    gold = task.read_gold(clue / gold_file)
    if task_name == "cmrc2018":
        predictions = [{"id": q["id"], "answer": q["answers"][0]} for q in gold]
    else:
        predictions = [{"id": e["id"], "label": e["label"]} for e in gold]
    assert all(task.check_prediction(p) is None for p in predictions)
    score = task.score(gold, predictions)
    assert score.problems == () and score.n_gold == len(gold) > 100
    assert all(value == 100.0 for value in score.metrics.values()), score.metrics


def test_inputs_carry_no_labels(clue):
    for task_name, gold_file, label in [("cluewsc2020", "cluewsc2020/dev.json", "label"),
                                        ("cluener2020", "cluener2020/dev.json", "label"),
                                        ("cmrc2018", "cmrc2018/trial.json", "answers")]:
        task = get_task(task_name)
        inputs = task.strip_labels(task.read_gold(clue / gold_file))
        assert all("id" in example and label not in example for example in inputs)


def test_baseline_ner_file_reads_complete_and_scores_as_the_official_scorer(clue):
    task = get_task("cluener2020")
    gold = task.read_gold(clue / "cluener2020/dev.json")
    records, problems = task.read_predictions(clue / "predictions/cluener2020_dev_baseline_predict.json")
    assert (len(records), problems) == (1343, [])
    assert [r["id"] for r in records] == list(range(1343))
    assert all(task.check_prediction(r) is None for r in records)
    score = task.score(gold, records, problems)
    assert score.problems == ()
    assert score.score == pytest.approx(100 * OFFICIAL_BERT_BASE_NER_MACRO, abs=1e-9)
    for entity_type, f1 in OFFICIAL_BERT_BASE_NER.items():
        assert score.metrics[f"f1_{entity_type}"] == pytest.approx(100 * f1, abs=1e-9)


def test_example_submission_files_read_without_problems(clue):
    for task_name, count in [("cluewsc2020", 290), ("csl", 3000), ("cmrc2018", None)]:
        task = get_task(task_name)
        records, problems = task.read_predictions(clue / f"predictions/{task_name}_test_example_predict.json")
        assert problems == [] and all(task.check_prediction(r) is None for r in records)
        assert count is None or len(records) == count
