"""Warm-up inputs: other content with exactly the shapes of the timed inputs.

Warming up on the timed inputs themselves would let a predictor that caches answers by input text look
thousands of times faster. So the warm-up batches are the timed examples with every CJK character replaced
through one random bijection (drawn per run) over the CJK characters present in the task's inputs. The same
substitution applies to every string field of an example, so span indices and span texts stay consistent,
and lengths (and, for character-level Chinese tokenizers, token counts) are unchanged. Ids change too
(string ids prefixed, integer ids offset), so nothing about a warm-up example names a timed one.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

WARMUP_ID_PREFIX = "warmup-"
WARMUP_ID_OFFSET = 1_000_000_000
ID_KEYS = ("id", "idx")


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


def cjk_bijection(examples: Sequence[dict[str, Any]], seed: int) -> dict[str, str]:
    """A random permutation of the CJK characters present in `examples` (a derangement when possible)."""
    present = sorted({c for e in examples for s in _strings(e) for c in s if is_cjk(c)})
    if len(present) < 2:
        return {}
    shuffled = present[:]
    random.Random(seed).shuffle(shuffled)
    # rotate by one over the shuffled order: every character moves, and the map stays a bijection
    return {a: b for a, b in zip(shuffled, shuffled[1:] + shuffled[:1])}


def _substitute(value: Any, table: dict[int, str], key: str | None = None) -> Any:
    if key in ID_KEYS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value + WARMUP_ID_OFFSET
        if isinstance(value, str):
            return WARMUP_ID_PREFIX + value
    if isinstance(value, str):
        return value.translate(table)
    if isinstance(value, dict):
        return {k: _substitute(v, table, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, table) for v in value]
    return value


def warmup_examples(examples: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Perturbed copies of `examples`, same order and shapes, different content and ids (a pure function)."""
    table = str.maketrans(cjk_bijection(examples, seed))
    return [_substitute(example, table) for example in examples]
