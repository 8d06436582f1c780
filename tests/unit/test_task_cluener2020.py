"""CLUENER2020: macro F1 over 10 types of entity TEXTS, as the official score.py counts them.

The gold fixture has 4 sentences and all 10 types:
  0 马云在杭州创办了阿里巴巴，并担任董事局主席。  name 马云, address 杭州, company 阿里巴巴, position 董事局主席
  1 《三体》作者刘慈欣获得雨果奖，消息由新华社发布。 book 《三体》, name 刘慈欣, organization 新华社
  2 周末去故宫看电影《流浪地球》，再玩王者荣耀。    scene 故宫, movie 流浪地球, game 王者荣耀
  3 国务院和北京市政府联合发文。                    government 国务院, 北京市政府
The prediction fixture (no ids, no final newline, like the real baseline file) predicts:
  0 name 马云, address 杭州, company 阿里巴巴, position 主席
  1 book 三体 (no 《》: a different text), name 刘慈欣 and 雨果
  2 scene 故宫, address 故宫, movie 流浪地球
  3 government 国务院, company 北京市政府
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.tasks import get_task
from harness.tasks.base import TaskDataError
from harness.tasks.cluener2020 import TYPES, f1_from_counts

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
NER = get_task("cluener2020")

# Per type over the 4 sentences, TP / FP / FN and F1 = 2PR / (P + R):
#   address      1 / 1 / 0   P 1/2  R 1    F1 2/3      (故宫 is a scene, not an address)
#   book         0 / 1 / 1   F1 0                      (三体 != 《三体》)
#   company      1 / 1 / 0   F1 2/3                    (北京市政府 is government)
#   game         0 / 0 / 1   F1 0
#   government   1 / 0 / 1   P 1    R 1/2  F1 2/3
#   movie        1 / 0 / 0   F1 1
#   name         2 / 1 / 0   P 2/3  R 1    F1 (4/3)/(5/3) = 4/5
#   organization 0 / 0 / 1   F1 0
#   position     0 / 1 / 1   F1 0                      (主席 != 董事局主席)
#   scene        1 / 0 / 0   F1 1
# macro = (3 * 2/3 + 1 + 1 + 4/5) / 10 = 4.8 / 10 -> 48.0
EXPECTED = {"address": 200 / 3, "book": 0.0, "company": 200 / 3, "game": 0.0, "government": 200 / 3,
            "movie": 100.0, "name": 80.0, "organization": 0.0, "position": 0.0, "scene": 100.0}


@pytest.fixture
def gold():
    return NER.read_gold(FIXTURES / "cluener2020_gold.json")


@pytest.fixture
def prediction_lines():
    return (FIXTURES / "cluener2020_pred_no_ids.json").read_text(encoding="utf-8").split("\n")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_gold_lines_without_id_get_their_line_index(gold):
    assert [example["id"] for example in gold] == [0, 1, 2, 3]
    assert NER.strip_labels(gold)[3] == {"id": 3, "text": "国务院和北京市政府联合发文。"}


def test_gold_against_itself_scores_100_on_every_type(gold):
    score = NER.score(gold, [{"id": e["id"], "label": e["label"]} for e in gold])
    assert score.metrics == {"macro_f1": 100.0, **{f"f1_{t}": 100.0 for t in TYPES}}
    assert score.problems == ()


def test_file_without_ids_or_final_newline_is_read_complete_by_line_order(gold):
    records, problems = NER.read_predictions(FIXTURES / "cluener2020_pred_no_ids.json")
    assert problems == [] and [r["id"] for r in records] == [0, 1, 2, 3]
    score = NER.score(gold, records, problems)
    assert score.score == pytest.approx(48.0)
    assert score.metrics == pytest.approx({"macro_f1": 48.0, **{f"f1_{t}": v for t, v in EXPECTED.items()}})
    assert score.problems == ()


def test_explicit_ids_match_in_any_order(gold, prediction_lines):
    records = [{"id": i, **json.loads(line)} for i, line in enumerate(prediction_lines)][::-1]
    assert NER.score(gold, records).score == pytest.approx(48.0)


def test_a_shorter_file_counts_the_missing_sentences_as_finding_nothing(tmp_path, gold, prediction_lines):
    # Sentence 3 is missing: government 国务院 becomes FN (TP 0 FN 2 -> 0) and company loses its FP
    # (TP 1 FP 0 -> 1). macro = (2/3 + 1 + 0 + 1 + 4/5 + 1) / 10 = 4.4667 / 10 -> 44.667.
    # (The official zip() would drop sentence 3 from the counts instead; see the module docstring.)
    records, problems = NER.read_predictions(write_lines(tmp_path / "short.json", prediction_lines[:3]))
    score = NER.score(gold, records, problems)
    assert score.score == pytest.approx((200 / 3 + 100 + 0 + 100 + 80 + 100) / 10)
    assert score.metrics["f1_government"] == 0.0 and score.metrics["f1_company"] == 100.0
    assert score.problems == ("3 predictions for 4 gold examples (fewer lines than the gold file)",
                              "1 of 4 gold examples have no prediction (counted wrong): 3")


def test_a_longer_file_ignores_and_reports_the_extra_lines(tmp_path, gold, prediction_lines):
    extra = '{"label": {"name": {"张三": [[0, 1]]}}}'
    records, problems = NER.read_predictions(write_lines(tmp_path / "long.json", prediction_lines + [extra]))
    score = NER.score(gold, records, problems)
    assert score.score == pytest.approx(48.0)
    assert score.problems == ("5 predictions for 4 gold examples (more lines than the gold file)",
                              "1 predictions have ids that the gold file does not have (ignored): 4")


def test_a_malformed_line_loses_only_its_own_sentence(tmp_path, gold, prediction_lines):
    # Line 2 (sentence 1) is broken; line 3 still answers sentence 2. Without sentence 1: book TP0 FP0 FN1 -> 0,
    # name TP1 FP0 FN1 -> 2/3, organization FN1 -> 0. macro = (4 * 2/3 + 1 + 1) / 10 = 4.6667 / 10 -> 46.667.
    lines = [prediction_lines[0], '{"label": {"name": ', *prediction_lines[2:]]
    records, problems = NER.read_predictions(write_lines(tmp_path / "broken.json", lines))
    assert [r["id"] for r in records] == [0, 2, 3]
    assert problems == ["line 2: not valid JSON (Expecting value); example 1 has no prediction"]
    score = NER.score(gold, records, problems)
    assert score.score == pytest.approx((4 * 200 / 3 + 200) / 10)
    assert "1 of 4 gold examples have no prediction (counted wrong): 1" in score.problems


def test_blank_lines_are_skipped_without_taking_a_position(tmp_path, gold, prediction_lines):
    lines = [prediction_lines[0], "", "   ", *prediction_lines[1:]]
    records, problems = NER.read_predictions(write_lines(tmp_path / "blank.json", lines))
    assert problems == [] and NER.score(gold, records).score == pytest.approx(48.0)


def test_unknown_types_are_ignored_and_malformed_types_predict_nothing(gold, prediction_lines):
    records = [{"id": i, **json.loads(line)} for i, line in enumerate(prediction_lines)]
    records[0]["label"]["person"] = {"马云": [[0, 1]]}      # not a CLUENER type: ignored
    records[2]["label"]["movie"] = ["流浪地球"]             # not {entity: spans}: movie predicts nothing
    # movie: TP 0, FN 1 -> 0, so macro = 48.0 - 100 / 10 = 38.0
    score = NER.score(gold, records)
    assert score.score == pytest.approx(38.0)
    assert score.problems == ("2 faults in predicted labels (that part ignored): id 0: unknown entity type "
                              "'person', id 2: 'movie' is list, not an {entity: spans} object",)


def test_a_record_without_label_predicts_nothing(gold):
    records = [{"id": e["id"], "label": e["label"]} for e in gold]
    records[3] = {"id": 3}
    # government: TP 0, FN 2 -> 0; every other type stays perfect -> 90.0
    score = NER.score(gold, records)
    assert score.score == pytest.approx(90.0)
    assert score.problems == ('1 faults in predicted labels (that part ignored): id 3: no "label"',)


def test_an_entity_text_counts_once_per_sentence_and_an_empty_type_scores_0(tmp_path):
    # 张三 occurs twice but is one dict key: TP 1 either way. The other 9 types have neither gold nor
    # predictions; the official code would divide by zero, we take F1 0 -> macro = 100 / 10 = 10.0.
    path = write_lines(tmp_path / "dev.json", ['{"text": "张三说张三来了", "label": {"name": {"张三": [[0, 1], [3, 4]]}}}'])
    gold = NER.read_gold(path)
    score = NER.score(gold, [{"id": 0, "label": {"name": {"张三": [[0, 1]]}}}])
    assert score.metrics["f1_name"] == 100.0 and score.score == pytest.approx(10.0)


def test_duplicate_ids_keep_the_last_prediction(gold):
    records = [{"id": e["id"], "label": e["label"]} for e in gold]
    records.insert(0, {"id": 0, "label": {}})              # overridden by the correct record that follows
    score = NER.score(gold, records)
    assert score.score == pytest.approx(100.0)
    assert score.problems == ("5 predictions for 4 gold examples (more lines than the gold file)",
                              "1 ids are predicted more than once (the last prediction counts): 0")


@pytest.mark.parametrize("counts, f1", [((0, 0, 0), 0.0), ((0, 3, 2), 0.0), ((2, 1, 0), 0.8), ((1, 0, 1), 2 / 3)])
def test_f1_from_counts(counts, f1):
    assert f1_from_counts(*counts) == pytest.approx(f1)


@pytest.mark.parametrize("prediction, reason", [
    ({"id": 0, "label": {"name": {"马云": [[0, 1]]}, "company": {"阿里巴巴": [[8, 11], [20, 23]]}}}, None),
    ({"id": 0, "label": {}}, None),
    ({"label": {}}, 'no integer or string "id"'),
    ({"id": 0}, 'no "label" (use {} when no entity is found)'),
    ({"id": 0, "label": []}, '"label" is list, not an object'),
    ({"id": 0, "label": {"person": {"马云": [[0, 1]]}}}, "unknown entity type 'person'"),
    ({"id": 0, "label": {"name": ["马云"]}}, "'name' is list, not an {entity: spans} object"),
    ({"id": 0, "label": {"name": {"马云": [0, 1]}}}, "span 0 of '马云' is not [start, end] with 0 <= start <= end"),
    ({"id": 0, "label": {"name": {"马云": [[2, 1]]}}}, "span [2, 1] of '马云' is not [start, end] with 0 <= start <= end"),
    ({"id": 0, "label": {"name": {"马云": []}}}, "spans of '马云' are not a non-empty list of [start, end]"),
    ({"id": 0, "label": {"name": {"": [[0, 0]]}}}, "entity '' is not a non-empty string"),
])
def test_check_prediction(prediction, reason):
    assert NER.check_prediction(prediction) == reason


def test_written_predictions_carry_ids_and_read_back(tmp_path, gold):
    path = tmp_path / "cluener2020_predict.json"
    NER.write_predictions([{"id": e["id"], "label": e["label"]} for e in gold], path)
    records, problems = NER.read_predictions(path)
    assert problems == [] and records == [{"id": e["id"], "label": e["label"]} for e in gold]


@pytest.mark.parametrize("line, message", [
    ('{"label": {}}', 'record 1 has no "text"'),
    ('{"text": "北京", "label": {"city": {"北京": [[0, 1]]}}}', "unknown entity type 'city'"),
    ('{"text": "北京", "label": {"address": [["北京"]]}}', "'address' is list"),
])
def test_broken_gold_raises(tmp_path, line, message):
    with pytest.raises(TaskDataError, match=message):
        NER.read_gold(write_lines(tmp_path / "dev.json", [line]))


def test_unlabelled_test_file_reads_its_ids_but_cannot_be_scored(tmp_path):
    gold = NER.read_gold(write_lines(tmp_path / "test.json", ['{"id": 7, "text": "尼日利亚海军"}']))
    assert NER.strip_labels(gold) == [{"id": 7, "text": "尼日利亚海军"}]
    with pytest.raises(TaskDataError, match="no label"):
        NER.score(gold, [{"id": 7, "label": {}}])
