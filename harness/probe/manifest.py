"""The run manifest: what the host tells the probe to do, as one JSON file beside the inputs.

Shared by the host (which writes it) and the probe (which reads it); standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MEASUREMENTS = "measurements.json"


def predictions_file(task: str) -> str:
    return f"{task}_predict.json"


@dataclass(frozen=True)
class ProbeTask:
    name: str
    input_file: str                   # JSON lines of label-free examples, relative to inputs_dir
    batch_size: int
    options: dict[str, Any] = field(default_factory=dict)   # extra Predictor kwargs (the reference's)


@dataclass(frozen=True)
class RunManifest:
    team_dir: str                     # as the probe sees it (a container path under Docker)
    predictor: str                    # module:Class
    inputs_dir: str
    tasks: tuple[ProbeTask, ...]
    warmup_batches: int
    rounds: int
    seed: int
    noisy_spread: float
    device: str = "auto"              # auto: cuda when available, else cpu
    schema_version: int = SCHEMA_VERSION

    def write(self, path: Path) -> Path:
        data = asdict(self)
        data["tasks"] = [asdict(t) for t in self.tasks]
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        return Path(path)

    @classmethod
    def read(cls, path: Path) -> "RunManifest":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"run manifest {path} has schema_version {data.get('schema_version')!r}; "
                             f"this probe reads {SCHEMA_VERSION}: rebuild the image with this harness")
        data["tasks"] = tuple(ProbeTask(**t) for t in data["tasks"])
        return cls(**data)
