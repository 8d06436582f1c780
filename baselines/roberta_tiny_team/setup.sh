#!/bin/sh
# Build-time step: torch, transformers and tokenizers come with the runner image, config.json and vocab.txt
# with the team, so it only checks that they import and that the vocabulary is whole. No network.
set -eu
python3 -c "
import tokenizers, torch, transformers
n = sum(1 for _ in open('vocab.txt', encoding='utf-8'))
assert n == 8021, f'vocab.txt has {n} tokens, expected 8021'
print('roberta-tiny-team setup: torch', torch.__version__, '/ transformers', transformers.__version__,
      '/ tokenizers', tokenizers.__version__)"
