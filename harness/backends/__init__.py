"""Backends: where a team's code is built and run. One module per backend, registered here."""

from __future__ import annotations

from pathlib import Path

from harness.backends.base import Backend, Built, ProbeRun
from harness.backends.docker import RUNNER_IMAGE, DockerBackend, DockerUnavailable
from harness.backends.local import LocalBackend
from harness.spec import Spec

BACKENDS = ("docker", "local")


def make_backend(name: str, cache_dir: Path, spec: Spec, runner_image: str = RUNNER_IMAGE) -> Backend:
    """The backend called `name`, configured from the spec's sandbox settings.

    "auto" means docker when an engine answers and the runner image is there, else local: what a
    participant's self-check wants on a laptop without Docker.
    """
    if name == "local":
        return LocalBackend(cache_dir=Path(cache_dir), setup_timeout_s=spec.sandbox.timeout_s)
    if name == "docker":
        backend = DockerBackend(cache_dir=Path(cache_dir), spec=spec, runner_image=runner_image)
        backend.runner_id()  # fail now, with the build command, rather than after preparing everything
        return backend
    if name == "auto":
        try:
            return make_backend("docker", cache_dir, spec, runner_image)
        except DockerUnavailable:
            return make_backend("local", cache_dir, spec)
    raise ValueError(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Built", "DockerUnavailable", "ProbeRun", "make_backend"]
