"""Cross-checks of a team's parameter count from outside its worker process, where team code patches nothing.

The count itself has to come from inside the worker (only the worker can load the model), so the host
compares it with figures the team cannot bend from inside: the bytes of weight-like files in the built
environment (here) and the device memory the worker holds, read per process from NVML on a GPU
(harness.gpu.process_memory_bytes, compared with BERT-base's in pipeline.device_memory_flags). Files
implying far more parameters than were counted flag the row ``weights_unaccounted`` with the figures.

Bytes become a parameter floor at 4 bytes a parameter (fp32): the most lenient reading for the team, since
fp16 or int8 weights would imply more. "Far more" is more than the spec's limit AND more than twice the
count, calibrated so that an honest fp32 model of any size under the limit, with its tokenizer and the
allocator's slack, is never flagged (tests/unit/test_crosscheck.py; the bundled teams in the end-to-end
tests).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

BYTES_PER_PARAM = 4
WEIGHT_FILE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".onnx", ".safetensors", ".ckpt", ".h5", ".npz",
                                  ".npy", ".pkl", ".pickle", ".msgpack", ".model", ".pb", ".tflite", ".gguf"})


def weight_file_bytes(root: Path) -> int:
    """Bytes of regular files with a weight-like suffix under `root`; links and special files are never
    followed or opened (lstat only), so a team cannot point the host at anything."""
    total = 0
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in names:
            if Path(name).suffix.lower() not in WEIGHT_FILE_SUFFIXES:
                continue
            try:
                info = os.lstat(Path(folder) / name)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def implied_params(nbytes: int) -> int:
    return max(0, int(nbytes)) // BYTES_PER_PARAM


def unaccounted_weights(counted: int, limit: int, memory_bytes: int | None = None,
                        file_bytes: int | None = None) -> str | None:
    """The reason for a `weights_unaccounted` flag, or None when the count stands."""
    for label, nbytes in (("the memory the worker holds", memory_bytes),
                          ("the weight files in the built environment", file_bytes)):
        if nbytes is None:
            continue
        implied = implied_params(nbytes)
        if implied > limit and implied > 2 * counted:
            return (f"weights_unaccounted: {label} ({nbytes:,} bytes) imply at least {implied:,} parameters "
                    f"at {BYTES_PER_PARAM} bytes each, but {counted:,} were counted")
    return None

