"""Every input a worker sees in a task: the real examples under opaque ids, and synthetic inputs of their shapes.

Two things must not reach a team before a real input's first sight: its content, and any way to tell it
apart from the synthetic inputs timed beside it (warm-up, the fresh inputs of later rounds).

- Content. Warming up on the real inputs, or on any transform of them, would let a team compute its answers
  before its first timed call: a character bijection keeps which keywords appear in an abstract, lengths and
  digits, and ids that map back say which answer belongs where. So a synthetic input keeps only the real
  one's shape: every string the same length, every list the same size, every key the same. Its characters
  are drawn from a character bigram model of the task's own inputs (each character given the one before it,
  with the frequencies the real texts have), so its characters, their frequencies and their pairs read like
  the task's text, while no example's own text is in it.
- Structure a team reads off the real input cheaply anyway is kept, so it cannot tell the two apart by it: a
  string that shares pieces (two characters or more) with the example's main text (its longest string: a
  CSL keyword in its abstract, a CMRC2018 question's words in its context) gets the synthetic main text's
  characters at the same places, and a span named by `X_index`/`X_text` is re-read from the new text at its
  index (CLUEWSC2020's targets). That says no more than the real input says in a few microseconds.
- Ids. Every input, real or synthetic, carries an opaque id drawn from one space per task: an integer where
  the real id is one, a hex token of one length where it is text; ids equal within a real example (CLUEWSC2020's
  `idx` and `id`) are equal in its stand-ins. The host maps a prediction's opaque id back (`real_id`).

A maker is a pure function of (examples, seed) and the sequence of calls made on it; every call to `fresh`
draws new content, so no synthetic input is ever sent twice unless the caller sends it twice.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np

ID_KEYS = ("id", "idx")
OPAQUE_INT_RANGE = 2 ** 31          # opaque integer ids: uniform in [0, this)
OPAQUE_TEXT_DIGITS = 12             # opaque text ids: this many lowercase hex digits
SHARED_PIECE_MIN = 2                # shortest piece of a string found in the main text that is carried over
_SPAN_TEXT = re.compile(r"(.*)_text$")


def is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def string_slots(value: Any, key: str | None = None) -> Iterator[str]:
    """Every string of an example, depth first, except id values (the order `_rebuild` fills them back in)."""
    if key in ID_KEYS and _is_id(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from string_slots(item, k)
    elif isinstance(value, list):
        for item in value:
            yield from string_slots(item)


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class BigramText:
    """Text drawn from the character bigram frequencies of a corpus: each character given the one before, the
    first (and any after a character never followed in the corpus) from the characters' own frequencies.
    Many strings are drawn at once, one step of all of them per numpy call."""

    def __init__(self, texts: Sequence[str]):
        unigram = Counter(c for text in texts for c in text) or Counter("中")
        self.chars = np.array(sorted(unigram))
        index = {c: i for i, c in enumerate(self.chars.tolist())}
        successors: dict[int, Counter] = {}
        for text in texts:
            for a, b in zip(text, text[1:]):
                successors.setdefault(index[a], Counter())[index[b]] += 1
        start = Counter({index[c]: n for c, n in unigram.items()})
        self.start = len(self.chars)               # the state before a string's first character
        rows = [successors.get(state, start) for state in range(len(self.chars))] + [start]
        # state s's successors sit in one run of `succ`; `cum` climbs from s to s + 1 over that run, so
        # searchsorted(cum, s + u) lands in state s's run for any u in [0, 1)
        self.succ = np.concatenate([np.fromiter(row.keys(), dtype=np.int64, count=len(row)) for row in rows])
        cums = []
        for state, row in enumerate(rows):
            counts = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            cum = np.cumsum(counts) / counts.sum()
            cum[-1] = 1.0
            cums.append(state + cum)
        self.cum = np.concatenate(cums)

    def draw(self, lengths: Sequence[int], rng: np.random.Generator) -> list[str]:
        """One string of each length, drawn independently."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size == 0:
            return []
        order = np.argsort(-lengths, kind="stable")          # longest first: the live strings are a prefix
        by_length = lengths[order]
        codes = np.zeros((len(lengths), int(by_length[0])), dtype=np.int64)
        state = np.full(len(lengths), self.start, dtype=np.int64)
        live = len(lengths)
        for step in range(int(by_length[0])):
            while live and by_length[live - 1] <= step:
                live -= 1
            picked = self.succ[np.searchsorted(self.cum, state[:live] + rng.random(live), side="right")]
            codes[:live, step] = picked
            state[:live] = picked
        texts = [""] * len(lengths)
        for row, original in enumerate(order):
            texts[original] = "".join(self.chars[codes[row, :by_length[row]]].tolist())
        return texts


