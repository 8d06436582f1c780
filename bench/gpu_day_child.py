"""The parts of the GPU day that touch torch or CUDA, each run in a child process of bench/gpu_day.py.

The GPU day's own process never imports torch: a CUDA context it kept would make every later `harness run`
refuse the GPU ("1 other process(es) hold GPU 0: stop it before timing", the first H200 day). Each command
prints one JSON object as its last line of stdout, for the parent to read:

    python bench/gpu_day_child.py reference --device cuda --spec S --data-dir D [--max-examples N] [--quick]
    python bench/gpu_day_child.py build --cache-dir C --work-dir W --spec S TEAM_DIR...

`build` imports no torch itself (the teams' setup scripts may, in their own processes); it runs here so that
the parent can cut it at the end of its budget like any other command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))        # runs from a plain copy of the repository, installed or not
REFERENCE_DIR = REPO / "baselines" / "bert_reference"


def versions() -> dict[str, Any]:
    """The libraries the workers run with, CUDA and cuDNN as torch sees them."""
    found: dict[str, Any] = {}
    for module in ("torch", "transformers", "onnxruntime", "numpy", "pandas"):
        try:
            found[module] = __import__(module).__version__
        except Exception as exc:
            found[module] = f"missing ({type(exc).__name__})"
    try:
        import torch
        found["torch_cuda"] = torch.version.cuda
        found["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except Exception:
        pass
    return found


def sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def reference(args: argparse.Namespace) -> dict[str, Any]:
    """The bundled BERT-base: fp32-strict verified, then one batch per task timed, strict and (GPU) TF32."""
    import torch

    from harness.pipeline import prepare_inputs
    from harness.precision import STRICT_FP32
    from harness.probe.worker import read_precision, set_precision
    from harness.spec import load_spec

    sys.path.insert(0, str(REFERENCE_DIR))
    try:
        from predictor import Predictor
    finally:
        sys.path.remove(str(REFERENCE_DIR))
    spec = load_spec(args.spec)
    inputs = prepare_inputs(spec, args.data_dir, args.max_examples or None).inputs
    calls = 1 if args.quick else 5
    tasks = spec.task_names[:1] if args.quick else spec.task_names
    modes = ["fp32-strict"] + (["tf32"] if args.device == "cuda" else [])
    results: dict[str, dict[str, float]] = {}
    verified: dict[str, bool] = {}
    for task in tasks:
        settings = spec.task(task)
        predictor = Predictor(task, args.device, max_seq_length=settings.max_seq_length,
                              padding=spec.reference.padding, doc_stride=spec.reference.doc_stride)
        batch = inputs[task][:settings.batch_size]
        for mode in modes:
            set_precision("fp32-strict")
            if mode == "tf32":
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
            else:
                state = read_precision()
                verified[task] = all(state.get(k) == v for k, v in STRICT_FP32.items())
            predictor.predict(batch)                     # warm
            seconds = []
            for _ in range(calls):
                sync(args.device)
                start = time.perf_counter()
                predictor.predict(batch)
                sync(args.device)
                seconds.append(time.perf_counter() - start)
            results.setdefault(task, {})[mode] = statistics.median(seconds)
        del predictor
        set_precision("fp32-strict")
    return {"per_task_s": results, "fp32_strict_verified": verified, "calls": calls, "tasks": list(tasks),
            "versions": versions()}


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Every team built once into the cache a later `harness run --cache-dir` reuses (keyed by content)."""
    from harness.backends.local import LocalBackend
    from harness.spec import load_spec
    from harness.submission import SubmissionError, load_submission

    spec = load_spec(args.spec)
    backend = LocalBackend(cache_dir=args.cache_dir, setup_timeout_s=spec.build.timeout_s)
    built: dict[str, Any] = {}
    for folder in args.teams:
        started = time.monotonic()
        try:
            submission = load_submission(folder, spec)
            done = backend.build(submission, args.work_dir / submission.team)
            built[folder.name] = {"ok": done.ok, "cached": bool(done.cached), "error": done.error}
        except SubmissionError as exc:
            built[folder.name] = {"ok": False, "cached": False, "error": str(exc)}
        built[folder.name]["seconds"] = time.monotonic() - started
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("reference")
    timing.add_argument("--device", required=True, choices=("cuda", "cpu"))
    timing.add_argument("--spec", type=Path)
    timing.add_argument("--data-dir", type=Path, required=True)
    timing.add_argument("--max-examples", type=int, default=0)
    timing.add_argument("--quick", action="store_true")
    building = commands.add_parser("build")
    building.add_argument("--cache-dir", type=Path, required=True)
    building.add_argument("--work-dir", type=Path, required=True)
    building.add_argument("--spec", type=Path)
    building.add_argument("teams", type=Path, nargs="+")
    args = parser.parse_args(argv)
    print(json.dumps(reference(args) if args.command == "reference" else build(args), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
