"""The probe's work for one run: per task, load the predictor, warm up, time R full passes, count parameters,
check and write the predictions, and record everything in measurements.json.

It runs inside the team's container (or subprocess) and never sees gold labels. A failing task is recorded
with its error and the probe goes on to the next task; the exit status says whether every task succeeded.
"""

from __future__ import annotations

import gc
import importlib
import json
import platform
import random
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness import __version__
from harness.probe.manifest import MEASUREMENTS, SCHEMA_VERSION, ProbeTask, RunManifest, predictions_file
from harness.probe.params import count_parameters
from harness.probe.timing import make_batches, make_sync, summarize_rounds, time_predict_pass, warm_up
from harness.tasks import get_task
from harness.tasks.base import read_json_lines


class ProbeError(Exception):
    """A failure caused by the team's code or data, reported as a one-line reason."""


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"device {requested!r} requested but torch sees no CUDA device")
    return requested


def describe_environment(device: str) -> dict[str, Any]:
    import torch

    env = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "machine": platform.machine(),
           "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
           "harness_version": __version__, "device_name": "cpu"}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(device_name=props.name, cudnn=torch.backends.cudnn.version(),
                   gpu_memory_bytes=props.total_memory)
    return env


def load_predictor_class(team_dir: str, entry: str) -> type:
    """Import module:Class from the team folder, turning import problems into one-line reasons."""
    module_name, class_name = entry.split(":", 1)
    if team_dir not in sys.path:
        sys.path.insert(0, team_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # team code: any exception is the team's failure
        raise ProbeError(f"cannot import predictor module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ProbeError(f"predictor module {module_name!r} has no class {class_name!r}")
    return cls


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def checked_predict(predictor: Any, task: str):
    """predict() wrapped with the protocol's shape checks, applied outside the timed call."""
    checker = get_task(task).check_prediction

    def check(batch: list[dict[str, Any]], output: Any) -> list[dict[str, Any]]:
        if not isinstance(output, (list, tuple)):
            raise ProbeError(f"predict() returned {type(output).__name__}, expected a list of predictions")
        if len(output) != len(batch):
            raise ProbeError(f"predict() returned {len(output)} predictions for a batch of {len(batch)}")
        for example, prediction in zip(batch, output):
            reason = checker(prediction)
            if reason is None and isinstance(prediction, dict) and prediction.get("id") != example["id"]:
                reason = f"id {prediction.get('id')!r} does not match the example's id {example['id']!r}"
            if reason:
                raise ProbeError(f"invalid prediction for example {example['id']!r}: {reason}")
        return list(output)

    return predictor.predict, check


def run_task(manifest: RunManifest, task: ProbeTask, device: str, out_dir: Path) -> dict[str, Any]:
    """Measure one task; raises ProbeError (or the team's exception) on failure."""
    examples, problems = read_json_lines(Path(manifest.inputs_dir) / task.input_file, f"{task.name} inputs")
    if problems:
        raise ProbeError(f"inputs for {task.name} are malformed: {problems[0]}")
    batches = make_batches(examples, task.batch_size)
    sync = make_sync(device)
    seed_everything(manifest.seed)
    cls = load_predictor_class(manifest.team_dir, manifest.predictor)
    started = time.perf_counter()
    try:
        predictor = cls(task.name, device, **task.options)
    except Exception as exc:
        raise ProbeError(f"Predictor({task.name!r}, {device!r}) raised {type(exc).__name__}: {exc}") from exc
    load_s = time.perf_counter() - started
    predict, check = checked_predict(predictor, task.name)
    warm_up(predict, batches, manifest.warmup_batches, sync)
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    passes = [time_predict_pass(predict, batches, sync)]
    predictions = [p for batch, output in zip(batches, passes[0].outputs) for p in check(batch, output)]
    passes += [time_predict_pass(predict, batches, sync) for _ in range(manifest.rounds - 1)]
    first = json.dumps(passes[0].outputs, sort_keys=True, ensure_ascii=False, default=str)
    consistent = all(json.dumps(p.outputs, sort_keys=True, ensure_ascii=False, default=str) == first
                     for p in passes[1:])
    get_task(task.name).write_predictions(predictions, out_dir / predictions_file(task.name))
    params = count_parameters(predictor, Path(manifest.team_dir))
    result = {"ok": True, "error": None, "n_examples": len(examples), "batch_size": task.batch_size,
              "load_s": load_s, "timing": summarize_rounds(passes, len(examples), manifest.noisy_spread),
              "params": params.to_dict(), "predictions_file": predictions_file(task.name),
              "consistent_across_rounds": consistent}
    if device.startswith("cuda"):
        import torch

        result["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
    del predictor, passes
    gc.collect()
    return result


def run_probe(manifest: RunManifest, out_dir: Path) -> dict[str, Any]:
    """Run every task of the manifest and write measurements.json; returns what it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "ok": False, "error": None,
                              "started_at": started, "tasks": {}}
    try:
        device = resolve_device(manifest.device)
        record["environment"] = describe_environment(device)
        for task in manifest.tasks:
            try:
                record["tasks"][task.name] = run_task(manifest, task, device, out_dir)
            except Exception as exc:  # one task's failure must not hide the other tasks' numbers
                traceback.print_exc()
                reason = str(exc) if isinstance(exc, ProbeError) else f"{type(exc).__name__}: {exc}"
                record["tasks"][task.name] = {"ok": False, "error": reason}
            finally:
                if device.startswith("cuda"):
                    import torch

                    torch.cuda.empty_cache()
        failed = [name for name, t in record["tasks"].items() if not t["ok"]]
        record["ok"] = not failed
        if failed:
            record["error"] = "; ".join(f"{n}: {record['tasks'][n]['error']}" for n in failed)
    except Exception as exc:
        traceback.print_exc()
        record["error"] = str(exc) if isinstance(exc, ProbeError) else f"{type(exc).__name__}: {exc}"
    record["duration_s"] = time.time() - started
    record["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (out_dir / MEASUREMENTS).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    return record
