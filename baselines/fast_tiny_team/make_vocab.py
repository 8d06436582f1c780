"""Write vocab.txt: a character vocabulary, the single characters of ../roberta_tiny_team/vocab.txt.

The model reads Chinese text one character per token, as BERT-base-chinese's WordPiece already does for
every CJK character, so it needs no word pieces: the vocabulary is the five special tokens [PAD] [UNK]
[CLS] [SEP] [MASK], then every one-character, non-whitespace token of RoBERTa-tiny's 8,021-token vocabulary
in its order (multi-character pieces such as "2017" or "##s" dropped). Whitespace and characters outside
the vocabulary read as [UNK]. Running it again gives the same file: `python make_vocab.py` (in this folder).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "roberta_tiny_team" / "vocab.txt"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_tokens(path: Path) -> list[str]:
    # One token per "\n"-terminated line: not splitlines(), a vocabulary may hold U+2028 as a token.
    return path.read_text(encoding="utf-8").removesuffix("\n").split("\n")


def character_vocabulary(source: list[str]) -> list[str]:
    characters = [t for t in source if len(t) == 1 and not t.isspace()]
    return list(dict.fromkeys([*SPECIALS, *characters]))


def main() -> None:
    tokens = character_vocabulary(read_tokens(SOURCE))
    (HERE / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'vocab.txt'}: {len(tokens)} tokens")


if __name__ == "__main__":
    main()
