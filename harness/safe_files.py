"""Writing results without trusting what is already on disk.

A team (under the local backend, or through an earlier run's output folder) may have left a symlink, a FIFO
or a stale file where the harness is about to write. The host never writes through such an entry: folders
are made fresh (whatever was there is removed, links unlinked rather than followed) and files are created
anew with O_NOFOLLOW.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def remove_entry(path: Path) -> None:
    """Remove whatever is at `path` (a link itself, never its target)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)        # removes links inside as links
    else:
        os.unlink(path)


def check_parents(path: Path) -> None:
    """Refuse to write below a symlinked folder (the parents the harness itself created are real folders)."""
    for parent in Path(path).parents:
        if os.path.islink(parent) and parent != Path(parent.anchor):
            raise OSError(f"refusing to write below {parent}: it is a symbolic link")


def fresh_dir(path: Path) -> Path:
    """An empty real folder at `path`, whatever was there before."""
    path = Path(path)
    remove_entry(path)
    check_parents(path)
    path.mkdir(parents=True)
    return path


def ensure_dir(path: Path) -> Path:
    """`path` as a real folder (a link or file there is removed first); existing content is kept."""
    path = Path(path)
    if os.path.lexists(path) and (os.path.islink(path) or not path.is_dir()):
        remove_entry(path)
    check_parents(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_new_bytes(path: Path, data: bytes) -> Path:
    """Create `path` anew (a stale entry, link or FIFO, is removed first, never opened) and write `data`."""
    path = Path(path)
    ensure_dir(path.parent)
    remove_entry(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def open_log(path: Path) -> int:
    """A log file opened for writing from its start, as a file descriptor: created if missing, truncated if
    there, never through a link (O_NOFOLLOW: a team's link in the output folder fails the open)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)


def write_new_text(path: Path, text: str) -> Path:
    return write_new_bytes(path, text.encode("utf-8"))
