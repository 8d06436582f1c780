"""The host side, vectorized with numpy: characters to token ids, rows laid out for the model, and the
model's outputs decoded, a whole batch per numpy call (no per-example Python but reading the examples'
fields and writing the predictions).

The model reads one token per character (BERT-base-chinese's WordPiece does the same for every CJK
character), so tokenizing is a table lookup: the batch's texts joined, read as UTF-32 code points, and
mapped through a code point -> id table. Token i of a text is its character i, which makes NER labels,
WSC spans and CMRC answer offsets plain index arithmetic.

`vectorized=False` in the functions that take it runs the same computation with per-example Python (dict
look-ups per character, BIO decoding per text), so that bench/example_teams.py can measure what the
vectorization buys. The answers are identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAD, UNK, CLS, SEP = 0, 1, 2, 3
NER_TYPES = ("address", "book", "company", "game", "government", "movie", "name", "organization",
             "position", "scene")
# "O" plus B-/I- for each of the 10 CLUENER2020 types: 21 labels; B-X is 1 + 2k, I-X is 2 + 2k.
NER_LABELS = ("O",) + tuple(f"{prefix}-{kind}" for kind in NER_TYPES for prefix in ("B", "I"))
MAX_ANSWER_CHARS = 30       # cmrc2018: longest answer considered, in context characters
MAX_QUESTION_CHARS = 64     # cmrc2018: longer questions are clipped (CLUE's baseline max_query_length)


class CharTable:
    """Code point -> token id: an int32 array over the Basic Multilingual Plane (65,536 entries, built once
    at load), and the few vocabulary characters beyond it (emoji) in a sorted pair of small arrays."""

    def __init__(self, vocab_path: Path):
        tokens = vocab_path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
        self.ids = {t: i for i, t in enumerate(tokens) if len(t) == 1}
        for token, i in list(self.ids.items()):        # upper case reads as its lower-case token
            upper = token.upper()
            if len(upper) == 1 and upper not in self.ids:
                self.ids[upper] = i
        codes = np.fromiter(map(ord, self.ids), np.int64)
        ids = np.fromiter(self.ids.values(), np.int64)
        plane = codes < 0xFFFF                            # U+FFFF is no character: the UNK slot for the rest
        self.table = np.full(0x10000, UNK, dtype=np.int32)
        self.table[codes[plane]] = ids[plane]
        order = np.argsort(codes[~plane])
        self.astral_codes, self.astral_ids = codes[~plane][order], ids[~plane][order]
        self.size = len(tokens)

    def lookup(self, texts: list[str], vectorized: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids of all texts concatenated, each text's start in them, each text's length in characters)."""
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        starts = np.cumsum(lengths) - lengths
        if vectorized:
            codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            flat = self.table[np.minimum(codes, 0xFFFF)].astype(np.int64)
            astral = np.flatnonzero(codes > 0xFFFF)
            if len(astral) and len(self.astral_codes):
                at = np.minimum(np.searchsorted(self.astral_codes, codes[astral]), len(self.astral_codes) - 1)
                flat[astral] = np.where(self.astral_codes[at] == codes[astral], self.astral_ids[at], UNK)
        else:
            flat = np.array([self.ids.get(c, UNK) for text in texts for c in text], dtype=np.int64)
        return np.append(flat, PAD), starts, lengths       # one PAD so that an empty batch can be indexed


