"""Seconds inside the forward of a predictor's top-level torch modules, for the worker's own split (issue 30).

Used only on the untimed `profile` pass after the timed rounds: hooks are installed on the predictor's
top-level modules (those the parameter count finds: harness.probe.params.walk, declared ones first), the
pass runs, and the hooks are removed. On CUDA each hook synchronizes the device, so kernels queued before
the forward are not charged to it and the forward's own are (that changes the pass's overlap of host and
device work, which is why it is never a timed pass). A forward that calls another top-level module is
counted once (a depth counter). The figure is the worker's: team code can change it, so the host shows it
as the side's own and never decides anything on it.
"""

from __future__ import annotations

import time
from typing import Any


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class ForwardClock:
    """A context manager: inside it, time spent in the forward of `modules` adds up in `seconds`."""

    def __init__(self, modules: list[Any]):
        self.modules = modules
        self.seconds = 0.0
        self.calls = 0
        self.note = "" if modules else "no torch module found on the predictor: no forward to time"
        self._depth = 0
        self._started = 0.0
        self._handles: list[Any] = []

    @classmethod
    def around(cls, predictor: Any) -> "ForwardClock":
        """A clock on `predictor`'s top-level modules (none where the walk fails: the note says so)."""
        from harness.probe.params.walk import find_sources, root_modules

        try:
            modules = [module for _, module in root_modules(find_sources(predictor, None).modules)]
        except Exception as exc:      # team objects the walk could not read
            clock = cls([])
            clock.note = f"the predictor's modules could not be found ({type(exc).__name__})"
            return clock
        return cls(modules)

    def _enter(self, *_: Any) -> None:
        if self._depth == 0:
            _synchronize()
            self._started = time.perf_counter()
        self._depth += 1

    def _leave(self, *_: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            _synchronize()
            self.seconds += time.perf_counter() - self._started
            self.calls += 1

    def __enter__(self) -> "ForwardClock":
        for module in self.modules:
            try:
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._leave))
            except Exception as exc:   # a scripted module, say: timed without it, and said
                self.note = self.note or f"a module took no hook ({type(exc).__name__})"
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
