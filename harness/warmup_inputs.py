"""Warm-up inputs: drawn independently of the timed inputs, with exactly their shapes.

Warming up on the timed inputs, or on any transform of them, would let a team compute its timed answers
before its first timed call: a character bijection keeps which keywords appear in an abstract, lengths and
digits, and ids that map back say which answer belongs where. So a warm-up example keeps only the timed
example's shape: every string the same length, every list the same size, every key the same. Each character
of a string is drawn afresh, at random and independently of what stood there: a CJK character from the CJK
characters of the task's inputs (so a character-level tokenizer sees as many tokens, mostly in its
vocabulary), an ASCII digit or letter from its own class; punctuation and spaces stay. A span's text is then
re-read from the new text at its index (`spanN_index`/`spanN_text`, as CLUEWSC2020's targets are), so spans
stay consistent. Ids are fresh random ids that name no timed example. A pure function of (examples, seed).
"""

from __future__ import annotations

import random
import re
import string
from typing import Any, Sequence

WARMUP_ID_PREFIX = "warmup-"
WARMUP_ID_OFFSET = 1_000_000_000
ID_KEYS = ("id", "idx")
_SPAN_TEXT = re.compile(r"(.*)_text$")


def is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class _Drawer:
    """Fresh characters of each class, and fresh ids, from one seeded generator."""

    def __init__(self, examples: Sequence[dict[str, Any]], seed: int | str):
        self.rng = random.Random(f"warm-up:{seed}")
        self.cjk = sorted({c for e in examples for s in _strings(e) for c in s if is_cjk(c)}) or ["中"]
        self.used_ids: set[Any] = set()

    def char(self, char: str) -> str:
        if is_cjk(char):
            return self.rng.choice(self.cjk)
        for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
            if char in alphabet:
                return self.rng.choice(alphabet)
        return char

    def text(self, value: str) -> str:
        return "".join(self.char(c) for c in value)

    def fresh_id(self, value: Any) -> Any:
        while True:
            token = self.rng.getrandbits(40)
            new = WARMUP_ID_OFFSET + token if isinstance(value, int) else f"{WARMUP_ID_PREFIX}{token:010x}"
            if new not in self.used_ids:
                self.used_ids.add(new)
                return new

    def same_shape(self, value: Any, key: str | None = None) -> Any:
        if key in ID_KEYS and isinstance(value, (int, str)) and not isinstance(value, bool):
            return self.fresh_id(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.same_shape(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.same_shape(v) for v in value]
        return value


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


def warmup_examples(examples: Sequence[dict[str, Any]], seed: int | str) -> list[dict[str, Any]]:
    """Examples of the same shapes as `examples`, in the same order, whose content and ids are drawn
    independently of them."""
    drawer = _Drawer(examples, seed)
    warm = [drawer.same_shape(example) for example in examples]
    for example in warm:
        if isinstance(example.get("text"), str):
            _reread_spans(example, example["text"])
    return warm