def shared_pieces(text: str, main: str) -> list[tuple[int, int, int]]:
    """(start in text, start in main, length) of the pieces of `text` found in `main`, longest first from the
    left, each at least SHARED_PIECE_MIN characters."""
    pieces, i = [], 0
    while i < len(text):
        length, at = 0, -1
        while i + length + 1 <= len(text):
            found = main.find(text[i:i + length + 1])
            if found < 0:
                break
            length, at = length + 1, found
        if length >= SHARED_PIECE_MIN:
            pieces.append((i, at, length))
            i += length
        else:
            i += 1
    return pieces


def _reread_spans(value: Any, text: str) -> None:
    """Every `X_text` beside an integer `X_index`, anywhere in the example, re-read from `text` at that index."""
    if isinstance(value, list):
        for item in value:
            _reread_spans(item, text)
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        match = _SPAN_TEXT.match(key)
        index = value.get(f"{match.group(1)}_index") if match else None
        if isinstance(item, str) and isinstance(index, int) and not isinstance(index, bool) \
                and 0 <= index and index + len(item) <= len(text):
            value[key] = text[index:index + len(item)]
        else:
            _reread_spans(item, text)


def _main_index(strings: Sequence[str]) -> int:
    return max(range(len(strings)), key=lambda i: len(strings[i])) if strings else -1


def _keep_structure(real: Sequence[str], drawn: list[str]) -> list[str]:
    """`drawn` with every piece a real string shares with the real main text copied from the drawn main text."""
    main = _main_index(real)
    if main < 0:
        return drawn
    out = list(drawn)
    for slot, text in enumerate(real):
        if slot == main:
            continue
        chars = list(out[slot])
        for start, at, length in shared_pieces(text, real[main]):
            chars[start:start + length] = drawn[main][at:at + length]
        out[slot] = "".join(chars)
    return out


class InputMaker:
    """The inputs of one task's timing: `masked` real examples and `fresh` synthetic ones, all under opaque ids
    from one space; `real_id` maps an opaque id back."""

    def __init__(self, examples: Sequence[dict[str, Any]], seed: int | str):
        digest = hashlib.sha256(f"inputs:{seed}".encode()).digest()
        self.rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        self.id_rng = random.Random(digest)
        self.text = BigramText([s for example in examples for s in string_slots(example)])
        self._real: dict[Any, Any] = {}       # opaque id -> real id (masked examples only)
        self._used: set[Any] = set()

    def _opaque(self, like: Any) -> Any:
        while True:
            if isinstance(like, int):
                new: Any = self.id_rng.randrange(OPAQUE_INT_RANGE)
            else:
                new = f"{self.id_rng.getrandbits(4 * OPAQUE_TEXT_DIGITS):0{OPAQUE_TEXT_DIGITS}x}"
            if new not in self._used:
                self._used.add(new)
                return new

    def _with_ids(self, value: Any, chosen: dict[Any, Any], key: str | None = None) -> Any:
        """`value` with every id replaced by an opaque one, equal real ids by equal opaque ones (`chosen`)."""
        if key in ID_KEYS and _is_id(value):
            marker = (type(value), value)
            if marker not in chosen:
                chosen[marker] = self._opaque(value)
            return chosen[marker]
        if isinstance(value, dict):
            return {k: self._with_ids(v, chosen, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._with_ids(v, chosen) for v in value]
        return value

    def masked(self, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same examples, every id opaque (a fresh one per call)."""
        out = []
        for example in examples:
            chosen: dict[Any, Any] = {}
            out.append(self._with_ids(example, chosen))
            for (_, real), opaque in chosen.items():
                self._real[opaque] = real
        return out

    def real_id(self, opaque: Any) -> Any:
        """The real id behind an opaque id that `masked` gave; KeyError for any other."""
        return self._real[opaque]

    def fresh(self, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Examples of the same shapes as `examples`, in the same order, with synthetic content and opaque ids,
        drawn anew on every call."""
        real = [list(string_slots(example)) for example in examples]
        flat = self.text.draw([len(s) for strings in real for s in strings], self.rng)
        out, used = [], 0
        for example, strings in zip(examples, real):
            drawn = _keep_structure(strings, flat[used:used + len(strings)])
            used += len(strings)
            fake = _rebuild(self._with_ids(example, {}), iter(drawn))
            if drawn:
                _reread_spans(fake, drawn[_main_index(strings)])
            out.append(fake)
        return out


def _rebuild(value: Any, strings: Iterator[str], key: str | None = None) -> Any:
    """`value` with its strings (string_slots order) taken from `strings`; ids (already opaque) kept."""
    if key in ID_KEYS and _is_id(value):
        return value
    if isinstance(value, str):
        return next(strings)
    if isinstance(value, dict):
        return {k: _rebuild(v, strings, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, strings) for v in value]
    return value


def warmup_examples(examples: Sequence[dict[str, Any]], seed: int | str) -> list[dict[str, Any]]:
    """Synthetic examples of the same shapes as `examples` (InputMaker.fresh of a maker of this seed)."""
    return InputMaker(examples, seed).fresh(examples)
