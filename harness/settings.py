"""The settings of one run, as plain values: what the command line's options decide, built once from them.

`run`, `check`, `batch` and `doctor --calibrate` build a RunSettings from their options (RunSettings.from_options)
and pass it whole: harness.config makes the run's configuration from it (the spec loaded, the backend made), the
batch and its engines take it, and the Ray engine sends it to each node as a dict of JSON values (to_dict), from
which the node rebuilds it (from_dict) and then its own configuration. The box slot a node claims is not a
setting: it is found on the node and given to harness.config.run_config beside the settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

PATH_FIELDS = ("spec_path", "data_dir", "out_dir", "cache_dir", "reference_dir")


@dataclass(frozen=True)
class RunSettings:
    spec_path: Path | None           # None: the bundled spec (harness.spec.load_spec)
    data_dir: Path
    out_dir: Path
    backend: str                     # "auto", "docker" or "local" (harness.backends.make_backend)
    max_examples: int | None
    device: str
    cache_dir: Path
    reference_dir: Path
    runner_image: str
    timeout_s: float | None = None   # None: the spec's sandbox.timeout_s
    allow_busy_gpu: bool = False
    rebuild: bool = False

    @classmethod
    def from_options(cls, **options: Any) -> RunSettings:
        """The settings the command line's options name (their click parameter names). An option that is not
        a setting is refused by name, so that no option is silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"not run settings: {', '.join(unknown)} (the settings are {', '.join(sorted(known))})")
        return cls(**{k: Path(v) if k in PATH_FIELDS and v is not None else v for k, v in options.items()})

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (paths as strings); from_dict gives them back."""
        return {k: str(v) if k in PATH_FIELDS and v is not None else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        return cls.from_options(**values)
