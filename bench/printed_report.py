"""A benchmark's report: each line printed as it comes and kept, written as markdown at the end if asked."""

from __future__ import annotations

from pathlib import Path


class PrintedReport:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: Path | None) -> None:
        """The lines so far as a file at `path` (its folder made); nothing when no path was given."""
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
