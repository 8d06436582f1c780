"""Sentence-level classification tasks scored by accuracy (CLUEWSC2020, CSL).

Both tasks pair one gold label per example id with one predicted label; the score is the share of gold
examples whose prediction carries exactly the gold label string, on 0-100. A gold example without a valid
prediction (missing, or a label outside the task's label set) counts wrong, so a partial file cannot score
higher than a complete one; everything wrong with the predictions is reported, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tasks.base import (TaskDataError, TaskScore, id_key, match_predictions, read_gold_json_lines,
                                read_json_lines, require_unique_ids, summarize, write_json_lines)


@dataclass(frozen=True)
class ClassificationTask:
    """A task whose gold lines carry an id field and a "label" from a fixed set of strings."""

    name: str
    id_field: str                     # the gold field holding the example id ("idx" for CLUEWSC2020)
    labels: tuple[str, ...]           # the official label strings
    metrics: tuple[str, ...] = ("accuracy",)
    ranking_metric: str = "accuracy"
    prediction_keys: frozenset[str] = frozenset({"id", "label"})

    def read_gold(self, path: Path) -> list[dict[str, Any]]:
        """Gold records with "id" copied from the id field; a file without labels (test inputs) is allowed."""
        gold = []
        for number, record in enumerate(read_gold_json_lines(path), start=1):
            if id_key(record.get(self.id_field)) is None:
                raise TaskDataError(f"gold file {path}: record {number} has no integer or string "
                                    f"{self.id_field!r}; is this a {self.name} file?")
            if "label" in record and record["label"] not in self.labels:
                raise TaskDataError(f"gold file {path}: record {number} has label {record['label']!r}; "
                                    f"{self.name} labels are {self._label_list()}")
            gold.append({**record, "id": record[self.id_field]})
        require_unique_ids(gold, path)
        return gold

    def strip_labels(self, gold: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every gold field except "label", with the normalized "id"."""
        return [{key: value for key, value in example.items() if key != "label"} for example in gold]

    def check_prediction(self, prediction: Any) -> str | None:
        if not isinstance(prediction, dict):
            return f"a prediction is a JSON object, not {type(prediction).__name__}"
        if id_key(prediction.get("id")) is None:
            return 'no integer or string "id"'
        if prediction.get("label") not in self.labels:
            return f'"label" is {prediction.get("label")!r}; expected one of {self._label_list()}'
        return None

    def write_predictions(self, predictions: list[dict[str, Any]], path: Path) -> None:
        """One {"id", "label"} line per prediction, the competition's submission format."""
        write_json_lines([{"id": p["id"], "label": p["label"]} for p in predictions], path)

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
        return read_json_lines(path, "prediction")

    def score(self, gold: list[dict[str, Any]], predictions: list[dict[str, Any]],
              problems: list[str] | None = None) -> TaskScore:
        """Accuracy over every gold example; missing or invalid predictions count wrong."""
        found, match_problems = match_predictions(gold, predictions)
        correct, invalid = 0, []
        for example in gold:
            if "label" not in example:
                raise TaskDataError(f"gold example {example['id']!r} has no label; score against labelled data")
            prediction = found.get(id_key(example["id"]))
            if prediction is None:
                continue
            label = prediction.get("label")
            if label not in self.labels:
                invalid.append(f"id {example['id']!r}: {label!r}")
            elif label == example["label"]:
                correct += 1
        all_problems = list(problems or []) + match_problems
        if invalid:
            all_problems.append(summarize(f"predictions have a label that is not one of {self._label_list()} "
                                          "(counted wrong)", invalid))
        accuracy = 100.0 * correct / len(gold) if gold else 0.0
        return TaskScore(self.name, accuracy, {"accuracy": accuracy}, len(gold), len(predictions),
                         tuple(all_problems))

    def _label_list(self) -> str:
        return " or ".join(repr(label) for label in self.labels)
