"""Benchmark: how well can a team tell the harness's synthetic inputs from the real ones by their text?

The timed section never repeats an input, so there is nothing to cache; what a team could still try is to
tell the synthetic inputs (warm-up, the fresh inputs of later rounds) from the real ones and skip its work on
the synthetic ones. The caching audit catches that by timing (the README's threat model). This script says how
easy the telling is, so the README can state it: a detector a team could ship, a character n-gram language
model trained on public CLUE text (each task's train split where the repository has one, else the other half
of the file), scores every input by its mean log-probability per character; the AUC says how often a real
input outscores a synthetic one of the same shape (0.5: no better than a coin; 1.0: always told apart).
Unigram and bigram detectors should sit near 0.5 (the synthetic text keeps those statistics); a trigram
detector is the cheap one that can tell.

    python bench/input_likeness.py [--data ../shared/data/clue] [--limit 1000]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.tasks import get_task  # noqa: E402
from harness.warmup_inputs import InputMaker, string_slots  # noqa: E402

# task: (file timed, file the detector learns from or None for the file's other half)
TASKS = {"cluener2020": ("cluener2020/dev.json", "cluener2020/train.json"),
         "cluewsc2020": ("cluewsc2020/dev.json", "cluewsc2020/train.json"),
         "csl": ("csl/dev.json", None),
         "cmrc2018": ("cmrc2018/trial.json", None)}


class CharModel:
    """An n-gram character model with add-one smoothing over the characters it has seen (plus one unknown)."""

    def __init__(self, texts: list[str], n: int):
        self.n, self.grams, self.contexts = n, Counter(), Counter()
        self.vocab = len({c for t in texts for c in t}) + 1
        for text in texts:
            padded = "\x02" * (n - 1) + text
            for i in range(n - 1, len(padded)):
                self.grams[padded[i - n + 1:i + 1]] += 1
                self.contexts[padded[i - n + 1:i]] += 1

    def score(self, text: str) -> float:
        padded = "\x02" * (self.n - 1) + text
        total = sum(math.log((self.grams[padded[i - self.n + 1:i + 1]] + 1)
                             / (self.contexts[padded[i - self.n + 1:i]] + self.vocab))
                    for i in range(self.n - 1, len(padded)))
        return total / max(len(text), 1)


def auc(real: list[float], fake: list[float]) -> float:
    """P(a real input scores above a synthetic one), ties counted half (the Mann-Whitney statistic)."""
    ordered = sorted([(s, 1) for s in real] + [(s, 0) for s in fake])
    rank_sum, i = 0.0, 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(label for _, label in ordered[i:j])
        i = j
    return (rank_sum - len(real) * (len(real) + 1) / 2) / (len(real) * len(fake))


def text_of(example: dict) -> str:
    return "\n".join(string_slots(example))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "clue")
    parser.add_argument("--limit", type=int, default=1000, help="timed inputs per task at most")
    args = parser.parse_args()
    print(f"{'task':<12} {'timed':>6} {'learned from':<28} {'AUC n=1':>8} {'n=2':>6} {'n=3':>6} {'n=4':>6}")
    for name, (timed_file, learn_file) in TASKS.items():
        task = get_task(name)
        inputs = task.strip_labels(task.read_gold(args.data / timed_file))
        if learn_file:
            public = [text_of(e) for e in task.strip_labels(task.read_gold(args.data / learn_file))]
            timed, source = inputs[:args.limit], learn_file
        else:
            half = len(inputs) // 2
            public, timed, source = [text_of(e) for e in inputs[:half]], inputs[half:][:args.limit], "first half"
        fresh = InputMaker(timed, seed=2020).fresh(timed)
        aucs = []
        for n in (1, 2, 3, 4):
            model = CharModel(public, n)
            aucs.append(auc([model.score(text_of(e)) for e in timed], [model.score(text_of(e)) for e in fresh]))
        print(f"{name:<12} {len(timed):>6} {source:<28} " + " ".join(f"{a:>6.3f}" for a in aucs))


if __name__ == "__main__":
    main()
