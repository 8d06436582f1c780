"""What one run is configured with, built once from the command line's options, and the harness's own error.

`run`, `check`, `batch` and `doctor --calibrate` build a RunConfig here from their options (run_config); a Ray
node rebuilds its own from the same options, sent to it as plain values (harness.ray_engine). Below the
pipeline, the batch and the engines in the layers (README, Layout), so that none of them imports the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.backends import make_backend
from harness.backends.base import Backend
from harness.paths import REFERENCE_DIR, SAMPLE_DATA_DIR
from harness.sample_batches import sample_batches
from harness.slots import Slot
from harness.spec import Spec, SpecError, load_spec


class HarnessError(RuntimeError):
    """A failure of the harness or its inputs, not of a team: the run cannot produce a fair row."""


@dataclass(frozen=True)
class RunConfig:
    spec: Spec
    backend: Backend
    data_dir: Path = SAMPLE_DATA_DIR
    out_dir: Path = Path("results")
    max_examples: int | None = None
    device: str = "auto"
    timeout_s: float | None = None
    reference_dir: Path = REFERENCE_DIR
    allow_busy_gpu: bool = False
    notes: tuple[str, ...] = ()        # every measured row of this run notes these (harness.sample_batches)

    @property
    def probe_timeout_s(self) -> float:
        return self.timeout_s if self.timeout_s is not None else self.spec.sandbox.timeout_s


def run_config(spec_path: Path | None, data_dir: Path, out_dir: Path, backend: str, max_examples: int | None,
               device: str, timeout_s: float | None, cache_dir: Path, reference_dir: Path, runner_image: str,
               allow_busy_gpu: bool = False, rebuild: bool = False, slot: Slot | None = None) -> RunConfig:
    """The configuration the options describe: the spec loaded, the data folder there, the backend made
    (harness.backends.make_backend: "auto" falls back to local there). HarnessError, with how to fix it, when
    the spec or the data folder cannot be used."""
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise HarnessError(str(exc)) from exc
    if not data_dir.is_dir():
        raise HarnessError(f"data folder {data_dir} does not exist: pass --data-dir with the gold files")
    spec, batch_note = sample_batches(spec, data_dir, max_examples)
    made = make_backend(backend, cache_dir, spec, runner_image, rebuild=rebuild, slot=slot)
    return RunConfig(spec=spec, backend=made, data_dir=data_dir, out_dir=out_dir, max_examples=max_examples,
                     device=device, timeout_s=timeout_s, reference_dir=reference_dir, allow_busy_gpu=allow_busy_gpu,
                     notes=(batch_note,) if batch_note else ())
