"""Backends: where a team's code is built and run. One module per backend, registered here."""

from __future__ import annotations

from pathlib import Path

from harness.backends.base import Backend, Built, ProbeRun
from harness.backends.local import LocalBackend
from harness.spec import Spec

BACKENDS = {"local": LocalBackend}


def make_backend(name: str, cache_dir: Path, spec: Spec) -> Backend:
    """The backend called `name`, configured from the spec's sandbox settings."""
    return BACKENDS[name](cache_dir=Path(cache_dir), setup_timeout_s=spec.sandbox.timeout_s)


__all__ = ["BACKENDS", "Backend", "Built", "ProbeRun", "make_backend"]
