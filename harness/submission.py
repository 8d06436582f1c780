"""A team's submission: its manifest (harness.toml), validated before anything is built, and a content hash.

The content hash names the team's image and keys the batch cache, so an unchanged team is never rebuilt
and never re-measured.

The folder is hostile input (README, Threat model): it is read without following links, links that leave
it and special files make it invalid, and every manifest value that reaches a path, a file name or a build is
matched whole against a strict pattern. Every problem is a SubmissionError: a row, never a traceback or a hang.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
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
# Every manifest value that ends up in a path, a file name or a build is matched whole (fullmatch: `$`
# would also accept a trailing newline). A team name is one path component: letters (any script), digits,
# '_', '.', '-', not starting with '.' or '-' (so never '.' or '..'); a setup path is such components
# joined by '/'; a predictor entry is dotted ASCII identifiers.
_TEAM = re.compile(r"\w[\w.-]{0,63}")
_PATH_PART = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_SETUP = re.compile(rf"{_PATH_PART}(?:/{_PATH_PART})*")
_ENTRY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)


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


@dataclass(frozen=True)
class TeamEntry:
    """One thing in a team folder: a regular file, a folder, or a link whose target stays inside the folder."""

    rel: str                  # posix path relative to the team folder
    kind: str                 # "file", "dir" or "link"
    link: str = ""            # the link's own text (links are kept as links, never followed)
    executable: bool = False


def _inside(team_dir: Path, path: Path) -> bool:
    return path == team_dir or team_dir in path.parents


def _entry(team_dir: Path, path: Path) -> TeamEntry:
    """Classify one path without following it; anything a host must not open is a SubmissionError."""
    rel = path.relative_to(team_dir).as_posix()
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        text = os.readlink(path)
        target = Path(os.path.realpath(path))
        lexical = os.path.normpath(os.path.join(os.path.dirname(rel), text))
        if os.path.isabs(text) or lexical == ".." or lexical.startswith("../") or not _inside(team_dir, target):
            raise SubmissionError(f"{rel!r} is a link to {text!r}, outside the team folder: copy the file in instead")
        if not os.path.lexists(target) or not (target.is_file() or target.is_dir()):
            raise SubmissionError(f"{rel!r} is a link to {text!r}, which does not exist or is not a regular file")
        return TeamEntry(rel, "link", link=text)
    if stat.S_ISDIR(info.st_mode):
        return TeamEntry(rel, "dir")
    if stat.S_ISREG(info.st_mode):
        return TeamEntry(rel, "file", executable=bool(info.st_mode & 0o111))
    raise SubmissionError(f"{rel!r} is a special file (FIFO, socket or device): a submission holds only files, "
                          "folders and links inside it")


def scan_team_dir(team_dir: Path) -> list[TeamEntry]:
    """Every entry of a team folder, in a stable order, never following a link (caches and .git left out).

    Links are kept when their target stays inside the folder (a shared module, a weights alias); a link
    that leaves it, a dangling one and any special file make the submission invalid, since the host would
    otherwise read, hash or copy a file that is not the team's, or hang on a FIFO.
    """
    team_dir = Path(os.path.realpath(team_dir))
    entries: list[TeamEntry] = []

    def fail(exc: OSError) -> None:
        raise exc

    try:
        for root, dirs, names in os.walk(team_dir, onerror=fail):
            root_path = Path(root)
            for name in sorted(dirs + names):
                if name in IGNORED_PARTS or name.endswith(".pyc"):
                    continue
                entries.append(_entry(team_dir, root_path / name))
            dirs[:] = sorted(d for d in dirs if d not in IGNORED_PARTS and not (root_path / d).is_symlink())
    except OSError as exc:
        raise SubmissionError(f"cannot read the team folder: {exc.strerror or exc} ({exc.filename})") from exc
    return sorted(entries, key=lambda e: e.rel)


def _open_regular(path: Path) -> int:
    """A file descriptor on `path` that is a regular file, never through a link nor blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SubmissionError(f"{path} changed into something other than a regular file")
    return fd


