"""Write vocab.txt: an 8,021-token Chinese WordPiece vocabulary, the size of RoBERTa-tiny-CLUE's.

The real RoBERTa-tiny-CLUE vocabulary is not bundled (nothing is downloaded), so one of the same size is
cut deterministically from BERT-base-chinese's 21,128-token vocabulary (../bert_reference/vocab.txt):
1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK];
2. the single-character tokens that occur in ../sample_data, most frequent first (ties in file order);
3. the rest of BERT's tokens in file order ([unusedN] placeholders skipped), until 8,021 tokens.
Running it again gives the same file: `python make_vocab.py` (in this folder).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "bert_reference" / "vocab.txt"
SAMPLES = HERE.parent / "sample_data"
SIZE = 8021
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_tokens(path: Path) -> list[str]:
    # One token per "\n"-terminated line: not splitlines(), the vocabulary holds U+2028 as a token.
    return path.read_text(encoding="utf-8").removesuffix("\n").split("\n")


def strings_in(value: object):
    """Every string value (not key) of a parsed JSON record, depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def sample_characters(folder: Path) -> collections.Counter:
    """Character counts over the text of the sample data (JSON lines, or one JSON document for CMRC)."""
    counts: collections.Counter = collections.Counter()
    for path in sorted(folder.rglob("*.json")):
        text = path.read_text(encoding="utf-8")
        records = [json.loads(text)] if path.name == "trial.json" else [
            json.loads(line) for line in text.splitlines() if line.strip()]
        for string in strings_in(records):
            counts.update(c.lower() for c in string if not c.isspace())
    return counts


def cut_vocabulary(source: list[str], counts: collections.Counter, size: int = SIZE) -> list[str]:
    order = {token: i for i, token in enumerate(source)}
    frequent = sorted((c for c in counts if c in order and c not in SPECIALS),
                      key=lambda c: (-counts[c], order[c]))
    chosen = dict.fromkeys([*SPECIALS, *frequent])
    for token in source:
        if len(chosen) >= size:
            break
        if not token.startswith("[unused"):
            chosen.setdefault(token)
    if len(chosen) != size:
        raise ValueError(f"{len(chosen)} tokens, expected {size}")
    return list(chosen)


def main() -> None:
    tokens = cut_vocabulary(read_tokens(SOURCE), sample_characters(SAMPLES))
    (HERE / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'vocab.txt'}: {len(tokens)} tokens")


if __name__ == "__main__":
    main()
