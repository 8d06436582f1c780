"""ONNX Runtime sessions a GPU box timed on the CPU: the row's flag, from the providers the worker reported.

The worker lists the execution providers of the team's live sessions (harness.probe.onnx_sessions, checked
by harness.replies); a session that leads with no GPU provider on a box that times on a GPU runs a CPU
model, and its time is a CPU model's (issue 27: the bundled onnx_team ran at 0.33x on an H200 and no row
said why).
"""

from __future__ import annotations

from typing import Any, Mapping

# Providers that run an ONNX Runtime graph on an NVIDIA GPU: a session led by one of them is timed on the GPU.
GPU_ONNX_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider")
# The worker imports the runner environment's onnxruntime before any team code (probe.worker.PREIMPORTS): where
# that environment has one, it runs the team's sessions, and an onnxruntime-gpu from a team's setup.sh is unused.
ONNX_GPU_ADVICE = ("ask for CUDAExecutionProvider first, with onnxruntime-gpu in the runner's environment "
                   "(Dockerfile.runner EXTRA_PIP; the harness's `gpu` extra on the local backend)")


def onnx_provider_flags(record: Mapping[str, Any], device: str | None) -> list[str]:
    """A task timed on a GPU whose ONNX Runtime sessions lead with no GPU provider (a CPU-only onnxruntime
    wheel, a CUDA provider not asked for, or one that failed to load and fell back to the CPU): its time is a
    CPU model's. From the sessions' providers the worker reported (the task's timing record's
    `onnx_sessions`, the team's own word: a lie only removes a flag against the team). Nothing on a CPU run,
    and nothing when no session was seen."""
    if not str(device or "").startswith("cuda"):
        return []
    sessions = [s["providers"] for s in record.get("onnx_sessions") or []]
    off_gpu = [providers for providers in sessions if providers[:1] not in [[p] for p in GPU_ONNX_PROVIDERS]]
    if not off_gpu:
        return []
    which = "ONNX Runtime" if len(sessions) == 1 else f"{len(off_gpu)} of {len(sessions)} ONNX Runtime sessions"
    ran_on = " > ".join(off_gpu[0]) + (" only" if len(off_gpu[0]) == 1 else "") if off_gpu[0] else "no provider"
    return [f"{which} ran on {ran_on} although the box times on {device}: {ONNX_GPU_ADVICE}"]
