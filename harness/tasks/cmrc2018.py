"""CMRC2018: span-extraction reading comprehension in Chinese, scored by EM (ranking) and F1.

The gold file is one JSON document in SQuAD layout, data[].paragraphs[].{id, context, qas[].{id, question,
answers[].{text, answer_start}}}; we flatten it to one record per question. The official prediction file is
one JSON object {question_id: answer_text}.

The metric is the official cmrc2018_evaluate.py (ymcui/cmrc2018, squad-style-data), a Python 2 script:
- both texts are lowercased and stripped; PUNCTUATION (its list) is removed;
- EM: the prediction equals some gold answer after that;
- F1: both texts are cut into a mixed segmentation (each CJK character U+4E00-U+9FA5 is a token, runs of
  other characters are word-tokenized by NLTK's word_tokenize, here `treebank_words`); precision and recall
  come from the longest common contiguous run of tokens; the best gold answer counts;
- both are averaged over every gold question, an unanswered one scoring 0.
Choices where the official script is silent or version-dependent:
- its list holds "……" as one two-character item, which a one-character comparison never matches: a single
  "…" is therefore NOT removed, and we keep it too;
- removing punctuation does not end a run, so "ab-cd" is the single word "abcd", as in the official code;
- word_tokenize first splits sentences with Punkt (data we cannot ship); a run of non-CJK characters inside
  an answer is taken as one sentence. We follow NLTK's TreebankWordTokenizer as it runs on Python 3;
- a non-string answer (the script would str() it) and a gold question without answers (it would crash) are
  reported: the first counts as unanswered, the second is a TaskDataError.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.tasks.base import (TaskDataError, TaskScore, id_key, match_predictions, read_text,
                                require_unique_ids, summarize)

PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")


# -- NLTK's Treebank word tokenizer, as ordered substitutions ------------------------------------------------
# Each step pads a token with spaces; the text is finally split on whitespace.
_TREEBANK_STEPS = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r'^"', "``"),                                   # opening double quotes become ``
    (r"(``)", r" \1 "),
    (r"([ (\[{<])(\"|'')", r"\1 `` "),
    (r"([:,])([^\d])", r" \1 \2"),                   # : and , split off unless a digit follows (3,000)
    (r"([:,])$", r" \1 "),
    (r"\.\.\.", " ... "),
    (r"[;@#$%&]", r" \g<0> "),
    (r"([^.])(\.)([\])}>\"']*)\s*$", r"\1 \2\3 "),   # only a period that ends the text splits off
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[\][(){}<>]", r" \g<0> "),                    # brackets are always tokens
    (r"--", " -- "),
)]
# Applied to the text padded with one space on each side: closing quotes and clitics ('s, n't, ...).
_TREEBANK_END_STEPS = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"''", " '' "),
    (r'"', " '' "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
)]
# Words Treebank cuts in two: cannot -> can not, gonna -> gon na, 'tis -> 't is, ...
_TREEBANK_SPLIT_WORDS = [re.compile(pattern, re.IGNORECASE) for pattern in (
    *(rf"\b({head})({tail})\b" for head, tail in (
        ("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"),
        ("more", "'n"))),
    r"\b(wan)(na)(?=\s)", r" ('t)(is)\b", r" ('t)(was)\b",
)]


def treebank_words(text: str) -> list[str]:
    """Words of `text` as NLTK's TreebankWordTokenizer cuts them ("u.s. army's" -> u.s. army 's)."""
    for pattern, replacement in _TREEBANK_STEPS:
        text = pattern.sub(replacement, text)
    text = f" {text} "
    for pattern, replacement in _TREEBANK_END_STEPS:
        text = pattern.sub(replacement, text)
    for pattern in _TREEBANK_SPLIT_WORDS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


# -- the official normalization and metrics -------------------------------------------------------------------
def is_cjk(char: str) -> bool:
    """The official script's CJK test: the CJK Unified Ideographs block U+4E00-U+9FA5 only."""
    return "\u4e00" <= char <= "\u9fa5"


def remove_punctuation(text: str) -> str:
    """Lowercased, stripped, PUNCTUATION removed: the form EM compares."""
    return "".join(char for char in text.lower().strip() if char not in PUNCTUATION)


def mixed_segmentation(text: str) -> list[str]:
    """F1 tokens: each CJK character alone, runs of other characters as Treebank words, punctuation gone."""
    tokens: list[str] = []
    run = ""
    for char in text.lower().strip():
        if char in PUNCTUATION:
            continue                       # removed without ending the run, as the official code does
        if is_cjk(char):
            if run:
                tokens += treebank_words(run)
                run = ""
            tokens.append(char)
        else:
            run += char
    return tokens + treebank_words(run) if run else tokens


def longest_common_run(first: list[str], second: list[str]) -> int:
    """Length of the longest contiguous token sequence found in both lists.

    The official dynamic programme over all (i, j) pairs, visiting only the pairs whose tokens are equal:
    answers run to hundreds of tokens, and the full table made scoring a dev set take seconds.
    """
    where: dict[str, list[int]] = {}
    for j, token in enumerate(second):
        where.setdefault(token, []).append(j)
    best = 0
    previous: dict[int, int] = {}          # j -> length of the common run ending at (i - 1, j)
    for token in first:
        current = {j: previous.get(j - 1, 0) + 1 for j in where.get(token, ())}
        best = max(best, *current.values()) if current else best
        previous = current
    return best


