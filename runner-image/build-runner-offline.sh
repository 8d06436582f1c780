#!/usr/bin/env bash
# Build the runner image with no container registry: offline base (debootstrap + docker import), wheelhouse,
# then Dockerfile.runner over them. Every step is cached: a rerun with nothing changed takes seconds, and a
# change to the harness sources rebuilds only the last layers. The integration tests call this.
#
# Usage: runner-image/build-runner-offline.sh [TAG]     (default TAG: lightlm-harness/runner:latest)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-lightlm-harness/runner:latest}
# The base's tag carries a hash of the script that makes it, so changing its package list makes a new base.
BASE_TAG="lightlm-harness/base:bookworm-offline-$(sha256sum runner-image/build-offline-base.sh | cut -c1-12)"

echo "[runner] base image $BASE_TAG"
bash runner-image/build-offline-base.sh "$BASE_TAG"
echo "[runner] wheelhouse runner-image/wheelhouse"
bash runner-image/build-wheelhouse.sh runner-image/wheelhouse
echo "[runner] docker build -> $TAG"
docker build -q -f Dockerfile.runner \
    --build-arg BASE_IMAGE="$BASE_TAG" \
    --build-arg WHEELHOUSE=runner-image/wheelhouse \
    --build-arg EXTRA_PIP="onnx onnxruntime" \
    -t "$TAG" .
echo "[runner] built $TAG"
