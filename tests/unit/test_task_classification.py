"""CLUEWSC2020 and CSL: accuracy over id -> label, with every prediction problem reported, never raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.tasks import get_task
from harness.tasks.base import TaskDataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
WSC = get_task("cluewsc2020")
CSL = get_task("csl")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def wsc_gold():
    # ids 0..3 with labels true, false, true, false
    return WSC.read_gold(FIXTURES / "cluewsc2020_gold.json")


@pytest.fixture
def csl_gold():
    # ids 0..3 with labels "1", "0", "1", "0"
    return CSL.read_gold(FIXTURES / "csl_gold.json")


def test_wsc_gold_id_is_idx_and_inputs_keep_everything_but_the_label(wsc_gold):
    assert [example["id"] for example in wsc_gold] == [0, 1, 2, 3]
    inputs = WSC.strip_labels(wsc_gold)
    assert set(inputs[1]) == {"id", "idx", "target", "text"}
    assert inputs[1]["target"]["span2_text"] == "它"


def test_csl_inputs_are_id_abstract_and_keywords(csl_gold):
    assert CSL.strip_labels(csl_gold)[3] == {"id": 3, "abst": "分析了2008年金融危机对出口贸易的冲击.",
                                             "keyword": ["金融危机", "量子计算"]}


def test_wsc_gold_against_itself_scores_100(wsc_gold):
    score = WSC.score(wsc_gold, [{"id": e["id"], "label": e["label"]} for e in wsc_gold])
    assert (score.score, score.problems) == (100.0, ())


def test_wsc_accuracy_counts_a_missing_prediction_wrong(wsc_gold):
    # 0 true (right), 1 true (wrong: gold false), 2 true (right), 3 missing -> 2 right of 4 = 50.0
    predictions = [{"id": 0, "label": "true"}, {"id": 1, "label": "true"}, {"id": 2, "label": "true"}]
    score = WSC.score(wsc_gold, predictions)
    assert score.score == 50.0 and score.metrics == {"accuracy": 50.0}
    assert (score.n_gold, score.n_pred) == (4, 3)
    assert score.problems == ("1 of 4 gold examples have no prediction (counted wrong): 3",)


def test_wsc_duplicate_unknown_and_invalid_predictions_are_reported(wsc_gold):
    predictions = [
        {"id": 0, "label": "false"},
        {"id": 0, "label": "true"},      # repeated id: the last one counts -> right
        {"id": "1", "label": "false"},   # "1" is id 1 -> right
        {"id": 2, "label": "yes"},       # not a label -> wrong
        {"id": 3, "label": "true"},      # wrong (gold false)
        {"id": 99, "label": "true"},     # no such example -> ignored
    ]
    # right: ids 0 and 1 -> 2 of 4 = 50.0
    score = WSC.score(wsc_gold, predictions, problems=["line 9: not valid JSON (Expecting value)"])
    assert score.score == 50.0
    assert score.problems == (
        "line 9: not valid JSON (Expecting value)",
        "1 predictions have ids that the gold file does not have (ignored): 99",
        "1 ids are predicted more than once (the last prediction counts): 0",
        "1 predictions have a label that is not one of 'true' or 'false' (counted wrong): id 2: 'yes'",
    )


def test_csl_integer_labels_are_not_the_official_strings(csl_gold):
    # 0: "1" right, 1: 0 (an int, invalid), 2: "1" right, 3: "1" wrong -> 2 of 4 = 50.0
    predictions = [{"id": 0, "label": "1"}, {"id": 1, "label": 0}, {"id": 2, "label": "1"}, {"id": 3, "label": "1"}]
    score = CSL.score(csl_gold, predictions)
    assert score.score == 50.0
    assert score.problems == ("1 predictions have a label that is not one of '0' or '1' (counted wrong): id 1: 0",)


def test_records_without_an_id_are_reported_and_their_examples_missing(csl_gold):
    predictions = [{"label": "1"}, "1", {"id": 1.0, "label": "0"}, {"id": 2, "label": "1"}]
    score = CSL.score(csl_gold, predictions)
    assert score.score == 25.0          # only id 2 is answered, and right: 1 of 4
    assert score.problems[0].startswith("3 predictions are not JSON objects with an integer or string \"id\"")
    assert score.problems[1] == "3 of 4 gold examples have no prediction (counted wrong): 0, 1, 3"


def test_prediction_file_with_a_malformed_line_reads_the_rest(tmp_path, csl_gold):
    path = write_lines(tmp_path / "csl_predict.json",
                       ['{"id": 0, "label": "1"}', '{"id": 1, "label": "0"', '{"id": 2, "label": "1"}'])
    records, problems = CSL.read_predictions(path)
    assert records == [{"id": 0, "label": "1"}, {"id": 2, "label": "1"}]
    assert problems == ["line 2: not valid JSON (Expecting ',' delimiter)"]
    score = CSL.score(csl_gold, records, problems)
    assert score.score == 50.0          # ids 0 and 2 right; 1 and 3 missing
    assert score.problems[0] == problems[0]


def test_written_predictions_are_the_official_lines_and_read_back(tmp_path):
    path = tmp_path / "cluewsc2020_predict.json"
    WSC.write_predictions([{"id": 0, "label": "true", "score": 0.9}, {"id": 1, "label": "false"}], path)
    assert path.read_text(encoding="utf-8") == '{"id": 0, "label": "true"}\n{"id": 1, "label": "false"}\n'
    assert WSC.read_predictions(path) == ([{"id": 0, "label": "true"}, {"id": 1, "label": "false"}], [])


@pytest.mark.parametrize("prediction, reason", [
    ({"id": 3, "label": "true"}, None),
    ({"id": "3", "label": "false"}, None),
    (["true"], "a prediction is a JSON object, not list"),
    ({"label": "true"}, 'no integer or string "id"'),
    ({"id": True, "label": "true"}, 'no integer or string "id"'),
    ({"id": 3, "label": True}, "\"label\" is True; expected one of 'true' or 'false'"),
])
def test_wsc_check_prediction(prediction, reason):
    assert WSC.check_prediction(prediction) == reason


def test_csl_check_prediction_rejects_an_integer_label():
    assert CSL.check_prediction({"id": 0, "label": 1}) == "\"label\" is 1; expected one of '0' or '1'"
    assert CSL.check_prediction({"id": 0, "label": "1"}) is None


@pytest.mark.parametrize("lines, message", [
    (['{"idx": 0, "label": "true", "text": "x"}', '{"idx": 1, "label": "maybe", "text": "y"}'],
     "record 2 has label 'maybe'"),
    (['{"label": "true", "text": "x"}'], "record 1 has no integer or string 'idx'"),
    (['{"idx": 0, "label": "true"}', '{"idx": 0, "label": "false"}'], "has id 0 twice"),
    (['{"idx": 0, "label": "true"}', "[1, 2]"], "record 2 is not a JSON object"),
    (['{"idx": 0, "label": "true"}', "{oops"], "line 2: not valid JSON"),
])
def test_broken_gold_files_raise_with_what_is_wrong(tmp_path, lines, message):
    with pytest.raises(TaskDataError, match=message):
        WSC.read_gold(write_lines(tmp_path / "dev.json", lines))


def test_unlabelled_gold_reads_as_inputs_but_cannot_be_scored(tmp_path):
    gold = WSC.read_gold(write_lines(tmp_path / "test.json", ['{"idx": 5, "text": "他来了。"}']))
    assert WSC.strip_labels(gold) == [{"idx": 5, "text": "他来了。", "id": 5}]
    with pytest.raises(TaskDataError, match="no label"):
        WSC.score(gold, [{"id": 5, "label": "true"}])


def test_unreadable_prediction_files_raise(tmp_path):
    with pytest.raises(TaskDataError, match="cannot read prediction file"):
        CSL.read_predictions(tmp_path / "absent.json")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(json.dumps({"id": 0, "label": "é"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(TaskDataError, match="not UTF-8"):
        CSL.read_predictions(latin1)