def exact_match(answers: list[str], prediction: str) -> float:
    """1.0 when the prediction equals any gold answer once punctuation is removed."""
    return float(any(remove_punctuation(answer) == remove_punctuation(prediction) for answer in answers))


def best_f1(answers: list[str], prediction: str) -> float:
    """The highest token F1 (0-1) of the prediction against any gold answer."""
    predicted = mixed_segmentation(prediction)
    scores = [0.0]
    for answer in answers:
        gold = mixed_segmentation(answer)
        common = longest_common_run(gold, predicted)
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            scores.append(2 * precision * recall / (precision + recall))
    return max(scores)


class Cmrc2018Task:
    name = "cmrc2018"
    metrics = ("em", "f1")
    ranking_metric = "em"
    prediction_keys = frozenset({"id", "answer"})

    def read_gold(self, path: Path) -> list[dict[str, Any]]:
        """One record per question: {"id", "context", "question", "answers": [texts], "paragraph_id"}.

        Ids are stripped as the official script strips them. A file without answers (test inputs) is read
        with "answers" absent.
        """
        try:
            document = json.loads(read_text(path, "gold"))
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"gold file {path} is not JSON ({exc.msg}, line {exc.lineno})") from exc
        gold = []
        try:
            for article in document["data"]:
                for paragraph in article["paragraphs"]:
                    for question in paragraph["qas"]:
                        record = {"id": question["id"].strip(), "context": paragraph["context"],
                                  "question": question["question"], "paragraph_id": paragraph.get("id")}
                        if "answers" in question:
                            record["answers"] = [answer["text"] for answer in question["answers"]]
                        gold.append(record)
        except (KeyError, TypeError, AttributeError) as exc:
            raise TaskDataError(f"gold file {path} is not in the SQuAD layout data[].paragraphs[].qas[] "
                                f"({type(exc).__name__}: {exc})") from exc
        require_unique_ids(gold, path)
        return gold

    def strip_labels(self, gold: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": q["id"], "context": q["context"], "question": q["question"]} for q in gold]

    def check_prediction(self, prediction: Any) -> str | None:
        if not isinstance(prediction, dict):
            return f"a prediction is a JSON object, not {type(prediction).__name__}"
        if not isinstance(prediction.get("id"), str):
            return 'no string "id" (the question id)'
        if not isinstance(prediction.get("answer"), str):
            return f'"answer" is {prediction.get("answer")!r}, not a string'
        return None

    def write_predictions(self, predictions: list[dict[str, Any]], path: Path) -> None:
        """The official file: one JSON object {question_id: answer_text}."""
        answers = {p["id"]: p["answer"] for p in predictions}
        Path(path).write_text(json.dumps(answers, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
        """{"id", "answer"} records from the official object, in file order (repeated ids included)."""
        text = read_text(path, "prediction")
        try:
            pairs = json.loads(text, object_pairs_hook=_Pairs)
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"prediction file {path} is not JSON ({exc.msg}, line {exc.lineno}); it must "
                                "be one JSON object {question_id: answer_text}") from exc
        if not isinstance(pairs, _Pairs):
            raise TaskDataError(f"prediction file {path} holds a JSON {type(pairs).__name__}; it must be one "
                                "JSON object {question_id: answer_text}")
        return [{"id": key, "answer": dict(value) if isinstance(value, _Pairs) else value}
                for key, value in pairs], []

    def score(self, gold: list[dict[str, Any]], predictions: list[dict[str, Any]],
              problems: list[str] | None = None) -> TaskScore:
        """EM and F1 averaged over every gold question; unanswered and non-string answers score 0."""
        found, match_problems = match_predictions(gold, predictions)
        em = f1 = 0.0
        not_text = []
        for question in gold:
            if not question.get("answers"):
                raise TaskDataError(f"gold question {question['id']!r} has no answers; score against labelled data")
            prediction = found.get(id_key(question["id"]))
            if prediction is None:
                continue
            answer = prediction.get("answer")
            if not isinstance(answer, str):
                not_text.append(f"{question['id']!r}: {answer!r}")
                continue
            em += exact_match(question["answers"], answer)
            f1 += best_f1(question["answers"], answer)
        all_problems = list(problems or []) + match_problems
        if not_text:
            all_problems.append(summarize("answers are not strings (counted unanswered)", not_text))
        total = len(gold)
        metrics = {"em": 100.0 * em / total if total else 0.0, "f1": 100.0 * f1 / total if total else 0.0}
        return TaskScore(self.name, metrics["em"], metrics, total, len(predictions), tuple(all_problems))


class _Pairs(list):
    """A JSON object kept as its (key, value) pairs, so repeated question ids are seen, not silently merged."""


TASK = Cmrc2018Task()
