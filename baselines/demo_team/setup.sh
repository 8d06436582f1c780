#!/bin/sh
# Build-time step of the demo team: nothing to install (torch and numpy come with the runner image),
# so it only checks that they import and reports their versions. It must not need the network.
set -eu
python3 -c "import numpy, torch; print('demo-team setup: torch', torch.__version__, '/ numpy', numpy.__version__)"
