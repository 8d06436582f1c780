"""python -m harness.probe.worker SOCKET: serve one predictor to the timekeeper, and nothing else.

The worker is the only harness code that runs next to team code, so it owns nothing that matters: it does
no timing and writes no files. It connects to the host's socket, says hello, then answers requests:

  prepare {device}                                        drop the last model, import the libraries a team may
                                                          use, start the device: the baseline of the host's
                                                          memory cross-check, taken before any team code runs
  load {task, device, options, seed, precision, threads}  import module:Class, Predictor(task, device, **options)
  predict {batch}                                         -> {predictions}
  params                                                  -> the parameter report (harness.probe.params), with
                                                          the live ONNX Runtime sessions' providers
  precision                                               -> the matmul/cuDNN precision settings in force
  profile {batch}                                         -> {profile: seconds inside predict() and inside the
                                                          forward of its top-level torch modules}, on an
                                                          untimed pass (harness.probe.forward_clock)
  stop

Every reply echoes its request's nonce; every failure is a reply {ok: false, error}; the host decides what
it means. Whatever team code patches in
this process (clocks, harness modules, files it writes on exit) cannot reach a number the host keeps.
"""

from __future__ import annotations

import gc
import importlib
import os
import platform
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness.cpusets import own_cpu_set
from harness.precision import PRECISIONS
from harness.probe import channel, onnx_warmup
from harness.probe.onnx_sessions import session_providers



class WorkerError(Exception):
    """A failure caused by the team's code, reported as a one-line reason."""


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise WorkerError(f"device {requested!r} requested but torch sees no CUDA device")
    return requested


def describe_environment(device: str) -> dict[str, Any]:
    import torch

    env = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "machine": platform.machine(),
           "torch_threads": torch.get_num_threads(), "device_name": "cpu", "pid": os.getpid(),
           "cpu_set": own_cpu_set()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(device_name=props.name, cudnn=torch.backends.cudnn.version(), gpu_memory_bytes=props.total_memory)
    return env


# Where newer torch keeps its fp32 precision switches ("ieee" = no TF32); the ones present are set and read.
FP32_PRECISION_SETTINGS = ("backends", "backends.cuda.matmul", "backends.cudnn", "backends.cudnn.conv",
                           "backends.cudnn.rnn")


def _attribute(owner: Any, name: str) -> Any:
    """getattr that also survives torch modules raising AssertionError for unknown names (torch 1.x cudnn)."""
    try:
        return getattr(owner, name)
    except Exception:
        return None


def _fp32_switches():
    import torch

    for path in FP32_PRECISION_SETTINGS:
        owner = torch
        for part in path.split("."):
            owner = _attribute(owner, part) if owner is not None else None
        if owner is not None and _attribute(owner, "fp32_precision") is not None:
            yield path, owner


def set_precision(precision: str) -> None:
    """fp32-strict: no TF32 anywhere, float32 matmul precision "highest" (what the spec pins the reference to)."""
    if precision not in PRECISIONS:
        raise WorkerError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == "free":
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    for _, owner in _fp32_switches():       # newer torch: the settings that win over the legacy flags
        try:
            owner.fp32_precision = "ieee"
        except Exception:
            pass


