"""CLUENER2020: fine-grained named entities in 10 types, scored by the macro average of per-type F1.

Gold lines are {"text", "label": {TYPE: {ENTITY_TEXT: [[start, end], ...]}}} (end inclusive) and carry no id:
an example's id is its 0-based line index. A prediction line has the same "label" shape, with or without an
"id"; a line without one answers the example on the same line (line i is id i), as the official scorer
pairs the files line by line.

The metric is the official score.py (CLUEbenchmark/CLUENER2020): per example and per type it compares the
predicted entity TEXTS (the dict keys; spans are never looked at) with the gold entity texts, adds up over
all examples, per type, TP (predicted texts in gold), FP (predicted texts not in gold) and FN (gold texts
not predicted), and averages the 10 per-type F1. Because texts are dict keys, each counts once per example
and type: a text that occurs twice in a sentence is one entity. Where the official code has no answer we
choose, and say so:
- it divides by zero (crashes) when a type has no predictions or no true positives; we then take
  precision, recall and F1 as 0, the convention of CLUE's own ner_metrics.py. A type with neither gold nor
  predicted entities therefore scores 0 (the real dev and test sets have all 10 types).
- it zips the files, so a shorter prediction file silently drops the last gold lines; we count every gold
  example, a missing one as predicting nothing (its gold entities are FN), and report it.
- unknown entity types are ignored there (it only looks up the 10 types); we ignore them too and report
  them. A type whose value is not an {entity: spans} object counts as predicting nothing of that type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.tasks.base import (TaskDataError, TaskScore, id_key, match_predictions, read_gold_json_lines,
                                read_text, require_unique_ids, summarize, write_json_lines)

TYPES = ("address", "book", "company", "game", "government", "movie", "name", "organization", "position",
         "scene")


def entity_texts(label: Any) -> tuple[dict[str, set[str]], list[str]]:
    """The predicted entity texts of each of the 10 types, and what in `label` was not usable."""
    texts: dict[str, set[str]] = {entity_type: set() for entity_type in TYPES}
    if not isinstance(label, dict):
        return texts, [f'"label" is {type(label).__name__}, not an object']
    faults = []
    for entity_type, entities in label.items():
        if entity_type not in TYPES:
            faults.append(f"unknown entity type {entity_type!r}")
        elif not isinstance(entities, dict):
            faults.append(f"{entity_type!r} is {type(entities).__name__}, not an {{entity: spans}} object")
        else:
            texts[entity_type] = {text for text in entities if isinstance(text, str)}
    return texts, faults


def span_fault(entity: Any, spans: Any) -> str | None:
    """Why `spans` is not a list of [start, end] integer pairs (spans are not scored, but are the format)."""
    if not isinstance(entity, str) or not entity:
        return f"entity {entity!r} is not a non-empty string"
    if not isinstance(spans, list) or not spans:
        return f"spans of {entity!r} are not a non-empty list of [start, end]"
    for span in spans:
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in span)
                or not 0 <= span[0] <= span[1]):
            return f"span {span!r} of {entity!r} is not [start, end] with 0 <= start <= end"
    return None


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 on 0-1 with the official arithmetic; 0 where the official code would divide by zero."""
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


class Cluener2020Task:
    name = "cluener2020"
    metrics = ("macro_f1",) + tuple(f"f1_{entity_type}" for entity_type in TYPES)
    ranking_metric = "macro_f1"
    prediction_keys = frozenset({"id", "label"})

    def read_gold(self, path: Path) -> list[dict[str, Any]]:
        """Gold records with "id" (the line index where the line has none); test files without labels too."""
        gold = []
        for index, record in enumerate(read_gold_json_lines(path)):
            if not isinstance(record.get("text"), str):
                raise TaskDataError(f"gold file {path}: record {index + 1} has no \"text\"; is this CLUENER2020?")
            if "label" in record:
                _, faults = entity_texts(record["label"])
                if faults:
                    raise TaskDataError(f"gold file {path}: record {index + 1}: {faults[0]}")
            gold.append({**record, "id": record.get("id", index)})
        require_unique_ids(gold, path)
        return gold

    def strip_labels(self, gold: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": example["id"], "text": example["text"]} for example in gold]

    def check_prediction(self, prediction: Any) -> str | None:
        if not isinstance(prediction, dict):
            return f"a prediction is a JSON object, not {type(prediction).__name__}"
        if id_key(prediction.get("id")) is None:
            return 'no integer or string "id"'
        if "label" not in prediction:
            return 'no "label" (use {} when no entity is found)'
        _, faults = entity_texts(prediction["label"])
        if faults:
            return faults[0]
        for entities in prediction["label"].values():
            for entity, spans in entities.items():
                fault = span_fault(entity, spans)
                if fault:
                    return fault
        return None

    def write_predictions(self, predictions: list[dict[str, Any]], path: Path) -> None:
        """One {"id", "label"} line per prediction."""
        write_json_lines([{"id": p["id"], "label": p["label"]} for p in predictions], path)

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
        """Prediction records; a line without "id" gets its position among the non-blank lines.

        A malformed line still takes its position, so one bad line loses one example instead of shifting
        every later line onto the wrong sentence.
        """
        records: list[dict[str, Any]] = []
        problems: list[str] = []
        position = 0
        for number, line in enumerate(read_text(path, "prediction").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not valid JSON ({exc.msg}); example {position} has no prediction")
            else:
                if isinstance(record, dict) and "id" not in record:
                    record = {"id": position, **record}
                records.append(record)
            position += 1
        return records, problems

    def score(self, gold: list[dict[str, Any]], predictions: list[dict[str, Any]],
              problems: list[str] | None = None) -> TaskScore:
        """Macro F1 over the 10 types, per-type counts summed over every gold example."""
        found, match_problems = match_predictions(gold, predictions)
        counts = {entity_type: [0, 0, 0] for entity_type in TYPES}   # TP, FP, FN
        faulty = []
        for example in gold:
            if "label" not in example:
                raise TaskDataError(f"gold example {example['id']!r} has no label; score against labelled data")
            gold_texts, _ = entity_texts(example["label"])
            prediction = found.get(id_key(example["id"]))
            if prediction is not None and "label" not in prediction:
                predicted, faults = entity_texts({})[0], ['no "label"']
            else:
                predicted, faults = entity_texts(prediction["label"] if prediction else {})
            faulty += [f"id {example['id']!r}: {fault}" for fault in faults]
            for entity_type, count in counts.items():
                count[0] += len(predicted[entity_type] & gold_texts[entity_type])
                count[1] += len(predicted[entity_type] - gold_texts[entity_type])
                count[2] += len(gold_texts[entity_type] - predicted[entity_type])
        metrics = {f"f1_{t}": 100.0 * f1_from_counts(*counts[t]) for t in TYPES}
        macro = 100.0 * sum(f1_from_counts(*counts[t]) for t in TYPES) / len(TYPES)
        all_problems = list(problems or [])
        if len(predictions) != len(gold):
            all_problems.append(f"{len(predictions)} predictions for {len(gold)} gold examples "
                                f"({'fewer' if len(predictions) < len(gold) else 'more'} lines than the gold file)")
        all_problems += match_problems
        if faulty:
            all_problems.append(summarize("faults in predicted labels (that part ignored)", faulty))
        return TaskScore(self.name, macro, {"macro_f1": macro, **metrics}, len(gold), len(predictions),
                         tuple(all_problems))


TASK = Cluener2020Task()
