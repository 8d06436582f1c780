"""Model inputs and prediction decoding for the CLUE tasks: a copy of the reference's reference_inputs.py,
with best_spans in numpy (this team runs on onnxruntime and needs no torch at inference).

A team folder must be self-contained, so each team carries its own copy of these helpers.

Kept apart from the predictor so that each rule (how WSC spans are marked, how BIO tags become entities,
how an answer span is chosen) reads on its own and is tested on its own.
"""

from __future__ import annotations

import numpy as np

NER_TYPES = ("address", "book", "company", "game", "government", "movie", "name", "organization",
             "position", "scene")
# "O" plus B-/I- for each of the 10 CLUENER2020 types: 21 labels.
NER_LABELS = ("O",) + tuple(f"{prefix}-{kind}" for kind in NER_TYPES for prefix in ("B", "I"))
MAX_ANSWER_CHARS = 30       # cmrc2018: longest answer considered, in context characters
MAX_QUESTION_TOKENS = 64    # cmrc2018: longer questions are clipped (CLUE's baseline max_query_length)


def locate_span(text: str, span_text: object, index: object) -> tuple[int, int] | None:
    """(start, end_exclusive) of `span_text` in `text`: at `index` when it is there, else the nearest
    occurrence, else None. WSC inputs come from outside, so a wrong index must not break the marking."""
    if not isinstance(span_text, str) or not span_text:
        return None
    if isinstance(index, int) and text[index:index + len(span_text)] == span_text:
        return index, index + len(span_text)
    found = [i for i in range(len(text)) if text.startswith(span_text, i)]
    if not found:
        return None
    start = min(found, key=lambda i: abs(i - index)) if isinstance(index, int) else found[0]
    return start, start + len(span_text)


def mark_wsc_spans(text: str, target: dict) -> str:
    """The WSC text with the candidate (span1) wrapped in _ _ and the pronoun (span2) in [ ], the marking
    CLUE's CLUEWSC2020 BERT baseline used: one sequence, so the classifier sees which pair it judges."""
    marks = []  # (position, closes_before_opens_order, mark)
    for key, opening, closing in (("span1", "_", "_"), ("span2", "[", "]")):
        span = locate_span(text, target.get(f"{key}_text"), target.get(f"{key}_index"))
        if span is not None:
            marks += [(span[0], 1, opening), (span[1], 0, closing)]
    # Insert right to left so earlier positions stay valid; at one position a closing mark comes first.
    for position, _, mark in sorted(marks, reverse=True):
        text = text[:position] + mark + text[position:]
    return text


def char_labels(word_ids: list[int | None], token_labels: list[int], n_chars: int) -> list[str]:
    """One BIO label per character from per-token labels, where the text was split into characters and
    `word_ids` maps each token to its character. Characters without a token (whitespace, truncated tail)
    are "O"; a character split into several tokens takes its first token's label."""
    labels: list[str | None] = [None] * n_chars
    for word, label in zip(word_ids, token_labels):
        if word is not None and word < n_chars and labels[word] is None:
            labels[word] = NER_LABELS[label]
    return [label or "O" for label in labels]


def decode_bio(text: str, labels: list[str]) -> dict[str, dict[str, list[list[int]]]]:
    """Entities as {type: {entity_text: [[start, end_inclusive], ...]}}, following CLUE's get_entity_bio:
    B-X starts an entity, I-X extends an entity of type X, anything else ends it (a stray I-X is dropped)."""
    entities: dict[str, dict[str, list[list[int]]]] = {}
    start, kind = None, ""
    for i, label in enumerate([*labels, "O"]):
        if start is not None and label != f"I-{kind}":
            entities.setdefault(kind, {}).setdefault(text[start:i], []).append([start, i - 1])
            start = None
        if label.startswith("B-"):
            start, kind = i, label[2:]
    return entities


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, context_mask: np.ndarray,
               offsets: np.ndarray, max_chars: int = MAX_ANSWER_CHARS
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: the score, start token and end token of the best answer span.

    A span is valid when both ends are context tokens, start <= end, and it covers at most `max_chars`
    characters of the context. Windows with no valid span score -inf. Shapes: logits and mask [W, L],
    offsets [W, L, 2] (character start, end of each token); results [W].
    """
    length = offsets[..., 1][:, None, :] - offsets[..., 0][:, :, None]            # [W, start, end]
    ordered = np.triu(np.ones(length.shape[-2:], dtype=bool))
    valid = (context_mask[:, :, None] & context_mask[:, None, :] & ordered
             & (length > 0) & (length <= max_chars))
    scores = np.where(valid, start_logits[:, :, None] + end_logits[:, None, :], -np.inf)
    flat = scores.reshape(len(scores), -1).argmax(axis=1)
    n_tokens = start_logits.shape[1]
    return scores.reshape(len(scores), -1)[np.arange(len(scores)), flat], flat // n_tokens, flat % n_tokens
