"""The pieces every task shares: the registry, id matching, problem summaries, JSON-lines reading."""

from __future__ import annotations

import pytest

from harness.tasks import TASKS, get_task
from harness.tasks.base import id_key, match_predictions, read_json_lines, summarize


def test_the_four_tasks_are_registered_with_their_ranking_metric():
    assert list(TASKS) == ["cluewsc2020", "csl", "cluener2020", "cmrc2018"]
    assert {name: task.ranking_metric for name, task in TASKS.items()} == {
        "cluewsc2020": "accuracy", "csl": "accuracy", "cluener2020": "macro_f1", "cmrc2018": "em"}
    assert all(task.ranking_metric in task.metrics for task in TASKS.values())
    with pytest.raises(KeyError, match="known tasks: cluewsc2020, csl"):
        get_task("afqmc")


@pytest.mark.parametrize("value, key", [(7, "7"), ("7", "7"), ("TRIAL_1", "TRIAL_1"), (True, None),
                                        (7.0, None), (None, None), ([7], None)])
def test_id_key(value, key):
    assert id_key(value) == key


def test_summarize_shows_the_count_and_the_first_few():
    assert summarize("ids are odd", ["1", "2"]) == "2 ids are odd: 1, 2"
    assert summarize("ids are odd", [str(i) for i in range(8)], limit=3) == "8 ids are odd: 0, 1, 2, ... (5 more)"


def test_match_predictions_reports_every_kind_of_mismatch():
    gold = [{"id": 0}, {"id": 1}, {"id": 2}]
    predictions = [{"id": 0, "v": "a"}, {"id": "0", "v": "b"}, {"id": 5}, {"v": "no id"}, None, {"id": 1}]
    found, problems = match_predictions(gold, predictions)
    assert found == {"0": {"id": "0", "v": "b"}, "1": {"id": 1}}
    assert problems == [
        '2 predictions are not JSON objects with an integer or string "id" (ignored): #3, #4',
        "1 predictions have ids that the gold file does not have (ignored): 5",
        "1 ids are predicted more than once (the last prediction counts): '0'",
        "1 of 3 gold examples have no prediction (counted wrong): 2",
    ]


def test_read_json_lines_keeps_a_line_separator_inside_a_string(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines() would cut the record in two
    path = tmp_path / "p.json"
    path.write_text('{"text": "a\u2028b"}\n{"text": "c"}', encoding="utf-8")
    assert read_json_lines(path, "prediction") == ([{"text": "a\u2028b"}, {"text": "c"}], [])
