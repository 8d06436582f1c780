"""Count a predictor's parameters the way the competition rules mean them.

The 12M limit is about the weights a model carries, so the count is of UNIQUE tensors: a weight tied
between the input and output embeddings, or one layer that ALBERT reuses twelve times, is one set of
weights and counts once. Embeddings count. Beside that number the report keeps what a reviewer needs to
trust it: buffers, plain tensors the predictor holds, ONNX initializers (deduplicated by content, because
exporters write a tied weight out twice) and the bytes of weight files in the team directory.

Weights can also hide outside ``nn.Parameter``: a matrix kept as a plain attribute, a 2-D float buffer, an
int8 model whose weights live in packed C++ objects. Those are counted towards the limit and flagged, so
that moving weights out of the registry never moves a model under the limit.

Runs inside team containers: standard library, torch and numpy only; onnx is imported lazily, when an
ONNX file must be counted. One module per source: walk (finding modules, tensors and ONNX files on the
predictor), torch_count and onnx_count; this one puts the numbers together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.crosscheck import WEIGHT_FILE_SUFFIXES, weight_files
from harness.probe.live_weights import HiddenWeights, hidden_weights, live_onnx_sessions
from harness.probe.params.onnx_count import ONNX_MISSING, OnnxCount, count_onnx_files, count_onnx_initializers
from harness.probe.params.torch_count import TorchCount
from harness.probe.params.walk import find_sources, root_modules

# What the counted tensors hold in host memory: torch tensors, ONNX initializers and the weights the live-weight
# scan found elsewhere, each at its dtype's size (an ONNX tensor whose dtype cannot be read at 4 bytes), so
# that the host's memory checks explain the bytes actually there, not 4 bytes a parameter whatever its dtype.
COUNTED_BYTES_NOTE = "torch tensors, ONNX initializers and hidden weights in host memory at their dtype's size"
# (torch tensors on a device are counted apart: counted_device_bytes, checked against NVML by the host)
HIDDEN_FLOOR = 1_000          # hidden weight elements below this are noise (scalars), not a model


@dataclass(frozen=True)
class ParamReport:
    """What the probe counted; ``counted`` is the number the parameter limit is checked against."""

    counted: int                     # predictor_visible + hidden_weights: the larger, process-wide count
    params: int                      # unique registered torch parameters (quantized packed weights included)
    onnx_params: int                 # ONNX initializer elements, identical content counted once
    onnx_duplicates_dropped: int     # ONNX tensors dropped as content duplicates of another
    unregistered_weights: int        # float (or quantized) >= 2-D plain tensors and buffers
    buffers: int                     # unique buffer elements, counted or not
    plain_tensors: int               # unique elements of tensors held outside the parameter registry
    model_file_bytes: int            # weight-like files under team_dir
    n_modules: int                   # root torch modules counted (submodules of another root excluded)
    onnx_files: tuple[str, ...]
    sources: tuple[str, ...]         # where each root module / ONNX file was found
    flags: tuple[str, ...]           # things a reviewer must look at; the row is flagged
    notes: tuple[str, ...]           # how the number was reached
    predictor_visible: int = 0       # params + onnx_params + unregistered_weights: what the predictor shows
    hidden_weights: int = 0          # weight-like elements elsewhere in the process (live_weights)
    hidden_where: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()         # of the counted torch modules' parameters (the team's precision)
    counted_cpu_bytes: int = 0           # host-memory bytes of what was counted (COUNTED_BYTES_NOTE)
    counted_device_bytes: int = 0        # device-memory bytes of the counted torch tensors (their dtype's size)
    counted_device_params: int = 0       # elements of the counted torch tensors on a device

    def to_dict(self) -> dict[str, Any]:
        return {"counted": self.counted, "predictor_visible": self.predictor_visible,
                "hidden_weights": self.hidden_weights, "hidden_where": list(self.hidden_where),
                "params": self.params, "onnx_params": self.onnx_params,
                "onnx_duplicates_dropped": self.onnx_duplicates_dropped,
                "unregistered_weights": self.unregistered_weights, "buffers": self.buffers,
                "plain_tensors": self.plain_tensors, "model_file_bytes": self.model_file_bytes,
                "n_modules": self.n_modules, "onnx_files": list(self.onnx_files),
                "sources": list(self.sources), "flags": list(self.flags), "notes": list(self.notes),
                "dtypes": list(self.dtypes), "counted_cpu_bytes": self.counted_cpu_bytes,
                "counted_device_bytes": self.counted_device_bytes, "counted_device_params": self.counted_device_params}


def count_parameters(predictor: Any, team_dir: Path | None = None, scan_process: bool = True) -> ParamReport:
    """Count the predictor's unique weights, report what sits beside them, flag weights hiding elsewhere.

    Modules come from ``predictor.parameter_sources()`` when the team defines it (it wins over discovery),
    otherwise from walking the predictor's attributes. Plain tensors are looked for in both cases, so a
    ``parameter_sources()`` that leaves a weight matrix out cannot take it off the count. Raises
    ImportError only when an ONNX file must be counted and onnx is not installed; unreadable files become
    flags, never a crash of the probe; an exception from the team's own parameter_sources() propagates
    (a count the team's code could not state is not a count).

    `scan_process` False leaves out the process-wide searches (ONNX sessions held elsewhere, the live-weight
    scan: about half a second each in a process that imported transformers): the host asks that of the
    reference's worker only, which runs the harness's own model and no team code.
    """
    team_dir = Path(team_dir) if team_dir is not None else None
    found = find_sources(predictor, team_dir)
    weight_files, file_bytes = _weight_files(team_dir, found.notes)
    if not found.modules and not found.onnx:
        onnx_files = [p for p in weight_files if p.suffix.lower() == ".onnx"]
        found.onnx.extend(("*.onnx under the team directory", p) for p in onnx_files)
        if onnx_files:
            found.notes.append(f"no torch module or ONNX path found on the predictor: counted all "
                               f"{len(onnx_files)} *.onnx file(s) under the team directory (conservative)")
    if scan_process:
        _add_sessions_held_elsewhere(found)
    else:
        found.notes.append("process-wide scans not run (asked by the host of the reference's worker, which "
                           "runs no team code): the predictor's own weights only")
    roots = root_modules(found.modules)
    torch_count = TorchCount(found.flags, found.notes)
    torch_count.add_modules(roots)
    torch_count.add_plain_tensors(found.tensors)
    onnx_params, dropped, onnx_files, onnx_bytes = count_onnx_files(found.onnx, found.flags, found.notes)
    visible = torch_count.params + onnx_params + torch_count.unregistered
    hidden = hidden_weights(torch_count.claimed) if scan_process else HiddenWeights(0, ())
    if hidden.unreadable:
        found.flags.append(f"live-weight scan incomplete: {hidden.unreadable:,} weight-like tensor(s) or raw "
                           f"buffer(s) whose memory this torch or Python would not give ({hidden.unreadable_why}): "
                           "weights there are not counted")
    if hidden.elements >= HIDDEN_FLOOR:
        found.flags.append(f"{hidden.elements:,} weights live in the worker process outside what the predictor "
                           f"shows ({'; '.join(hidden.where)}): counted towards the limit")
    else:
        hidden = HiddenWeights(0, ())
    counted = visible + hidden.elements
    if not roots and not onnx_files and counted == 0:
        found.flags.append("no parameters found: the probe saw no torch module, ONNX file or weight tensor; "
                           "implement parameter_sources() on the Predictor to list them")
    return ParamReport(
        counted=counted, params=torch_count.params, onnx_params=onnx_params, onnx_duplicates_dropped=dropped,
        unregistered_weights=torch_count.unregistered, buffers=torch_count.buffers,
        plain_tensors=torch_count.plain, model_file_bytes=file_bytes, n_modules=len(roots),
        onnx_files=tuple(onnx_files),
        sources=tuple(f"{path} ({type(m).__name__})" for path, m in roots) + tuple(
            f"{label}: {p}" for label, p in found.onnx),
        flags=tuple(found.flags), notes=tuple(found.notes), predictor_visible=visible,
        hidden_weights=hidden.elements, hidden_where=hidden.where, dtypes=tuple(sorted(torch_count.dtypes)),
        counted_cpu_bytes=torch_count.cpu_bytes + onnx_bytes + hidden.host_nbytes,
        counted_device_bytes=torch_count.device_bytes, counted_device_params=torch_count.device_params)


def _add_sessions_held_elsewhere(found) -> None:
    """ONNX Runtime sessions anywhere in the process: their weights live in C++, out of the memory scan."""
    known = {str(path) for _, path in found.onnx}
    for session in live_onnx_sessions():
        if id(session) in found.sessions:
            continue             # the predictor's own: already listed or flagged by the walk
        model_path = getattr(session, "_model_path", None)
        if model_path and str(model_path) not in known:
            known.add(str(model_path))
            found.onnx.append(("ONNX Runtime session held elsewhere in the process", Path(model_path)))
        elif not model_path:
            found.flags.append("an ONNX Runtime session built from bytes is live in the process: its weights "
                               "cannot be located; list the ONNX file in parameter_sources()")


def _weight_files(team_dir: Path | None, notes: list[str]) -> tuple[list[Path], int]:
    """Weight-like files under team_dir (crosscheck.weight_files: links never followed) and their bytes."""
    if team_dir is None:
        return [], 0
    if not team_dir.is_dir():
        notes.append(f"team directory {team_dir} not found: model file bytes not measured")
        return [], 0
    found = weight_files(team_dir)
    return [path for path, _ in found], sum(size for _, size in found)


__all__ = ["ONNX_MISSING", "OnnxCount", "ParamReport", "WEIGHT_FILE_SUFFIXES", "count_onnx_initializers",
           "count_parameters"]
