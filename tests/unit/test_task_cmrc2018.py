"""CMRC2018: EM and F1 exactly as cmrc2018_evaluate.py computes them, worked out by hand.

Gold fixture: Q1 "2018年FIFA世界杯"; Q2 "乔布斯" or "史蒂夫·乔布斯"; Q3 "U.S. Army's 1st Division";
Q4 "《三体》"; " Q5 " (id stripped to "Q5") "刘慈欣".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.tasks import get_task
from harness.tasks.base import TaskDataError
from harness.tasks.cmrc2018 import (best_f1, exact_match, longest_common_run, mixed_segmentation,
                                    remove_punctuation, treebank_words)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
CMRC = get_task("cmrc2018")


@pytest.fixture
def gold():
    return CMRC.read_gold(FIXTURES / "cmrc2018_gold.json")


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- tokenization -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, words", [
    ("u.s. army's 1st division", ["u.s.", "army", "'s", "1st", "division"]),   # 's splits off; inner periods stay
    ("ends with u.s.", ["ends", "with", "u.s", "."]),                          # only the final period splits
    ("cannot, (1999)", ["can", "not", ",", "(", "1999", ")"]),                 # cannot -> can not; brackets
    ("6,476 seats", ["6,476", "seats"]),                                       # a comma before a digit stays
    ('say "hi"', ["say", "``", "hi", "''"]),                                   # PTB quotes
    ("a...b x&y? don't", ["a", "...", "b", "x", "&", "y", "?", "do", "n't"]),
    ("  ", []),
])
def test_treebank_words(text, words):
    assert treebank_words(text) == words


@pytest.mark.parametrize("text, tokens", [
    # lowercased; "2018" ends at 年, "fifa" at 世: 2018 年 fifa 世 界 杯
    ("2018年FIFA世界杯", ["2018", "年", "fifa", "世", "界", "杯"]),
    # spaces separate words inside a run; trailing space stripped first
    ("iPhone 8 手机 ", ["iphone", "8", "手", "机"]),
    # listed punctuation is dropped WITHOUT ending the run: ab-cd is one word; · and 《》 vanish
    ("ab-cd", ["abcd"]),
    ("史蒂夫·乔布斯", ["史", "蒂", "夫", "乔", "布", "斯"]),
    ("《三体》", ["三", "体"]),
    # "……" is in the official list as one 2-character item, so a single … is never removed
    ("好…", ["好", "…"]),
    # ASCII punctuation is not in the list: it reaches the tokenizer (final period, comma)
    ("约2,173个坐席.", ["约", "2,173", "个", "坐", "席", "."]),
    # CJK means U+4E00-U+9FA5 only: U+3400 (extension A) and U+9FA6 (end of the block) join the run
    ("\u3400a中", ["\u3400a", "中"]),
    ("\u9fa6a中", ["\u9fa6a", "中"]),
])
def test_mixed_segmentation(text, tokens):
    assert mixed_segmentation(text) == tokens


def test_remove_punctuation_lowercases_strips_and_keeps_spaces_and_ellipsis():
    assert remove_punctuation("  《FIFA》世界杯：2018！ ") == "fifa世界杯2018"
    assert remove_punctuation("A B……") == "a b……"


def test_longest_common_run_is_contiguous():
    # common subsequence a c d has length 3, but the longest common contiguous run is "c d": 2
    assert longest_common_run(list("abcd"), list("acdx")) == 2
    assert longest_common_run([], list("ab")) == 0
    # repeated tokens: a a b vs a b -> "a b" = 2; a a a vs a a -> 2
    assert longest_common_run(list("aab"), list("ab")) == 2
    assert longest_common_run(list("aaa"), list("aa")) == 2


# -- per-question metrics -----------------------------------------------------------------------------------
def test_f1_of_a_shorter_mixed_script_answer():
    # gold 2018 年 fifa 世 界 杯 (6), pred fifa 世 界 杯 (4): common run 4, P = 4/4, R = 4/6,
    # F1 = 2 * 1 * 2/3 / (1 + 2/3) = (4/3) / (5/3) = 0.8; EM: "2018年fifa世界杯" != "fifa世界杯"
    assert best_f1(["2018年FIFA世界杯"], "FIFA世界杯") == pytest.approx(0.8)
    assert exact_match(["2018年FIFA世界杯"], "FIFA世界杯") == 0.0


def test_f1_of_an_english_answer_with_a_clitic():
    # gold u.s. army 's 1st division (5), pred the u.s. army 's (4): run u.s. army 's = 3,
    # P = 3/4, R = 3/5, F1 = 2 * 0.45 / 1.35 = 2/3
    assert best_f1(["U.S. Army's 1st Division"], "the U.S. Army's") == pytest.approx(2 / 3)


def test_the_best_gold_answer_counts():
    # against 乔布斯: run 乔 布 斯 = 3 of pred 6 and gold 3 -> P 1/2, R 1, F1 2/3; against 史蒂夫·乔布斯: 1
    assert best_f1(["乔布斯", "史蒂夫·乔布斯"], "史蒂夫乔布斯") == 1.0
    assert best_f1(["乔布斯"], "史蒂夫乔布斯") == pytest.approx(2 / 3)
    assert exact_match(["乔布斯", "史蒂夫·乔布斯"], "史蒂夫乔布斯") == 1.0


def test_an_empty_or_disjoint_prediction_scores_0_but_case_and_listed_punctuation_do_not_matter():
    assert best_f1(["三体"], "") == 0.0 and best_f1(["三体"], "球状闪电") == 0.0
    assert exact_match(["FIFA"], " fifa。") == 1.0
    assert exact_match(["FIFA"], "fifa.") == 0.0          # ASCII period is not in the official list


# -- files and the task score -------------------------------------------------------------------------------
def test_gold_is_flattened_per_question_with_stripped_ids(gold):
    assert [q["id"] for q in gold] == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    assert gold[1]["answers"] == ["乔布斯", "史蒂夫·乔布斯"] and gold[1]["paragraph_id"] == "A1_P0"
    assert CMRC.strip_labels(gold)[4] == {"id": "Q5", "context": "该部队隶属U.S. Army's 1st Division。刘慈欣写了《三体》。",
                                          "question": "谁写了三体？"}


def test_gold_against_its_own_answers_scores_100(gold):
    score = CMRC.score(gold, [{"id": q["id"], "answer": q["answers"][-1]} for q in gold])
    assert score.metrics == {"em": 100.0, "f1": 100.0} and score.problems == ()


def test_score_of_a_prediction_file(tmp_path, gold):
    # Q1 EM 0 F1 0.8 | Q2 EM 1 F1 1 | Q3 EM 0 F1 2/3 | Q4 EM 1 F1 1 ("《三体》" -> "三体") | Q5 unanswered 0 0
    # EM = 2/5 -> 40.0; F1 = (0.8 + 1 + 2/3 + 1 + 0) / 5 = 3.4667 / 5 -> 69.333
    path = write_json(tmp_path / "cmrc2018_predict.json", json.dumps(
        {"Q1": "FIFA世界杯", "Q2": "史蒂夫乔布斯", "Q3": "the U.S. Army's", "Q4": "三体"}, ensure_ascii=False))
    records, problems = CMRC.read_predictions(path)
    score = CMRC.score(gold, records, problems)
    assert score.score == pytest.approx(40.0)
    assert score.metrics == pytest.approx({"em": 40.0, "f1": (0.8 + 1 + 2 / 3 + 1) / 5 * 100})
    assert (score.n_gold, score.n_pred) == (5, 4)
    assert score.problems == ("1 of 5 gold examples have no prediction (counted wrong): 'Q5'",)


def test_repeated_unknown_and_non_text_answers_are_reported(tmp_path, gold):
    # JSON keeps the last of a repeated key, so does the official scorer: Q1 -> the exact answer (EM 1 F1 1).
    # Q2 answer 42 is not text -> unanswered. " Q5 " (spaces) is not the stripped gold id "Q5" -> unknown.
    text = '{"Q1": "错", "Q1": "2018年FIFA世界杯", "Q2": 42, " Q5 ": "刘慈欣", "Q3": "U.S. Army\'s 1st Division"}'
    records, problems = CMRC.read_predictions(write_json(tmp_path / "p.json", text))
    assert [r["id"] for r in records] == ["Q1", "Q1", "Q2", " Q5 ", "Q3"] and problems == []
    score = CMRC.score(gold, records, problems)
    # right: Q1 and Q3 -> EM = F1 = 2/5 -> 40.0
    assert score.metrics == pytest.approx({"em": 40.0, "f1": 40.0})
    assert score.problems == (
        "1 predictions have ids that the gold file does not have (ignored): ' Q5 '",
        "1 ids are predicted more than once (the last prediction counts): 'Q1'",
        "2 of 5 gold examples have no prediction (counted wrong): 'Q4', 'Q5'",
        "1 answers are not strings (counted unanswered): 'Q2': 42",
    )


@pytest.mark.parametrize("text, message", [
    ('{"Q1": "a",', "is not JSON"),
    ('[{"id": "Q1", "answer": "a"}]', "holds a JSON list"),
    ('"FIFA"', "holds a JSON str"),
])
def test_a_prediction_file_that_is_not_one_object_raises(tmp_path, text, message):
    with pytest.raises(TaskDataError, match=message):
        CMRC.read_predictions(write_json(tmp_path / "p.json", text))


def test_written_predictions_are_one_object_and_read_back(tmp_path):
    path = tmp_path / "cmrc2018_predict.json"
    CMRC.write_predictions([{"id": "Q1", "answer": "世界杯"}, {"id": "Q2", "answer": "乔布斯"}], path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"Q1": "世界杯", "Q2": "乔布斯"}
    assert CMRC.read_predictions(path) == ([{"id": "Q1", "answer": "世界杯"}, {"id": "Q2", "answer": "乔布斯"}], [])


@pytest.mark.parametrize("prediction, reason", [
    ({"id": "Q1", "answer": "世界杯"}, None),
    ({"id": "Q1", "answer": ""}, None),
    ("世界杯", "a prediction is a JSON object, not str"),
    ({"id": 1, "answer": "世界杯"}, 'no string "id" (the question id)'),
    ({"id": "Q1", "answer": None}, '"answer" is None, not a string'),
    ({"id": "Q1", "text": "世界杯"}, '"answer" is None, not a string'),
])
def test_check_prediction(prediction, reason):
    assert CMRC.check_prediction(prediction) == reason


@pytest.mark.parametrize("text, message", [
    ("not json", "is not JSON"),
    ('{"data": [{"paragraphs": [{"context": "x"}]}]}', "not in the SQuAD layout"),
    ('{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "a", "question": "q"}, '
     '{"id": "a ", "question": "q"}]}]}]}', "has id 'a' twice"),
])
def test_broken_gold_raises(tmp_path, text, message):
    with pytest.raises(TaskDataError, match=message):
        CMRC.read_gold(write_json(tmp_path / "dev.json", text))


def test_questions_without_answers_read_as_inputs_but_cannot_be_scored(tmp_path):
    question = {"id": "T1", "question": "哪里？"}
    document = {"data": [{"paragraphs": [{"id": "P", "context": "北京", "qas": [question]}]}]}
    path = write_json(tmp_path / "test.json", json.dumps(document, ensure_ascii=False))
    gold = CMRC.read_gold(path)
    assert CMRC.strip_labels(gold) == [{"id": "T1", "context": "北京", "question": "哪里？"}]
    with pytest.raises(TaskDataError, match="no answers"):
        CMRC.score(gold, [{"id": "T1", "answer": "北京"}])
