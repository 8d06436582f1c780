"""What every task module provides, and the small pieces they share.

A task module owns its data format end to end: reading the gold file, stripping labels to make the inputs a
container sees, checking and writing predictions in the official format, reading prediction files back, and
computing its metrics exactly as the official scorer defines them. Task modules import only the standard
library: the probe uses them inside team containers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class TaskDataError(ValueError):
    """A gold or prediction file that cannot be read at all (missing, not UTF-8, not JSON)."""


@dataclass(frozen=True)
class TaskScore:
    """One task's metrics on 0-100 plus everything that was wrong with the predictions."""

    task: str
    score: float                      # the ranking metric, 0-100
    metrics: dict[str, float]         # every metric, 0-100
    n_gold: int
    n_pred: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "score": self.score, "metrics": dict(self.metrics),
                "n_gold": self.n_gold, "n_pred": self.n_pred, "problems": list(self.problems)}


class Task(Protocol):
    """The interface of a task module's TASK object."""

    name: str
    metrics: tuple[str, ...]
    ranking_metric: str
    prediction_keys: frozenset[str]   # the keys a predict() record may carry (the official format's)

    def read_gold(self, path: Path) -> list[dict[str, Any]]:
        """Gold records, each with a normalized "id" (line index where the file has none)."""

    def strip_labels(self, gold: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The inputs a predictor sees: one record per example, with "id", without any label."""

    def check_prediction(self, prediction: Any) -> str | None:
        """Why one record returned by predict() is not in the official format, or None when it is."""

    def write_predictions(self, predictions: list[dict[str, Any]], path: Path) -> None:
        """Write predict() records as the official prediction file."""

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
        """Prediction records (each with "id") from an official prediction file, and parse problems."""

    def score(self, gold: list[dict[str, Any]], predictions: list[dict[str, Any]],
              problems: list[str] | None = None) -> TaskScore:
        """Metrics against gold; never raises on bad predictions, reports them instead."""


def read_text(path: Path, what: str) -> str:
    """The whole file as UTF-8 text (a leading BOM dropped), or a TaskDataError saying what to fix."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TaskDataError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{what} file {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from exc


def read_json_lines(path: Path, what: str) -> tuple[list[Any], list[str]]:
    """Parse a JSON-lines file; malformed lines become problems naming their line number.

    A last line without a trailing newline is a normal line (real CLUE files end that way); blank lines are
    skipped. Raises TaskDataError only when the file cannot be read at all.
    """
    records: list[Any] = []
    problems: list[str] = []
    for number, line in enumerate(read_text(path, what).split("\n"), start=1):  # not splitlines(): U+2028 is text
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg})")
    return records, problems


def write_json_lines(records: list[Any], path: Path) -> None:
    """UTF-8 JSON lines with Chinese kept readable, one record per line."""
    with Path(path).open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def id_key(value: Any) -> str | None:
    """The key two ids are matched on, or None when `value` cannot be an id.

    Integers and strings compare by their text, so a prediction {"id": "7"} answers gold example 7: teams
    write ids both ways and no official format tells them apart. Booleans, floats and null are not ids.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return str(value)


def require_unique_ids(records: list[dict[str, Any]], path: Path) -> None:
    """Raise TaskDataError when a gold file repeats an id: predictions could not be matched to it."""
    seen: set[str | None] = set()
    for record in records:
        key = id_key(record["id"])
        if key in seen:
            raise TaskDataError(f"gold file {path} has id {record['id']!r} twice; ids must be unique")
        seen.add(key)


def summarize(what: str, items: list[str], limit: int = 5) -> str:
    """One problem line for many instances: the count, `what`, and the first few of them."""
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{len(items)} {what}: {shown}"


def match_predictions(gold: list[dict[str, Any]], predictions: list[Any]
                      ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each gold example's prediction, keyed by id_key, and what was wrong with the matching.

    Reported, never raised: records that are not objects with an id, ids the gold file does not have (ignored),
    repeated ids (the last one counts, as a dict built from the file would keep it) and gold examples with
    no prediction (the task counts them wrong).
    """
    gold_keys = {id_key(example["id"]) for example in gold}
    found: dict[str, dict[str, Any]] = {}
    no_id, unknown, repeated = [], [], []
    for position, record in enumerate(predictions):
        key = id_key(record.get("id")) if isinstance(record, dict) else None
        if key is None:
            no_id.append(f"#{position}")
        elif key not in gold_keys:
            unknown.append(repr(record["id"]))
        else:
            if key in found:
                repeated.append(repr(record["id"]))
            found[key] = record
    problems = []
    if no_id:
        problems.append(summarize('predictions are not JSON objects with an integer or string "id" (ignored)',
                                  no_id))
    if unknown:
        problems.append(summarize("predictions have ids that the gold file does not have (ignored)", unknown))
    if repeated:
        problems.append(summarize("ids are predicted more than once (the last prediction counts)", repeated))
    missing = [repr(example["id"]) for example in gold if id_key(example["id"]) not in found]
    if missing:
        problems.append(summarize(f"of {len(gold)} gold examples have no prediction (counted wrong)", missing))
    return found, problems


def read_gold_json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines gold file; any malformed line is a TaskDataError (gold must be clean)."""
    records, problems = read_json_lines(path, "gold")
    if problems:
        raise TaskDataError(f"gold file {path}: {problems[0]}; use the file as the benchmark distributes it")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise TaskDataError(f"gold file {path}: record {number} is not a JSON object")
    return records
