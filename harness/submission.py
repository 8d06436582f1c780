"""A team's submission: its manifest (harness.toml), validated before anything is built, and a content hash.

The content hash names the team's image and keys the batch cache, so an unchanged team is never rebuilt
and never re-measured.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.spec import Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MANIFEST = "harness.toml"
MANIFEST_KEYS = {
    "team": "the team's name, shown on every row",
    "setup": "the setup script run at build time, relative to the team folder (e.g. setup.sh)",
    "predictor": "the predictor entry as module:Class, importable with the team folder on sys.path",
    "tasks": "optional list of tasks to run (default: every task in the spec)",
}
IGNORED_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints", ".harness-venv"}
_ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_TEAM = re.compile(r"^[\w.-]{1,64}$")


class SubmissionError(ValueError):
    """A team folder that cannot be run; the message says what to fix."""


@dataclass(frozen=True)
class Submission:
    team: str
    team_dir: Path
    setup: str
    predictor: str
    tasks: tuple[str, ...]
    content_hash: str


def _team_files(team_dir: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(team_dir):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_PARTS)
        files.extend(Path(root) / name for name in sorted(names) if not name.endswith(".pyc"))
    return files


def hash_team_dir(team_dir: Path) -> str:
    """sha256 over every file's relative path, executable bit and bytes (caches and .git left out)."""
    digest = hashlib.sha256()
    for path in _team_files(team_dir):
        rel = path.relative_to(team_dir).as_posix()
        digest.update(f"{rel}\0{int(os.access(path, os.X_OK))}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _read_manifest(team_dir: Path) -> dict:
    path = team_dir / MANIFEST
    if not team_dir.is_dir():
        raise SubmissionError(f"{team_dir} is not a folder: pass the team's folder (the one holding {MANIFEST})")
    if not path.is_file():
        keys = ", ".join(k for k in MANIFEST_KEYS if k != "tasks")
        raise SubmissionError(f"{path} is missing: add a {MANIFEST} with the keys {keys}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path}: not valid TOML: {exc}") from exc


def load_submission(team_dir: str | Path, spec: Spec) -> Submission:
    """Validate a team folder against the manifest contract; every problem is a SubmissionError."""
    team_dir = Path(team_dir).resolve()
    raw = _read_manifest(team_dir)
    where = team_dir / MANIFEST
    unknown = sorted(set(raw) - set(MANIFEST_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in MANIFEST_KEYS.items())
        raise SubmissionError(f"{where}: unknown key {unknown[0]!r}. Known keys - {known}")
    for key in ("team", "setup", "predictor"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise SubmissionError(f"{where}: missing key {key!r} ({MANIFEST_KEYS[key]})")
    if not _TEAM.match(raw["team"]):
        raise SubmissionError(f"{where}: team {raw['team']!r} must be 1-64 letters, digits, '.', '_' or '-'")
    setup = team_dir / raw["setup"]
    if not setup.is_file() or team_dir not in setup.resolve().parents:
        raise SubmissionError(f"{where}: setup script {raw['setup']!r} is not a file inside {team_dir}")
    if not os.access(setup, os.X_OK):
        raise SubmissionError(f"{setup} is not executable: run `chmod +x {setup}` and commit the mode")
    if not _ENTRY.match(raw["predictor"]):
        raise SubmissionError(f"{where}: predictor {raw['predictor']!r} must look like module:Class "
                              "(e.g. predictor:Predictor for class Predictor in predictor.py)")
    module = raw["predictor"].split(":")[0]
    module_path = team_dir / Path(*module.split("."))
    if not (module_path.with_suffix(".py").is_file() or (module_path / "__init__.py").is_file()):
        raise SubmissionError(f"{where}: predictor module {module!r} not found: expected "
                              f"{module_path.with_suffix('.py').relative_to(team_dir)} in the team folder")
    tasks = raw.get("tasks", list(spec.task_names))
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise SubmissionError(f"{where}: tasks must be a non-empty list of task names")
    unknown_tasks = [t for t in tasks if t not in spec.task_names]
    if unknown_tasks:
        raise SubmissionError(f"{where}: unknown task {unknown_tasks[0]!r}; "
                              f"spec {spec.name} has: {', '.join(spec.task_names)}")
    return Submission(team=raw["team"], team_dir=team_dir, setup=raw["setup"], predictor=raw["predictor"],
                      tasks=tuple(dict.fromkeys(tasks)), content_hash=hash_team_dir(team_dir))
