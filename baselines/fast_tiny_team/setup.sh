#!/bin/sh
# Build-time step: torch and numpy come with the runner image, config.json and vocab.txt with the team, so
# it only checks that they import and that the vocabulary is whole. No network, nothing installed.
set -eu
python3 -c "
import numpy, torch
n = sum(1 for _ in open('vocab.txt', encoding='utf-8'))
assert n == 8004, f'vocab.txt has {n} tokens, expected 8004'
print('fast-tiny-team setup: torch', torch.__version__, '/ numpy', numpy.__version__,
      '/ CUDA graphs', 'available' if torch.cuda.is_available() else 'not used (no GPU)')"