def read_precision() -> dict[str, Any]:
    """The settings in force now: checked by the host right before timing, and recorded on the row."""
    import torch

    state: dict[str, Any] = {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                             "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                             "float32_matmul_precision": torch.get_float32_matmul_precision()}
    for path, owner in _fp32_switches():
        state[f"{path.replace('.', '_')}_fp32_precision"] = str(owner.fp32_precision)
    return state


TEAM_VENV_VARIABLE = "HARNESS_TEAM_VENV"


def team_site_dirs() -> list[str]:
    """site-packages of the team's own environment, named by $HARNESS_TEAM_VENV (Dockerfile.runner).

    The worker starts isolated (`python -I` from the harness's root-owned venv), so nothing the team wrote at
    build time runs before it; the team's packages join sys.path only now, as plain paths: `.pth` files there
    are never processed.
    """
    venv = os.environ.get(TEAM_VENV_VARIABLE)
    return sorted(str(p) for p in Path(venv).glob("lib/python*/site-packages") if p.is_dir()) if venv else []


def load_predictor_class(team_dir: str, entry: str) -> type:
    module_name, class_name = entry.split(":", 1)
    for path in [*team_site_dirs(), team_dir]:
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # team code: any exception is the team's failure
        raise WorkerError(f"cannot import predictor module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise WorkerError(f"predictor module {module_name!r} has no class {class_name!r}")
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


# Imported by `prepare`, before any team code, when the image has them: what they cost in memory is then part
# of the host's baseline, not of the growth it charges to the team. The worker's own counter is imported there
# too, not at start-up: the worker says hello at once, and the host prepares both workers at the same time.
PREIMPORTS = ("numpy", "torch", "transformers", "onnxruntime", "tokenizers", "sentencepiece")
COUNTER_MODULE = "harness.probe.params"
# Set by the fork server in a forked worker whose memory baseline could not be made a started worker's
# (harness.probe.forkserver.touch_inherited_pages); prepare passes it on, and the row says it.
BASELINE_NOTE = ""


def import_libraries(names: tuple[str, ...] = PREIMPORTS) -> list[str]:
    """Those of `names` that this environment has, imported; their names. Never runs a kernel: the fork server
    (harness.probe.forkserver) calls this before it forks, and a thread pool started before a fork hangs the
    child's first parallel region (GNU OpenMP)."""
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception:      # not in this image: nothing to charge either way
            pass
    return imported


def warm_libraries(device: str = "cpu") -> str:
    """What a first model costs beside its weights: transformers' modelling machinery is imported on first use
    of a model class (about 170 MiB resident), and torch sets up its CPU kernels on a first forward pass.
    A tiny BERT, built and run once, pays both before the baseline is read (bench/memory_growth.py).

    On a CUDA device the tiny BERT is also moved there and run once, in fp32 and in fp16: CUDA loads kernel
    code lazily, on first use, into host and device memory alike, and a model's first load (copies, casts)
    and pass would otherwise charge that code to the team's growth at load. A few KB of weights, freed
    before the baseline. Returns why the device could not be warmed ("" when it was, or on the CPU)."""
    try:
        import torch
        from transformers import BertConfig, BertModel
    except Exception:          # no transformers in this image: nothing of it to charge either
        return ""
    tiny = BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    ids = torch.ones(1, 4, dtype=torch.long)
    with torch.inference_mode():
        tiny(ids)
    if not device.startswith("cuda"):
        return ""
    try:
        with torch.inference_mode():
            on_device = tiny.to(device)
            on_device(ids.to(device))
            on_device.half()(ids.to(device))
            torch.cuda.synchronize(device)
        del on_device
    except Exception as exc:   # said on the row: the team's device growth at load may then read high
        return f"CUDA's kernels could not be warmed before the baseline ({exc!r:.200})"
    finally:
        del tiny
        gc.collect()
        torch.cuda.empty_cache()
    return ""


class Worker:
    """One predictor at a time, replaced by each load."""

    def __init__(self) -> None:
        self.predictor: Any = None
        self.team_dir = ""
        self.imported: list[str] | None = None     # the libraries prepare imported, once
        self.warm_note = ""                        # why CUDA or ONNX Runtime could not be warmed, if not
        self.forward_modules: tuple[list[Any], str] | None = None   # the profile's modules (forward_clock)

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        import torch

        self.predictor = self.forward_modules = None
        gc.collect()
        device = resolve_device(request.get("device") or "auto")
        if self.imported is None:      # once per worker: later tasks find the libraries already there
            self.imported = import_libraries()
            self.warm_note = warm_libraries(device)
            try:
                onnx_warmup.warm_session(device)
            except Exception as exc:   # said on the row: an ONNX team's growth may then read a few MiB high
                self.warm_note = "; ".join(filter(None, (self.warm_note, "ONNX Runtime's first session could not "
                                                         f"run before the baseline ({exc!r:.200})")))
        importlib.import_module(COUNTER_MODULE)
        if device.startswith("cuda"):
            torch.zeros(1, device=device)          # the CUDA context, in the baseline
            torch.cuda.empty_cache()
        gc.collect()
        return {"imported": self.imported, "baseline_note": "; ".join(filter(None, (BASELINE_NOTE, self.warm_note)))}

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        import torch

        self.predictor = None          # the previous task's model goes before the next one loads
        self.forward_modules = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if request.get("threads"):
            torch.set_num_threads(int(request["threads"]))
        set_precision(request.get("precision") or "free")
        device = resolve_device(request.get("device") or "auto")
        seed_everything(int(request.get("seed") or 0))
        self.team_dir = request["team_dir"]
        cls = load_predictor_class(self.team_dir, request["predictor"])
        task = request["task"]
        try:
            self.predictor = cls(task, device, **(request.get("options") or {}))
        except Exception as exc:
            raise WorkerError(f"Predictor({task!r}, {device!r}) raised {type(exc).__name__}: {exc}") from exc
        if device.startswith("cuda"):
            # the caching allocator gives back what the load freed (an fp32 copy cast to fp16 on the device, a
            # warm-up pass's activations): the host's device reading at load is then what the model holds,
            # in the allocator's segments. Never timed: warm-up windows come before any timed round.
            gc.collect()
            torch.cuda.empty_cache()
        return {"environment": describe_environment(device)}

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.predictor is None:
            raise WorkerError("predict before load")
        return {"predictions": self.predictor.predict(request["batch"])}   # a tuple encodes as a list too

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.predictor is None:
            raise WorkerError("params before load")
        from harness.probe.params import count_parameters
        scan = request.get("scan_process", True) is not False      # only an explicit False turns it off
        report = count_parameters(self.predictor, Path(self.team_dir), scan).to_dict()
        if scan and isinstance(report, dict):      # the ONNX Runtime sessions' providers, the team's own word
            # (harness.probe.onnx_sessions); no second collection: the count's live-weight scan has just made
            # one. The report came through code the team can replace: whatever shape it has, the host judges it
            report["onnx_sessions"], notes = session_providers(collect=False)
            if notes and isinstance(report.setdefault("notes", []), list):
                report["notes"].extend(notes)
        return {"report": report}

    def precision(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"precision": read_precision()}

    def profile(self, request: dict[str, Any]) -> dict[str, Any]:
        """The worker's own split of one batch (untimed): predict() with hooks on the top-level modules."""
        if self.predictor is None:
            raise WorkerError("profile before load")
        from harness.probe.forward_clock import ForwardClock

        if self.forward_modules is None:      # found once per loaded predictor (a walk of its objects)
            found = ForwardClock.around(self.predictor)
            self.forward_modules = (found.modules, found.note)
        clock = ForwardClock(self.forward_modules[0])
        clock.note = clock.note or self.forward_modules[1]
        with clock:
            started = time.perf_counter()
            self.predictor.predict(request["batch"])
            predict_s = time.perf_counter() - started
        note = clock.note or ("" if clock.calls else "predict() called none of its top-level modules' forward")
        return {"profile": {"predict_s": predict_s, "forward_s": clock.seconds if clock.modules else None,
                            "forward_calls": clock.calls, "modules": len(clock.modules), "note": note}}


def serve(sock) -> None:
    worker = Worker()
    channel.send(sock, {"ok": True, "hello": True, "protocol": channel.PROTOCOL_VERSION, "pid": os.getpid()})
    handlers = {"prepare": worker.prepare, "load": worker.load, "predict": worker.predict,
                "params": worker.params, "precision": worker.precision, "profile": worker.profile}
    while True:
        try:
            nonce, request = channel.recv_request(sock)
        except channel.ChannelError:
            return                                  # the host went away: nothing left to serve
        op = request.get("op") if isinstance(request, dict) else None
        if op == "stop":
            try:
                channel.send(sock, {"ok": True, "nonce": nonce})
            except OSError:          # the host may close right after asking: nothing left to tell it
                pass
            return
        handler = handlers.get(op)
        try:
            if handler is None:
                raise WorkerError(f"unknown request {op!r}")
            reply = {"ok": True, "nonce": nonce, **handler(request)}
            frame = channel.encode(reply)
        except Exception as exc:  # the team's failure, or an unencodable answer: a reply, never a crash
            if not isinstance(exc, WorkerError):
                traceback.print_exc()
            reason = str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
            frame = channel.encode({"ok": False, "nonce": nonce, "error": reason})
        sock.sendall(frame)


def main(argv: list[str] | None = None) -> int:
    return channel.serve_main(argv, "harness.probe.worker", serve)


if __name__ == "__main__":
    sys.exit(main())
