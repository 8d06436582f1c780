#!/bin/sh
# Build-time step: torch, transformers and tokenizers come with the runner image, config.json and vocab.txt
# with the team, so it only checks that they import (ALBERT included) and that the vocabulary is whole.
set -eu
python3 -c "
import tokenizers, torch, transformers
from transformers import AlbertConfig
n = sum(1 for _ in open('vocab.txt', encoding='utf-8'))
assert n == AlbertConfig.from_json_file('config.json').vocab_size, f'vocab.txt has {n} tokens'
print('albert-tiny-team setup: torch', torch.__version__, '/ transformers', transformers.__version__,
      '/ tokenizers', tokenizers.__version__)"
