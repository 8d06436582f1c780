#!/bin/sh
# Build-time step of the BERT-base reference: everything it needs (torch, transformers, config.json,
# vocab.txt) is already present, so it only checks that the libraries import. No network.
set -eu
python3 -c "import torch, transformers; print('bert-base-reference setup: torch', torch.__version__, '/ transformers', transformers.__version__)"