def hash_team_dir(team_dir: Path, entries: list[TeamEntry] | None = None) -> str:
    """sha256 over every entry's relative path and kind, a file's executable bit and bytes, a link's text."""
    team_dir = Path(os.path.realpath(team_dir))
    digest = hashlib.sha256()
    try:
        for entry in entries if entries is not None else scan_team_dir(team_dir):
            if entry.kind == "dir":
                continue
            if entry.kind == "link":
                digest.update(f"{entry.rel}\0link\0{entry.link}\0".encode())
                continue
            digest.update(f"{entry.rel}\0{int(entry.executable)}\0".encode())
            with os.fdopen(_open_regular(team_dir / entry.rel), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    except OSError as exc:
        raise SubmissionError(f"cannot read the team folder: {exc.strerror or exc} ({exc.filename})") from exc
    return digest.hexdigest()


def copy_team_dir(team_dir: Path, dest: Path) -> None:
    """Copy a team folder entry by entry, as scanned: files by content (executable bit kept), links as links.

    Every entry is checked again while copying (a file swapped for a link or a FIFO since the scan is refused);
    every problem, OSError included, is a SubmissionError for the team's row.
    """
    team_dir = Path(os.path.realpath(team_dir))
    try:
        dest.mkdir(parents=True)
        for entry in scan_team_dir(team_dir):
            target = dest / entry.rel
            if entry.kind == "dir":
                target.mkdir()
            elif entry.kind == "link":
                os.symlink(entry.link, target)
            else:
                with os.fdopen(_open_regular(team_dir / entry.rel), "rb") as src, target.open("xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                target.chmod(0o755 if entry.executable else 0o644)
    except OSError as exc:
        raise SubmissionError(f"cannot copy the team folder: {exc.strerror or exc} ({exc.filename})") from exc


def team_folders_in(folder: Path) -> list[Path]:
    """The team folders a folder of teams holds: every sub-folder but hidden ones, in name order. The batch
    makes each a row (one without a manifest an invalid_submission row); gc keeps what each one needs."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_label(team_dir: str | Path) -> str:
    """A name for a folder's row when its manifest cannot be trusted: safe as one path component."""
    name = Path(os.path.realpath(team_dir)).name
    safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name).lstrip(".-")[:64]
    return safe or "unnamed-team"


def _read_manifest(team_dir: Path, entries: dict[str, TeamEntry]) -> dict:
    path = team_dir / MANIFEST
    entry = entries.get(MANIFEST)
    if entry is None:
        keys = ", ".join(k for k in MANIFEST_KEYS if k != "tasks")
        raise SubmissionError(f"{path} is missing: add a {MANIFEST} with the keys {keys}")
    if entry.kind != "file":
        raise SubmissionError(f"{path} must be a regular file, not a {entry.kind}")
    try:
        with os.fdopen(_open_regular(path), "rb") as handle:
            return tomllib.loads(handle.read(1 << 20).decode("utf-8"))
    except OSError as exc:
        raise SubmissionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path}: not valid TOML: {exc}") from exc


def _check_setup(team_dir: Path, where: Path, setup: str, entries: dict[str, TeamEntry]) -> None:
    """The setup script: a strict relative path to an executable regular file of the team's own."""
    if not _SETUP.fullmatch(setup):
        raise SubmissionError(f"{where}: setup {setup!r} must be a relative path of letters, digits, '_', '.', "
                              "'+', '-' and '/' (no '..', no leading '.', no spaces or control characters)")
    entry = entries.get(setup)
    if entry is None or entry.kind == "dir" or not (team_dir / setup).resolve().is_file():
        raise SubmissionError(f"{where}: setup script {setup!r} is not a file inside {team_dir}")
    if not os.access(team_dir / setup, os.X_OK):
        path = team_dir / setup
        raise SubmissionError(f"{path} is not executable: run `chmod +x {path}` and commit the mode")


def load_submission(team_dir: str | Path, spec: Spec) -> Submission:
    """Validate a team folder against the manifest contract; every problem is a SubmissionError.

    The folder is scanned first, without following links: nothing outside it is ever read.
    """
    team_dir = Path(team_dir).resolve()
    if not team_dir.is_dir():
        raise SubmissionError(f"{team_dir} is not a folder: pass the team's folder (the one holding {MANIFEST})")
    scanned = scan_team_dir(team_dir)
    entries = {entry.rel: entry for entry in scanned}
    raw = _read_manifest(team_dir, entries)
    where = team_dir / MANIFEST
    unknown = sorted(set(raw) - set(MANIFEST_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in MANIFEST_KEYS.items())
        raise SubmissionError(f"{where}: unknown key {unknown[0]!r}. Known keys - {known}")
    for key in ("team", "setup", "predictor"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise SubmissionError(f"{where}: missing key {key!r} ({MANIFEST_KEYS[key]})")
    if not _TEAM.fullmatch(raw["team"]):
        raise SubmissionError(f"{where}: team {raw['team']!r} must be 1-64 letters, digits, '.', '_' or '-', "
                              "starting with a letter, digit or '_'")
    _check_setup(team_dir, where, raw["setup"], entries)
    if not _ENTRY.fullmatch(raw["predictor"]):
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
                      tasks=tuple(dict.fromkeys(tasks)), content_hash=hash_team_dir(team_dir, scanned))
