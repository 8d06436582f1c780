#!/usr/bin/env bash
# Download, on a machine with PyPI access, every wheel Dockerfile.runner needs beyond the offline base
# (runner-image/build-offline-base.sh: Debian's python3 3.11, numpy 1.24 and torch 1.13), so that the runner
# image then builds with no index at all (--build-arg WHEELHOUSE=DIR).
#
#   runner-image/build-wheelhouse.sh [--no-onnx] [DIR]        (default DIR: runner-image/wheelhouse)
#
# Wheels are for CPython 3.11, manylinux x86_64, pinned to versions that work with torch 1.13, and
# downloaded with --no-deps from the explicit list below: numpy and torch come from Debian and are
# never downloaded a second time. With the default ONNX set (onnx + CPU onnxruntime) the probe can
# count ONNX initializers offline; build the image with --build-arg EXTRA_PIP="onnx onnxruntime".
# DIR must lie inside the Docker build context (the repository root); runner-image/wheelhouse is the
# documented place (ignored by git, kept in the build context by .dockerignore).
# Reruns only fetch what is missing and delete wheels of older pins. Writes DIR/requirements.txt and
# DIR/SHA256SUMS; does nothing when both match the pins.
# Environment: PYTHON (default python3), PYTHON_VERSION (default 3.11), extra pip options via PIP_* variables.
set -euo pipefail

# setuptools and wheel build the harness package itself (--no-build-isolation) where a base lacks them.
# transformers 4.40.x supports torch 1.13; huggingface-hub 0.22 (not 0.23+) keeps 4.40 free of
# `resume_download` FutureWarnings.
CORE=(
    transformers==4.40.2
    tokenizers==0.19.1
    huggingface-hub==0.22.2
    safetensors==0.4.3
    regex==2024.5.15
    pyyaml==6.0.1
    requests==2.32.3
    tqdm==4.66.4
    filelock==3.15.4
    packaging==24.1
    fsspec==2024.6.1
    certifi==2024.7.4
    charset-normalizer==3.3.2
    idna==3.7
    urllib3==2.2.2
    typing-extensions==4.12.2
    setuptools==69.5.1
    wheel==0.43.0
)
# onnx (ONNX initializer counting in the probe) and CPU onnxruntime, with their requirements
# (numpy and sympy are already in the offline base; sympy/mpmath are listed for other bases).
ONNX=(
    onnx==1.16.2
    onnxruntime==1.18.1
    protobuf==4.25.4
    flatbuffers==24.3.25
    coloredlogs==15.0.1
    humanfriendly==10.0
    sympy==1.12.1
    mpmath==1.3.0
)

say() { printf '[wheelhouse %4ss] %s\n' "$((SECONDS))" "$*"; }
die() { printf 'build-wheelhouse: error: %s\n' "$*" >&2; exit 1; }

WITH_ONNX=1
DIR=
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --no-onnx) WITH_ONNX=0 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) [[ -z "$DIR" ]] || die "only one DIR may be given"; DIR=$arg ;;
    esac
done
DIR=${DIR:-$(dirname "$0")/wheelhouse}
PYTHON=${PYTHON:-python3}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
ABI=cp${PYTHON_VERSION/./}

"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON=/path/to/python3 with pip)"
WANT=("${CORE[@]}")
if [[ $WITH_ONNX -eq 1 ]]; then WANT+=("${ONNX[@]}"); fi
mkdir -p "$DIR"
HEADER="# pinned by runner-image/build-wheelhouse.sh for CPython $PYTHON_VERSION (torch and numpy come from the base image)"
if [[ -f "$DIR/requirements.txt" && -f "$DIR/SHA256SUMS" ]] \
   && [[ "$(cat "$DIR/requirements.txt")" == "$(printf '%s\n' "$HEADER" "${WANT[@]}")" ]] \
   && (cd "$DIR" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
    say "$DIR is up to date ($(ls "$DIR"/*.whl | wc -l) wheels, checksums verified); nothing to download"
    exit 0
fi

say "downloading ${#WANT[@]} pinned wheels for CPython $PYTHON_VERSION manylinux x86_64 into $DIR ..."
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
if ! "$PYTHON" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
        --implementation cp --python-version "$PYTHON_VERSION" --abi "$ABI" \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --dest "$DIR" "${WANT[@]}" > "$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    die "pip download failed (is PyPI, or your PIP_INDEX_URL, reachable?)"
fi
sed -nE -e 's#^ *Saved .*/#  downloaded #p' -e 's#^ *File was already downloaded .*/#  present    #p' "$LOG"
# Drop wheels left from earlier pins: --find-links would otherwise offer pip the newest of them.
norm() { tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }
KEEP=$(for req in "${WANT[@]}"; do printf '%s-%s\n' "$(norm <<<"${req%%==*}")" "${req#*==}"; done)
for whl in "$DIR"/*.whl; do
    base=$(basename "$whl")
    IFS=- read -r wname wversion _ <<<"$base"
    if ! grep -qxF "$(norm <<<"$wname")-$wversion" <<<"$KEEP"; then say "removing stale $base"; rm -f "$whl"; fi
done

# A wheelhouse must not carry a second numpy or torch: they come from the base image.
if ls "$DIR" | grep -Eiq '^(numpy|torch)-'; then
    die "$DIR holds a numpy or torch wheel; remove it (the offline base provides both)"
fi
printf '%s\n' "$HEADER" "${WANT[@]}" > "$DIR/requirements.txt"
(cd "$DIR" && sha256sum -- *.whl > SHA256SUMS)
say "done: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
