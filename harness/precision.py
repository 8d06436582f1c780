"""The reference precisions a spec may pin, and what "fp32-strict" means, setting by setting.

Both sides read these: the worker sets them (harness.probe.worker), the host checks them right before timing
(harness.measurement), the spec's loader accepts only these names and the row's label reads them back
(harness.results). Standard library only, so that the worker imports it in a team's environment.
"""

PRECISIONS = ("fp32-strict", "free")
STRICT_FP32 = {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "float32_matmul_precision": "highest"}
