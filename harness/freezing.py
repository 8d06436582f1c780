"""The side not being timed is frozen while the other side's window is timed.

Both workers are alive at once, so a team whose processes burn CPU whenever they are not inside predict()
would slow the reference's timed windows and raise its own speedup (issue 18: T_bert 9.3 s against 3.4 s
in its own warm-up). So around every timed window (warm-up windows and the first-sight pass included) the
other side is frozen: the cgroup freezer through the engine's pause under Docker, SIGSTOP to the local
worker's process group and to every process descended from it (children that left the group with setsid
too). Freezing and thawing happen outside the timed unit; what they cost is recorded per window. A side
that cannot be frozen (no freezer on this engine, say) is timed anyway and the row says so (freeze_flags): a
check that cannot run never passes silently.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence


class FreezeUnavailable(Exception):
    """This side cannot be frozen here; the message says why."""


class Freezable(Protocol):
    name: str

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...


@dataclass
class FreezeLedger:
    """What freezing cost over a task, and whether it ever could not be done."""

    seconds: float = 0.0
    windows: int = 0
    unavailable: str = ""

    def record(self) -> dict:
        return {"freeze_s": self.seconds, "frozen_windows": self.windows,
                "freeze_s_per_window": self.seconds / self.windows if self.windows else 0.0,
                "freeze_unavailable": self.unavailable}


def freeze_flags(record: Mapping[str, Any]) -> list[str]:
    """The row's flag when a task's side not being timed could not be frozen (FreezeLedger.record's
    `freeze_unavailable`, in the task's timing record)."""
    if not record.get("freeze_unavailable"):
        return []
    return [f"the side not being timed could not be frozen ({record['freeze_unavailable']}): "
            "a team's idle work could have slowed the reference"]


@contextmanager
def timed_alone(others: Sequence[Freezable], ledger: FreezeLedger) -> Iterator[None]:
    """Freeze `others` for the duration of one timed window of the remaining side, then thaw them."""
    started = time.perf_counter()
    frozen = []
    for other in others:
        try:
            other.freeze()
            frozen.append(other)
        except FreezeUnavailable as exc:
            ledger.unavailable = ledger.unavailable or f"{other.name}: {exc}"
    ledger.seconds += time.perf_counter() - started
    try:
        yield
    finally:
        started = time.perf_counter()
        for other in frozen:
            other.thaw()
        ledger.seconds += time.perf_counter() - started
        ledger.windows += 1