def layout(pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], width: int, rows: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rows `[CLS] piece_1 [SEP] piece_2 [SEP] ...` padded to [rows, width]: (ids, segment of each token).

    A piece is (flat ids, start of each row's text in them, length of each row's text); the first
    len(starts) rows are filled, later rows (bucket padding) are `[CLS]` alone. Segment k covers piece k and
    its [SEP]. Lengths must already fit: sum(lengths) + pieces + 1 <= width.
    """
    n = len(pieces[0][1])
    ids = np.full((rows, width), PAD, dtype=np.int64)
    segments = np.zeros((rows, width), dtype=np.int64)
    ids[:, 0] = CLS
    column = np.arange(width)[None, :]
    begin = np.ones((n, 1), dtype=np.int64)
    for segment, (flat, starts, lengths) in enumerate(pieces):
        offset = column - begin
        inside = (offset >= 0) & (offset < lengths[:, None])
        ids[:n] = np.where(inside, flat[np.where(inside, starts[:, None] + offset, -1)], ids[:n])
        separator = offset == lengths[:, None]
        ids[:n][separator] = SEP
        segments[:n][inside | separator] = segment
        begin = begin + lengths[:, None] + 1
    return ids, segments


def pair_lengths(first: np.ndarray, second: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """Both texts cut so that they fit `room` tokens together, the longer one first (longest-first)."""
    keep_first = np.minimum(first, np.maximum(room - second, room // 2))
    return keep_first, np.minimum(second, room - keep_first)


def cmrc_windows(question_lengths: np.ndarray, context_lengths: np.ndarray, width: int, doc_stride: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over each context, `[CLS] question [SEP] context window [SEP]` fitting `width` tokens and
    overlapping by up to doc_stride characters: (example of each window, its first context character, its
    length in characters). Every example has at least one window."""
    room = width - question_lengths - 3
    step = room - np.minimum(doc_stride, room // 2)
    count = 1 + -(-np.maximum(context_lengths - room, 0) // step)
    example = np.repeat(np.arange(len(count)), count)
    index = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    first = index * step[example]
    return example, first, np.minimum(room[example], context_lengths[example] - first)


def best_windows(example: np.ndarray, order: np.ndarray, valid: np.ndarray, n_examples: int) -> np.ndarray:
    """Per example, its best window (the first of its windows in `order`, best score first), or -1 when
    none of its windows holds a valid span."""
    order = order[order < len(example)]                 # bucket padding rows out
    seen, first = np.unique(example[order], return_index=True)
    best = np.full(n_examples, -1, dtype=np.int64)
    best[seen] = order[first]
    best[best >= 0] = np.where(valid[best[best >= 0]], best[best >= 0], -1)
    return best


def bio_entities(labels: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entities in per-character label ids [texts, chars] (characters past a text's length are "O"), as
    CLUE's get_entity_bio reads BIO: B-X starts an entity, each following I-X extends it, anything else ends
    it (a stray I-X is dropped). Returns (text, first char, last char, type index) per entity, in order."""
    labels = np.where(np.arange(labels.shape[1])[None, :] < lengths[:, None], labels, 0)
    labels = np.concatenate([labels, np.zeros((len(labels), 1), labels.dtype)], axis=1).ravel()
    is_inside = (labels > 0) & (labels % 2 == 0)
    extends = np.zeros(len(labels), dtype=bool)        # I-X right after B-X or I-X of the same type
    extends[1:] = is_inside[1:] & (labels[:-1] > 0) & ((labels[:-1] - 1) // 2 == (labels[1:] - 1) // 2)
    starts = np.flatnonzero((labels % 2 == 1))
    breaks = np.flatnonzero(~extends)
    ends = breaks[np.searchsorted(breaks, starts, side="right")] - 1
    row, width = np.divmod(starts, labels.size // max(len(lengths), 1))
    return row, width, ends - starts + width, (labels[starts] - 1) // 2


def entity_dicts(texts: list[str], rows, firsts, lasts, kinds) -> list[dict]:
    """The official format, {type: {entity text: [[first, last], ...]}} per text, from bio_entities."""
    out: list[dict] = [{} for _ in texts]
    for row, first, last, kind in zip(rows.tolist(), firsts.tolist(), lasts.tolist(), kinds.tolist()):
        out[row].setdefault(NER_TYPES[kind], {}).setdefault(texts[row][first:last + 1], []).append([first, last])
    return out


def decode_bio(text: str, labels: list[str]) -> dict[str, dict[str, list[list[int]]]]:
    """The per-example reference of bio_entities + entity_dicts (a copy of the reference's, used when
    vectorized=False and by the tests): one text's entities from its label strings."""
    entities: dict[str, dict[str, list[list[int]]]] = {}
    start, kind = None, ""
    for i, label in enumerate([*labels, "O"]):
        if start is not None and label != f"I-{kind}":
            entities.setdefault(kind, {}).setdefault(text[start:i], []).append([start, i - 1])
            start = None
        if label.startswith("B-"):
            start, kind = i, label[2:]
    return entities


def locate_span(text: str, span_text: object, index: object) -> tuple[int, int] | None:
    """(start, end_exclusive) of `span_text` in `text`: at `index` when it is there, else the nearest
    occurrence, else None. WSC inputs come from outside, so a wrong index must not break the marking.
    (A copy of the reference's.)"""
    if not isinstance(span_text, str) or not span_text:
        return None
    if isinstance(index, int) and text[index:index + len(span_text)] == span_text:
        return index, index + len(span_text)
    found = [i for i in range(len(text)) if text.startswith(span_text, i)]
    if not found:
        return None
    start = min(found, key=lambda i: abs(i - index)) if isinstance(index, int) else found[0]
    return start, start + len(span_text)
