"""The worker side: runs next to team code (in its container or subprocess), never sees gold labels.

Imports only the standard library, torch and numpy (onnx lazily): no click, pandas or docker, so that a
team image needs nothing beyond what the runner image carries. Entry point: ``python -m harness.probe.worker``.
It does no timing and writes no files: the host's timekeeper does both.
"""

# The reference precisions a spec may pin, and what "fp32-strict" means, setting by setting: the worker sets
# them, the host checks them right before timing, and the row's label reads them back.
PRECISIONS = ("fp32-strict", "free")
STRICT_FP32 = {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "float32_matmul_precision": "highest"}
