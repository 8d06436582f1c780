"""What one run is configured with, made from its settings, and the harness's own error.

`run`, `check`, `batch` and `doctor --calibrate` make a RunConfig here (run_config) from the RunSettings they
built once from their options (harness.settings); a Ray node makes its own from the same settings, sent to it as
plain values, and the box slot it claimed (harness.ray_engine). Below the pipeline, the batch and the engines in
the layers (README, Layout), so that none of them imports the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.backends import make_backend
from harness.backends.base import Backend
from harness.paths import REFERENCE_DIR, SAMPLE_DATA_DIR
from harness.sample_batches import sample_batches
from harness.settings import RunSettings
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
    settings: RunSettings | None = None   # what it was made from (run_config); None when made directly

    @property
    def probe_timeout_s(self) -> float:
        return self.timeout_s if self.timeout_s is not None else self.spec.sandbox.timeout_s


def run_config(settings: RunSettings, slot: Slot | None = None) -> RunConfig:
    """The configuration the settings describe: the spec loaded, the data folder there, the backend made
    (harness.backends.make_backend: "auto" falls back to local there; inside `slot` on a Ray node). HarnessError,
    with how to fix it, when the spec or the data folder cannot be used."""
    try:
        spec = load_spec(settings.spec_path)
    except SpecError as exc:
        raise HarnessError(str(exc)) from exc
    if not settings.data_dir.is_dir():
        raise HarnessError(f"data folder {settings.data_dir} does not exist: pass --data-dir with the gold files")
    spec, batch_note = sample_batches(spec, settings.data_dir, settings.max_examples)
    made = make_backend(settings.backend, settings.cache_dir, spec, settings.runner_image, rebuild=settings.rebuild,
                        slot=slot)
    return RunConfig(spec=spec, backend=made, data_dir=settings.data_dir, out_dir=settings.out_dir,
                     max_examples=settings.max_examples, device=settings.device, timeout_s=settings.timeout_s,
                     reference_dir=settings.reference_dir, allow_busy_gpu=settings.allow_busy_gpu,
                     notes=(batch_note,) if batch_note else (), settings=settings)
